"""The crash-report service: a `reboot` (or a crash) left a record on the dump disk
(appliance/services/crashdump.py has the record format); the boot trace shows it once.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from appliance.hal.types import DiskRole
from appliance.service import BaseService
from appliance.services.crashdump import read_crash_record, write_crash_record

if TYPE_CHECKING:
    from appliance.box import Box


class CrashReportService(BaseService):
    name = "crash-report"

    def start(self, box: Box) -> None:
        """Show a record not yet reported, then mark it reported; the record stays."""
        dump = box.disks.get(DiskRole.DUMP)
        record = read_crash_record(dump) if dump is not None else None
        if dump is None or record is None or record.reported:
            return
        box.trace(f"restart after a crash: {record.reason} (firmware {record.version})")
        write_crash_record(dump, dataclasses.replace(record, reported=True))
