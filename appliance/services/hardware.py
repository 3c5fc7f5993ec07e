"""Module commands about the virtual hardware: `mod cmd CPU cpu-info`, `TIME0 info`,
`MEM info`, `CF0 format yes`.

`cpu-info` answers in the seed's format:
  <info><cpu vendor="GenuineIntel" signature="0x906e9" brand="…" flags="sse3 … avx2"
   act-features="has_aesni" srtp-mips="5"/></info>
act-features lists only what this runtime really uses: `has_aesni` when its AES (SRTP's
AES-CM) runs on the AES-NI code path (hal.aes: CPU flag + self-test). srtp-mips is measured
once, on first use, by hal.aes.measure_srtp_mips (method in its docstring).
"""

from __future__ import annotations

import threading
from typing import Any

from appliance.hal.aes import Aes, measure_srtp_mips, select_aes
from appliance.hal.cpu import CpuInfo, read_cpuinfo
from appliance.hal.memory import format_mem
from appliance.hal.platform import DiskRole
from appliance.modcmd import ModCmdError, register

_lock = threading.Lock()
_aes: tuple[Aes, str] | None = None
_srtp: dict[str, int] = {}


def runtime_aes(cpu: CpuInfo) -> tuple[Aes, str]:
    """The AES the runtime uses (chosen once per boot)."""
    global _aes
    with _lock:
        if _aes is None:
            _aes = select_aes(cpu.flags)
        return _aes


def _cpu_of(box: Any) -> CpuInfo:
    get = getattr(box.platform, "cpu", None)
    return get() if get is not None else read_cpuinfo()


def _xml_attr(value: str) -> str:
    return value.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")


def cpu_info(cpu: CpuInfo, aes: Aes, srtp_mips: int) -> str:
    features = ["has_aesni"] if aes.name == "aesni" else []
    attrs = {
        "vendor": cpu.vendor,
        "signature": f"0x{cpu.signature:x}",
        "brand": cpu.brand,
        "flags": " ".join(cpu.box_flags()),
        "act-features": " ".join(features),
        "srtp-mips": str(srtp_mips),
    }
    body = " ".join(f'{k}="{_xml_attr(v)}"' for k, v in attrs.items())
    return f"<info><cpu {body}/></info>"


@register("CPU", "cpu-info", "CPU vendor, signature, flags, features in use, srtp-mips (XML)")
def _cpu_info(box: Any, args: list[str]) -> str:
    cpu = _cpu_of(box)
    aes, _why = runtime_aes(cpu)
    with _lock:
        if aes.name not in _srtp:
            _srtp[aes.name] = measure_srtp_mips(aes, cpu.mhz)
        mips = _srtp[aes.name]
    return cpu_info(cpu, aes, mips)


@register("CPU", "aes", "which AES code the runtime uses and why")
def _cpu_aes(box: Any, args: list[str]) -> str:
    aes, why = runtime_aes(_cpu_of(box))
    return f"aes={aes.name} ({why})"


@register("TIME0", "info", "the timekeeping counter, its calibration and the policy")
def _time_info(box: Any, args: list[str]) -> str:
    tk = getattr(box, "timekeeping", None)
    if tk is None:
        return "timekeeping: not started on this platform"
    cal = tk.calibration
    rate = f"{cal.rate * 100:.1f}%" if cal is not None else "not calibrated"
    kind = "primary" if tk.primary else "fallback"
    return (
        f'<info><time hypervisor="{tk.hypervisor}" counter="{tk.counter.name}" kind="{kind}" '
        f'policy="{tk.policy}" rate="{rate}" uptime-ms="{tk.now_ns() // 1_000_000}"/></info>'
    )


@register("MEM", "info", "memory: the mem() figure, DRAM, and the 3 GiB cap")
def _mem_info(box: Any, args: list[str]) -> str:
    info = box.platform.memory_info()
    capped = "yes" if info.capped else "no"
    return f"{format_mem(info.usable)} DRAM={info.dram_mb()}MB capped={capped}"


@register("CF0", "format", "format yes: format the emulated compact flash (FAT, erases it)")
def _cf_format(box: Any, args: list[str]) -> str:
    fmt = getattr(box.platform, "format_cf", None)
    dev = box.disks.get(DiskRole.CF)
    if fmt is None or dev is None:
        raise ModCmdError("CF0: no compact flash disk to format on this platform")
    if args != ["yes"]:  # as CFG0 factory-reset: erasing takes a second, deliberate word
        raise ModCmdError(
            "this erases everything on the compact flash: confirm with mod cmd CF0 format yes"
        )
    try:
        return fmt(dev)
    except OSError as e:
        raise ModCmdError(f"CF0 format failed: {e}") from e
