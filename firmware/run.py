"""Every host tool call of the build side goes through `run()`.

argv lists only (never a shell), stdin from /dev/null, a fixed locale and SOURCE_DATE_EPOCH,
the command logged at debug level, and on failure one line that says what to do next.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

log = logging.getLogger("ipva.run")

# tool → Debian package that provides it, for the one-line diagnosis
TOOL_PACKAGES = {
    "apt-get": "apt",
    "dpkg-deb": "dpkg",
    "sfdisk": "fdisk",
    "mkfs.fat": "dosfstools",
    "mlabel": "mtools",
    "mcopy": "mtools",
    "mmd": "mtools",
    "mdel": "mtools",
    "mtype": "mtools",
    "syslinux": "syslinux",
    "mksquashfs": "squashfs-tools",
    "unsquashfs": "squashfs-tools",
    "zstd": "zstd",
    "cpio": "cpio",
    "gcc": "gcc",
    "make": "make",
    "tar": "tar",
    "dpkg-source": "dpkg-dev",
    "musl-gcc": "musl-tools",
    "qemu-img": "qemu-utils",
    "qemu-system-x86_64": "qemu-system-x86",
    "xmllint": "libxml2-utils",
    "virt-xml-validate": "libvirt-clients",
}


def user_cache_dir() -> Path:
    """The per-user cache outside any checkout ($XDG_CACHE_HOME/ipva, else ~/.cache/ipva):
    what outlives a clean clone (the KVM probe, the box's kernel)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ipva"


class ToolError(RuntimeError):
    """A host tool was missing or failed; str() is the one-line diagnosis."""


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pkg = TOOL_PACKAGES.get(name, name)
        raise ToolError(f"{name} not found: apt-get install {pkg}")
    return path


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    input: bytes | None = None,
    capture: bool = False,
    check: bool = True,
) -> subprocess.CompletedProcess[bytes]:
    """Run a host tool; raise ToolError with the tool's last stderr line when it fails."""
    args = [os.fspath(a) for a in argv]
    require_tool(args[0])
    full_env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "LC_ALL": "C.UTF-8",
        "TZ": "UTC",
        "SOURCE_DATE_EPOCH": os.environ.get("SOURCE_DATE_EPOCH", "1700000000"),
        "HOME": os.environ.get("HOME", "/root"),
    }
    # mtools refuses images whose geometry it cannot guess unless told not to care
    full_env["MTOOLS_SKIP_CHECK"] = "1"
    if env:
        full_env.update(env)
    log.debug("+ %s", " ".join(args))
    proc = subprocess.run(
        args,
        cwd=cwd,
        env=full_env,
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        check=False,
    )
    if check and proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        last = err[-1] if err else "(no output)"
        raise ToolError(f"{Path(args[0]).name} failed (exit {proc.returncode}): {last}")
    return proc
