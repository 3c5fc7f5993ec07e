"""The CPU as the box reports it: vendor, CPUID signature, brand, flags (box names), vCPUs.

Everything comes from /proc/cpuinfo, which is the kernel's rendering of CPUID. The box names
its flags differently from Linux (`sse3` for Linux `pni`, `aesni` for `aes`); the set and
order are the seed's `!mod cmd CPU cpu-info` example.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

# (box name, Linux /proc/cpuinfo name), in the order of the seed's example
BOX_FLAGS: tuple[tuple[str, str], ...] = (
    ("sse3", "pni"), ("pclmulqdq", "pclmulqdq"), ("ssse3", "ssse3"), ("sse4_1", "sse4_1"),
    ("sse4_2", "sse4_2"), ("aesni", "aes"), ("xsave", "xsave"), ("xsaveopt", "xsaveopt"),
    ("osxsave", "xsave"),  # see box_flags()
    ("avx", "avx"), ("f16c", "f16c"), ("rdrand", "rdrand"), ("fpu", "fpu"), ("mmx", "mmx"),
    ("fxsr", "fxsr"), ("sse", "sse"), ("sse2", "sse2"), ("avx2", "avx2"),
)  # fmt: skip


@dataclass(frozen=True)
class CpuInfo:
    """The CPU as /proc/cpuinfo tells it: vendor, brand, family/model/stepping, flags, vCPUs."""

    vendor: str = "unknown"
    brand: str = "unknown CPU"
    family: int = 0
    model: int = 0
    stepping: int = 0
    mhz: float = 0.0
    flags: frozenset[str] = field(default_factory=frozenset)  # Linux names
    count: int = 1  # vCPUs

    @property
    def signature(self) -> int:
        """CPUID leaf 1 EAX rebuilt from the kernel's family/model/stepping."""
        base_family = min(self.family, 0xF)
        ext_family = self.family - 0xF if self.family >= 0xF else 0
        base_model = self.model & 0xF
        # the extended model bits count only for family 6 and 15 (Intel's and AMD's rule)
        ext_model = self.model >> 4 if base_family in (6, 0xF) else 0
        return (
            (ext_family << 20)
            | (ext_model << 16)
            | (base_family << 8)
            | (base_model << 4)
            | (self.stepping & 0xF)
        )

    def box_flags(self) -> list[str]:
        # Linux hides OSXSAVE in /proc/cpuinfo; it sets CR4.OSXSAVE whenever the CPU has
        # XSAVE (booting with noxsave removes "xsave" from the flags too), so xsave implies it.
        return [box for box, linux in BOX_FLAGS if linux in self.flags]


def parse_cpuinfo(text: str) -> CpuInfo:
    """The first processor's fields and the number of processors."""
    blocks = [b for b in text.strip().split("\n\n") if b.strip()]
    if not blocks:
        return CpuInfo()
    fields: dict[str, str] = {}
    for line in blocks[0].splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())

    def num(key: str) -> int:
        v = fields.get(key, "0")
        return int(v) if v.isdigit() else 0

    try:
        mhz = float(fields.get("cpu MHz", "0"))
    except ValueError:
        mhz = 0.0
    return CpuInfo(
        vendor=fields.get("vendor_id", "unknown"),
        brand=fields.get("model name", "unknown CPU"),
        family=num("cpu family"),
        model=num("model"),
        stepping=num("stepping"),
        mhz=mhz,
        flags=frozenset(fields.get("flags", "").split()),
        count=sum(1 for b in blocks if b.lstrip().startswith("processor")),
    )


def read_cpuinfo(path: Path = Path("/proc/cpuinfo")) -> CpuInfo:
    try:
        return parse_cpuinfo(path.read_text())
    except OSError:
        return CpuInfo()


def trace_lines(cpu: CpuInfo) -> list[str]:
    """Boot-trace warnings about the CPU (the brand line itself is traced by the caller)."""
    if cpu.count > 1:
        return [
            f"cpu: {cpu.count} vCPUs: multi-core is experimental on the box, use 1 vCPU "
            "in production"
        ]
    return []
