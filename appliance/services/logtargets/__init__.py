"""Log targets: where LOG0/LOG1 send the box's log records (services-logging.wiki).

sender.py   LogRecord (the syslog line), the Target protocol, Sender (bounded queue + thread)
remote.py   SYSLOG (UDP), TCP, HTTP (standard / post / get)
local.py    LOCAL: /log/LOG0.0 … LOG0.3 on the CF card, rotated by size or backup time

`make_target` builds the target a LOG module's config values describe.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from appliance.hal.cf import CfVolume
from appliance.services.logtargets.local import LocalTarget
from appliance.services.logtargets.remote import HttpTarget, SyslogTarget, TcpTarget
from appliance.services.logtargets.sender import (
    LogRecord,
    Rejected,
    Sender,
    SenderStats,
    Target,
)

SYSLOG_PORT = 514


def make_target(
    module: str, values: Mapping[str, Any], cf_volume: Callable[[], CfVolume | None]
) -> Target | None:
    """The target of `config change LOG0 /type … /addr …`, or None for /type off.
    LOCAL writes to whatever `cf_volume()` gives at each send (None: CF0 not mounted)."""
    kind = str(values["type"])
    addr, port, facility = str(values["addr"]), int(values["port"]), int(values["class"])
    if kind == "syslog":
        return SyslogTarget(addr, port or SYSLOG_PORT, facility)
    if kind == "tcp":
        return TcpTarget(addr, port, facility)
    if kind == "http":
        return HttpTarget(addr, port, facility, str(values["method"]), str(values["path"]))
    if kind == "local":
        backup_s = float(values.get("backup-time", 0)) * 3600
        return LocalTarget(cf_volume, module, int(values["max-file-size"]) * 1024, backup_s)
    return None


__all__ = [
    "HttpTarget",
    "LocalTarget",
    "LogRecord",
    "Rejected",
    "Sender",
    "SenderStats",
    "SyslogTarget",
    "Target",
    "TcpTarget",
    "make_target",
]
