"""Saved states: a booted box at its prompt, kept as a QEMU migration stream in a file.

A saved state is a directory: `state.mig` (the machine's RAM and devices: QEMU's migration
to a file through `exec:`), `disk<N>.qcow2` (the overlays the box ran on, read-only from
then on: a resumed machine boots its own overlays on top of them) and `meta.json` (the
fingerprint it was made under). A migration stream loads only into the same QEMU with the
same virtual hardware and the same disk contents, so the fingerprint holds exactly those:
the QEMU binary (version, size, mtime), the accelerator, the hardware argv of the profile
and each source disk's path, size and mtime. `unusable()` says why a state does not fit;
Machine then boots cold and says so in the log.

Migration to a file rather than savevm/loadvm: loadvm reads the snapshot from the top
image, so every resumed machine would need a full copy of the disks (or share and change
one); a stream file is loaded by any number of machines on their own thin overlays.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

FORMAT = 1  # bump when the layout or what goes into the fingerprint changes
STATE_FILE = "state.mig"
META_FILE = "meta.json"


@cache
def qemu_identity(qemu: str) -> dict[str, Any]:
    """Version, path, size and mtime of the QEMU binary: a stream from another build of
    QEMU may not load (and must not be tried on a different machine type's layout)."""
    out = subprocess.run([qemu, "--version"], capture_output=True, text=True, check=False)
    path = Path(subprocess.run(["which", qemu], capture_output=True, text=True, check=False)
                .stdout.strip() or qemu)  # fmt: skip
    stat = path.stat() if path.exists() else None
    return {
        "version": out.stdout.splitlines()[0] if out.stdout else "",
        "path": str(path),
        "size": stat.st_size if stat else None,
        "mtime_ns": stat.st_mtime_ns if stat else None,
    }


def disk_identity(path: Path) -> dict[str, Any]:
    stat = path.stat()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def fingerprint(
    qemu: str, accel: str, hardware_argv: list[str], disks: list[Path]
) -> dict[str, Any]:
    """What a stream depends on. `hardware_argv`: QEMU's argv with the disk paths and the
    ports replaced by placeholders (they are not part of the guest's state)."""
    return {
        "format": FORMAT,
        "qemu": qemu_identity(qemu),
        "accel": accel,
        "hardware": hardware_argv,
        "disks": [disk_identity(d) for d in disks],
    }


def differences(want: dict[str, Any], have: dict[str, Any]) -> list[str]:
    """The top-level keys (and per-disk entries) in which two fingerprints differ."""
    out = []
    for key in sorted(set(want) | set(have)):
        if key == "disks" and isinstance(want.get(key), list) and isinstance(have.get(key), list):
            if len(want[key]) != len(have[key]):
                out.append(f"disks: {len(have[key])} saved, {len(want[key])} now")
            for index, (w, h) in enumerate(zip(want[key], have[key], strict=False)):
                if w != h:
                    changed = ", ".join(k for k in sorted(set(w) | set(h)) if w.get(k) != h.get(k))
                    out.append(f"disk {index} ({w.get('path')}): {changed} differ")
        elif key == "hardware" and want.get(key) != have.get(key):
            saved, now = have.get(key) or [], want.get(key) or []
            out.append(f"hardware: saved with {' '.join(a for a in saved if a not in now)!r}, "
                       f"now {' '.join(a for a in now if a not in saved)!r}")  # fmt: skip
        elif want.get(key) != have.get(key):
            out.append(f"{key}: saved {have.get(key)!r}, now {want.get(key)!r}")
    return out


@dataclass(frozen=True)
class SavedState:
    """A saved-state directory (which may not exist yet, or not fit)."""

    path: Path

    @property
    def stream(self) -> Path:
        return self.path / STATE_FILE

    def disk(self, index: int) -> Path:
        return self.path / f"disk{index}.qcow2"

    def meta(self) -> dict[str, Any] | None:
        try:
            value = json.loads((self.path / META_FILE).read_text())
        except (OSError, ValueError):
            return None
        return value if isinstance(value, dict) else None

    def unusable(self, want: dict[str, Any]) -> str | None:
        """Why this state cannot resume a machine with fingerprint `want`; None if it can."""
        have = self.meta()
        if have is None:
            return f"no saved state in {self.path} (no readable {META_FILE})"
        diff = differences(want, have["fingerprint"])
        if diff:
            return "made for other hardware, disks or QEMU: " + "; ".join(diff)
        missing = [p.name for p in [self.stream, *map(self.disk, range(len(want["disks"])))]
                   if not p.is_file()]  # fmt: skip
        if missing:
            return f"{self.path} lacks {', '.join(missing)}"
        return None

    def stale(self) -> bool:
        """Made from source disks that have changed (or gone) since: never usable again."""
        meta = self.meta()
        if meta is None:
            return False  # being made, or not a saved state
        for disk in meta["fingerprint"]["disks"]:
            path = Path(disk["path"])
            if not path.exists() or disk_identity(path) != disk:
                return True
        return False

    def write_meta(self, want: dict[str, Any], seconds_to_prompt: float) -> None:
        """Last step of a save: a state without meta.json is never used."""
        meta = {"fingerprint": want, "boot_s": round(seconds_to_prompt, 2)}
        tmp = self.path / (META_FILE + ".new")
        tmp.write_text(json.dumps(meta, indent=1) + "\n")
        os.replace(tmp, self.path / META_FILE)

    def save_uri(self) -> str:
        return "exec:cat > " + shlex.quote(str(self.stream))

    def load_uri(self) -> str:
        return "exec:cat " + shlex.quote(str(self.stream))
