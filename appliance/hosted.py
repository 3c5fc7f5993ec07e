"""`ipva run --hosted [--dir DIR]`: the same boot and shell on image files in a directory.

`run_hosted(DIR, stdin, stdout)` runs a hal.hosted.HostedPlatform on DIR. The disks are
`boot.img`, `cf.img`, `flash.img`, `dump.img` in DIR (created blank if missing), so a second
run starts with what `config write` saved, as a `reset` does in a VM. The terminal handling
(raw mode, Ctrl-D, the transcript to a pipe) is the platform's (hal/hosted.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

from appliance import boot
from appliance.hal.hosted import HostedPlatform
from appliance.services import Mount


def run_hosted(
    directory: Path,
    stdin: BinaryIO,
    stdout: BinaryIO,
    *,
    memory: int = 256 << 20,
    mount: Mount | None = None,
) -> int:
    """Boot on the image files in `directory`, serve the console on stdin/stdout; exit status."""
    platform = HostedPlatform(Path(directory), memory=memory, stdin=stdin, stdout=stdout)
    return boot.run(platform, mount=mount)
