"""LOCAL: log files on the CF card, `/log/LOG0.0` … `LOG0.3`, LOG0.0 always the newest.

A new LOG0.0 is started when the next line would take it past the max file size, or when
the backup time has passed since it was started: LOG0.2 → LOG0.3 (the old LOG0.3 goes),
LOG0.1 → LOG0.2, LOG0.0 → LOG0.1. The card comes from `volume()` at each send (CF0 may be
unmounted and mounted again meanwhile); not mounted: send() fails and the Sender retries.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from appliance.hal.cf import CfVolume
from appliance.services.logtargets.sender import LogRecord

FILES = 4  # LOG0.0 … LOG0.3
LOG_DIR = "log"


class LocalTarget:
    def __init__(
        self,
        volume: Callable[[], CfVolume | None],
        module: str = "LOG0",
        max_bytes: int = 1024 * 1024,
        backup_s: float = 0,  # 0: rotate on size only
        clock: Callable[[], float] = time.time,
        directory: str = LOG_DIR,  # another box's lines: log/remote (alarms/receiver.py)
    ) -> None:
        self.name = f"local {module}"
        self.directory = directory
        self.volume = volume
        self.module = module
        self.max_bytes = max_bytes
        self.backup_s = backup_s
        self._clock = clock
        self._started: float | None = None  # when the current LOG0.0 was begun

    def path(self, n: int) -> str:
        return f"{self.directory}/{self.module}.{n}"

    def send(self, record: LogRecord) -> None:
        self.write_line(record.file_line())

    def write_line(self, line: str) -> None:
        vol = self.volume()
        if vol is None:
            raise OSError("CF0 not mounted")
        data = (line + "\r\n").encode("utf-8")  # CRLF: read on Windows shares
        vol.makedirs(self.directory)
        size = vol.size(self.path(0)) or 0
        now = self._clock()
        if self._started is None or size == 0:
            self._started = now
        too_big = size > 0 and size + len(data) > self.max_bytes
        too_old = self.backup_s > 0 and size > 0 and now - self._started >= self.backup_s
        if too_big or too_old:
            self.rotate(vol)
            self._started = now
        vol.append(self.path(0), data)

    def rotate(self, vol: CfVolume) -> None:
        vol.remove(self.path(FILES - 1))
        for n in range(FILES - 2, -1, -1):
            if vol.size(self.path(n)) is not None:
                vol.replace(self.path(n), self.path(n + 1))

    def close(self) -> None:
        pass
