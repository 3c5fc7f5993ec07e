"""LOCAL: log files on the CF card, `/log/LOG0.0` … `LOG0.3`, LOG0.0 always the newest.

A new LOG0.0 is started when the next line would take it past the max file size, or when
the backup time has passed since it was started: LOG0.2 → LOG0.3 (the old LOG0.3 goes),
LOG0.1 → LOG0.2, LOG0.0 → LOG0.1. The directory is the CF card's mount point (see
appliance.services.cf); when the card is not mounted, send() fails and the Sender retries.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from appliance.services.logtargets.sender import LogRecord

FILES = 4  # LOG0.0 … LOG0.3
LOG_DIR = "log"


class LocalTarget:
    def __init__(
        self,
        root: Path,
        module: str = "LOG0",
        max_bytes: int = 1024 * 1024,
        backup_s: float = 0,  # 0: rotate on size only
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = f"local {module}"
        self.dir = Path(root) / LOG_DIR
        self.module = module
        self.max_bytes = max_bytes
        self.backup_s = backup_s
        self._clock = clock
        self._started: float | None = None  # when the current LOG0.0 was begun

    def path(self, n: int) -> Path:
        return self.dir / f"{self.module}.{n}"

    def send(self, record: LogRecord) -> None:
        data = (record.file_line() + "\r\n").encode("utf-8")  # CRLF: read on Windows shares
        self.dir.mkdir(exist_ok=True)
        newest = self.path(0)
        size = newest.stat().st_size if newest.exists() else 0
        now = self._clock()
        if self._started is None:
            self._started = newest.stat().st_mtime if size else now
        too_big = size > 0 and size + len(data) > self.max_bytes
        too_old = self.backup_s > 0 and size > 0 and now - self._started >= self.backup_s
        if too_big or too_old:
            self.rotate()
            self._started = now
        with newest.open("ab") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    def rotate(self) -> None:
        self.path(FILES - 1).unlink(missing_ok=True)
        for n in range(FILES - 2, -1, -1):
            if self.path(n).exists():
                os.replace(self.path(n), self.path(n + 1))

    def close(self) -> None:
        pass
