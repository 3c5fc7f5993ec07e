"""This host's stdlib as a tree of links with the payload's edited modules in place of
theirs (firmware/payload_edits.py): what the payload's stdlib does, for the tests of the
edits and of the build's prompt imports (the venv's interpreter is Debian's python3.11, as
the payload's)."""

from __future__ import annotations

import sysconfig
from pathlib import Path

STDLIB = Path(sysconfig.get_paths()["stdlib"])


def overlay(edited: Path, files: list[Path], dst: Path) -> Path:
    """This host's stdlib in `dst`, entries linked, with the `files` edited in `edited` in
    place of theirs (the directories on their way made real to hold them)."""
    dst.mkdir()
    for entry in STDLIB.iterdir():
        (dst / entry.name).symlink_to(entry)
    for file in files:
        rel = file.relative_to(edited)
        at = dst
        for part in rel.parts[:-1]:  # the link to a directory becomes a directory of links
            at = at / part
            if at.is_symlink():
                target = at.resolve()
                at.unlink()
                at.mkdir()
                for entry in target.iterdir():
                    (at / entry.name).symlink_to(entry)
        (dst / rel).unlink()
        (dst / rel).symlink_to(file)
    return dst
