"""`mod cmd <MODULE> <cmd> [args]`: the registry of module commands.

Each module (FLASHMAN0, FLASHDIR0, CPU, ETH0 …) registers its commands here where it is
defined; the shell only dispatches. A handler gets the running box and the argument words and
returns the text the console prints (the real box answers in its own formats, often XML).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Handler = Callable[[Any, list[str]], str]

_COMMANDS: dict[tuple[str, str], tuple[Handler, str]] = {}


class ModCmdError(Exception):
    """A module command was refused; the message is shown on the console as is."""


def register(module: str, command: str, help: str = "") -> Callable[[Handler], Handler]:
    """Decorator: `@register("FLASHMAN0", "info", "segment usage per owner")`."""

    def deco(fn: Handler) -> Handler:
        _COMMANDS[(module.upper(), command.lower())] = (fn, help)
        return fn

    return deco


def lookup(module: str, command: str) -> Handler | None:
    entry = _COMMANDS.get((module.upper(), command.lower()))
    return entry[0] if entry else None


def modules() -> dict[str, dict[str, str]]:
    """Module → {command: help}, for `help` and error messages."""
    out: dict[str, dict[str, str]] = {}
    for (mod, cmd), (_fn, hlp) in sorted(_COMMANDS.items()):
        out.setdefault(mod, {})[cmd] = hlp
    return out
