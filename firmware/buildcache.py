"""Builds that take minutes (the kernel, the bootcode's busybox and signify) are made once per
recipe and kept outside the checkout, under user_cache_dir()/<kind>/<key>, for every tree of
the same user. One build per key at a time (a lock file beside the entry: a second build
would wipe the first one's work directory), and an entry appears whole or not at all (built
in a work directory, then renamed into place).
"""

from __future__ import annotations

import fcntl
import shutil
from collections.abc import Callable
from pathlib import Path

from firmware.run import user_cache_dir


def cached_build(
    kind: str, key: str, marker: str, build: Callable[[Path, Path], None]
) -> tuple[Path, bool]:
    """(the entry's directory, whether it was built now). `build(work, staged)` fills
    `staged` (a scratch directory `work` beside it), `marker` is a file it writes: an entry
    that has it is complete."""
    root = user_cache_dir() / kind
    root.mkdir(parents=True, exist_ok=True)
    done = root / key
    with (root / f"{key}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (done / marker).exists():
            return done, False
        work = root / f"{key}.build"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        try:
            staged = work / "result"
            staged.mkdir()
            build(work, staged)
            shutil.rmtree(done, ignore_errors=True)
            staged.rename(done)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return done, True
