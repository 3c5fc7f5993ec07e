"""`mod cmd TRACE show [N]` and `mod cmd TRACE clear`: the box's trace buffer (appliance.trace)
on the console and the web."""

from __future__ import annotations

from typing import TYPE_CHECKING

from appliance.modcmd import Command, ModCmdError
from appliance.service import BaseService

if TYPE_CHECKING:
    from appliance.box import Box


class TraceService(BaseService):
    """`mod cmd TRACE show [N]` and `mod cmd TRACE clear` on the box's trace buffer."""

    name = "trace"

    def commands(self) -> list[Command]:
        return [
            Command("TRACE", "show", "show [N]: the last N trace lines (all without N)", _show),
            Command("TRACE", "clear", "empty the trace buffer", _clear),
        ]


def _show(box: Box, args: list[str]) -> str:
    if len(args) > 1 or (args and not args[0].isdigit()):
        raise ModCmdError("usage: mod cmd TRACE show [N] (N: how many of the last lines)")
    n = int(args[0]) if args else None
    return box.trace.text(n).rstrip("\n") or "trace buffer is empty"


def _clear(box: Box, args: list[str]) -> str:
    if args:
        raise ModCmdError(f"clear takes no arguments, got {args[0]!r}")
    n = box.trace.clear()
    return f"trace cleared ({n} line{'s' if n != 1 else ''})"
