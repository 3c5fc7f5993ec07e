"""Choose the accelerator: KVM only if a probe boot really works there, else TCG.

`/dev/kvm` on our CI machines is kvm_pvm (paravirtual nested KVM). SeaBIOS and plain real
mode run there, but SYSLINUX dies with "KVM internal error. Suberror: 1" on an IRET in
32-bit protected mode (seen in the register dump: CR0=0x11, CS32, instruction 0xcf). So the
probe is a boot sector doing what SYSLINUX does — real mode → protected mode → IRET →
back to real mode → IRET — and then writing a marker to COM1. Only if the marker arrives is
KVM used. The answer is cached per QEMU version and kernel release; `IPVA_ACCEL=tcg|kvm`
overrides it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from firmware.run import run, user_cache_dir
from hypervisors.qemu.timeouts import KVM_PROBE_TIMEOUT

log = logging.getLogger(__name__)

QEMU = os.environ.get("IPVA_QEMU", "qemu-system-x86_64")
PROBE_MARKER = b"IPVA-KVM-PROBE-OK"

# Assembled from this source (GNU as --32; ld -m elf_i386 -Ttext=0x7c00 --oformat binary):
#   .code16: cli; ds=ss=0; sp=0x7c00; out 0x3f8,'R'; lgdt; cr0.PE=1; ljmp 0x08:pm32
#   .code32 pm32: ds=es=ss=0x10; pushfd; push 0x08; push after; iretd   ← what PVM fails
#   after: out 0x3f8,'P'; ljmp 0x18:pm16
#   .code16 pm16: ds=ss=0x20; cr0.PE=0; ljmp 0:rm; rm: ds=ss=0; pushf; push cs; push rm2; iret
#   rm2: print "\r\nIPVA-KVM-PROBE-OK\r\n" to 0x3f8; hlt loop
#   gdt: null, code32 4G, data32 4G, code16 64K, data16 64K
_PROBE_CODE = bytes.fromhex(
    "fa31c08ed88ed0bc007cbaf803b052ee0f0116a07c0f20c00c010f22c0ea227c080066b810008ed88ec0"
    "8ed0bc007c00009c6a08683a7c0000cf66baf803b050eeea487c00001800b820008ed88ed00f20c024fe"
    "0f22c0ea5c7c000031c08ed88ed09c0e68687ccfbea67cfcac84c07403eeebf8f4ebfd90000000000000"
    "0000ffff0000009acf00ffff00000092cf00ffff0000009a0000ffff0000009200002700787c00000d0a"
    "495056412d4b564d2d50524f42452d4f4b0d0a00"
)


def make_probe_sector() -> bytes:
    """The 512-byte MBR boot sector described above."""
    return _PROBE_CODE.ljust(510, b"\0") + b"\x55\xaa"


def qemu_version(qemu: str = QEMU) -> str:
    out = run([qemu, "--version"], capture=True).stdout.decode(errors="replace")
    return out.splitlines()[0].strip() if out else "unknown"


def probe_boot(accel: str, qemu: str = QEMU, timeout: float = KVM_PROBE_TIMEOUT) -> bool:
    """Boot the probe sector under `accel`; True if its marker reached the serial port."""
    with tempfile.TemporaryDirectory(prefix="ipva-probe-") as tmp:
        disk, out, err = Path(tmp, "probe.img"), Path(tmp, "serial.out"), Path(tmp, "qemu.err")
        disk.write_bytes(make_probe_sector())
        out.touch()
        argv = [
            qemu, "-accel", accel, "-machine", "pc", "-m", "16", "-nodefaults",
            "-display", "none", "-drive", f"file={disk},format=raw,if=ide",
            "-serial", f"file:{out}", "-monitor", "none",
        ]  # fmt: skip
        with err.open("wb") as errf:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=errf, stderr=errf)
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and proc.poll() is None:
                if PROBE_MARKER in out.read_bytes():
                    return True
                if b"internal error" in err.read_bytes():
                    break
                time.sleep(0.05)
            ok = PROBE_MARKER in out.read_bytes()
            if not ok:
                log.debug("%s probe failed: %s", accel, err.read_text(errors="replace")[:2000])
            return ok
        finally:
            proc.kill()
            proc.wait()


def _cache_file(qemu: str) -> Path:
    key = f"{qemu_version(qemu)}|{platform.release()}|{shutil.which(qemu)}"
    return user_cache_dir() / f"kvm-probe-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"


_chosen: dict[str, str] = {}


def choose_accel(qemu: str = QEMU) -> str:
    """ "kvm" or "tcg": the env override, else a cached or fresh probe boot."""
    forced = os.environ.get("IPVA_ACCEL", "").strip().lower()
    if forced in ("kvm", "tcg"):
        log.info("accelerator: %s (IPVA_ACCEL)", forced)
        return forced
    if forced:
        raise ValueError(f"IPVA_ACCEL must be 'kvm' or 'tcg', not {forced!r}")
    if qemu in _chosen:
        return _chosen[qemu]
    accel, reason = "tcg", "no usable /dev/kvm"
    if os.access("/dev/kvm", os.R_OK | os.W_OK):
        cache = _cache_file(qemu)
        try:
            works = json.loads(cache.read_text())["kvm_works"]
            reason = f"cached probe {cache}"
        except (OSError, ValueError, KeyError):
            works = probe_boot("kvm", qemu)
            reason = "probe boot"
            try:
                cache.parent.mkdir(parents=True, exist_ok=True)
                cache.write_text(json.dumps({"kvm_works": works}))
            except OSError:
                pass  # a read-only home only costs a probe per process
        if works:
            accel = "kvm"
        else:
            reason += ": KVM fails real-mode/protected-mode switching (e.g. kvm_pvm)"
    log.info("accelerator: %s (%s)", accel, reason)
    _chosen[qemu] = accel
    return accel
