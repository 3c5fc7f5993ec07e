"""The hardware-info service: the CPU and memory lines of the boot trace, `mod cmd CPU
cpu-info`, `CPU aes` and `MEM info` (CF0 is appliance/services/cf.py).

`cpu-info` answers in the seed's format:
  <info><cpu vendor="GenuineIntel" signature="0x906e9" brand="…" flags="sse3 … avx2"
   act-features="has_aesni" srtp-mips="5"/></info>
act-features lists only what this runtime really uses: `has_aesni` when its AES (SRTP's
AES-CM) runs on the AES-NI code path (hal.aes: CPU flag + self-test). srtp-mips is measured
once, on first use, by hal.aes.measure_srtp_mips (method in its docstring).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from appliance import xmltext
from appliance.hal import memory
from appliance.hal.cpu import CpuInfo
from appliance.hal.memory import format_mem
from appliance.modcmd import Command
from appliance.service import BaseService

if TYPE_CHECKING:
    from appliance.box import Box
    from appliance.hal.aes import Aes
    from appliance.hal.platform import Platform
    from appliance.trace import TraceFn


def cpu_info(cpu: CpuInfo, aes: Aes, srtp_mips: int) -> str:
    features = ["has_aesni"] if aes.name == "aesni" else []
    return xmltext.info(
        "cpu",
        {
            "vendor": cpu.vendor,
            "signature": f"0x{cpu.signature:x}",
            "brand": cpu.brand,
            "flags": " ".join(cpu.box_flags()),
            "act-features": " ".join(features),
            "srtp-mips": str(srtp_mips),
        },
    )


class HardwareService(BaseService):
    name = "hardware"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._aes: tuple[Aes, str] | None = None  # chosen once per boot
        self._srtp: dict[str, int] = {}

    def probe(self, platform: Platform, trace: TraceFn) -> None:
        """CPU brand, `mem(…)`, DRAM, the 3 GiB cap and vCPU warnings; too little RAM stops."""
        trace(platform.cpu().brand)
        info = platform.memory_info()
        for line in memory.trace_lines(info):
            trace(line)
        memory.check_enough(info)
        for line in platform.cpu_lines():
            trace(line)

    def commands(self) -> list[Command]:
        return [
            Command(
                "CPU",
                "cpu-info",
                "CPU vendor, signature, flags, features in use, srtp-mips (XML)",
                self.cpu_info,
            ),
            Command("CPU", "aes", "which AES code the runtime uses and why", self.cpu_aes),
            Command("MEM", "info", "memory: the mem() figure, DRAM, and the 3 GiB cap", mem_info),
        ]

    def runtime_aes(self, cpu: CpuInfo) -> tuple[Aes, str]:
        """The AES the runtime uses (chosen once per boot)."""
        # imported here: only CPU cpu-info and aes need it (and hmac, which loads libcrypto)
        from appliance.hal.aes import select_aes

        with self._lock:
            if self._aes is None:
                self._aes = select_aes(cpu.flags)
            return self._aes

    def cpu_info(self, box: Box, args: list[str]) -> str:
        from appliance.hal.aes import measure_srtp_mips  # here: see runtime_aes

        cpu = box.platform.cpu()
        aes, _why = self.runtime_aes(cpu)
        with self._lock:
            if aes.name not in self._srtp:
                self._srtp[aes.name] = measure_srtp_mips(aes, cpu.mhz)
            mips = self._srtp[aes.name]
        return cpu_info(cpu, aes, mips)

    def cpu_aes(self, box: Box, args: list[str]) -> str:
        aes, why = self.runtime_aes(box.platform.cpu())
        return f"aes={aes.name} ({why})"


def mem_info(box: Box, args: list[str]) -> str:
    info = box.platform.memory_info()
    capped = "yes" if info.capped else "no"
    free = box.platform.memory_free()
    tail = f" free={free >> 10}k" if free is not None else ""
    return f"{format_mem(info.usable)} DRAM={info.dram_mb()}MB capped={capped}{tail}"
