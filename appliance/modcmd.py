"""`mod cmd <MODULE> <cmd> [args]`: module commands, declared by the services that own them.

A service lists its commands (`Service.commands()`, see appliance/service.py); the box builds
one CommandTable from its services at boot, so `help mod` and `mod cmd` offer the same
modules on every platform (a module whose hardware is absent answers so). The shell only
dispatches. A handler gets the box and the argument words and returns the text the console
prints (the real box answers in its own formats, often XML: see appliance/xmltext.py); it
raises ModCmdError with a message for the console to refuse.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the box holds the table; handlers are typed against it
    from appliance.box import Box

Handler = Callable[["Box", list[str]], str]


class ModCmdError(Exception):
    """A module command was refused; the message is shown on the console as is."""


@dataclass(frozen=True)
class Command:
    """One module command (`mod cmd <module> <name>`): its help and its handler."""

    module: str  # "FLASHMAN0", "ETH0", "TRACE" …
    name: str  # "info", "reset" …
    help: str
    run: Handler


class CommandTable:
    """The module commands of one box, in the order the services declared them."""

    def __init__(self, commands: Iterable[Command] = ()) -> None:
        self._commands: dict[tuple[str, str], Command] = {}
        self.add(commands)

    def add(self, commands: Iterable[Command]) -> None:
        """More commands (the services that start after the prompt declare theirs then)."""
        for c in commands:
            key = (c.module.upper(), c.name.lower())
            if key in self._commands:
                raise ValueError(f"mod cmd {c.module} {c.name} declared twice")
            self._commands[key] = c

    def lookup(self, module: str, command: str) -> Handler | None:
        entry = self._commands.get((module.upper(), command.lower()))
        return entry.run if entry else None

    def modules(self) -> dict[str, dict[str, str]]:
        """Module → {command: help}, sorted, for `help mod` and error messages."""
        out: dict[str, dict[str, str]] = {}
        for (mod, cmd), c in sorted(self._commands.items()):
            out.setdefault(mod, {})[cmd] = c.help
        return out
