"""The config schema: every module, its sub-objects and arguments, declared once.

Parsing (`config change`), validation, `config show`, `help` and the backup format all
derive from these declarations. A module added later declares itself in one place with
`declare(Module(...))` (see `appliance/config/modules.py` for the built-in ones).

Naming follows the box: a module is `IP0`, `DHCP0`, `LOG0` …; a sub-object is a prefix plus
an index (`ETH0`, `RT3`); an argument is written `/name`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from appliance.config.types import ValueType

# cross-argument check of one object: gets every argument's effective value (defaults
# filled in) and returns None if fine, else what is wrong and how to fix it
Check = Callable[[Mapping[str, Any]], str | None]


@dataclass(frozen=True)
class Arg:
    """One argument of a module or sub-object (`/name`): its type, default and help."""

    name: str  # without the slash
    type: ValueType
    default: Any
    help: str
    needs_reset: bool = False  # True: `config activate` cannot apply it live
    required: bool = False  # the object must set it (e.g. a route's /gateway)


@dataclass(frozen=True)
class Sub:
    """A kind of sub-object: fixed instances (ETH0, ETH1) or numbered on demand (RT0…)."""

    prefix: str
    help: str
    args: tuple[Arg, ...]
    fixed: tuple[int, ...] = ()  # these instances always exist
    max_count: int = 0  # dynamic instances 0..max_count-1 exist once added
    check: Check | None = None

    @property
    def dynamic(self) -> bool:
        return not self.fixed

    def arg(self, name: str) -> Arg | None:
        return next((a for a in self.args if a.name == name.lower()), None)

    def names(self) -> list[str]:
        if self.fixed:
            return [f"{self.prefix}{i}" for i in self.fixed]
        return [f"{self.prefix}0..{self.prefix}{self.max_count - 1}"]


@dataclass(frozen=True)
class Module:
    """A config module (`IP0`, `DHCP0` …): its arguments, its sub-objects, its check."""

    name: str
    help: str
    args: tuple[Arg, ...] = ()  # module-level arguments (`config change DHCP0 /mode off`)
    subs: tuple[Sub, ...] = ()
    check: Check | None = None  # check of the module-level arguments
    order: int = field(default=100, compare=False)  # position in `config show`

    def arg(self, name: str) -> Arg | None:
        return next((a for a in self.args if a.name == name.lower()), None)

    def find_sub(self, token: str) -> tuple[Sub, int | None] | None:
        """`ETH0` → (ETH sub, 0); `RT` → (RT sub, None) meaning "the next free one"."""
        m = re.fullmatch(r"([A-Za-z]+)([0-9]{0,3})", token)
        if not m:
            return None
        for sub in self.subs:
            if sub.prefix == m[1].upper():
                return sub, (int(m[2]) if m[2] else None)
        return None


MODULES: dict[str, Module] = {}


def declare(module: Module) -> Module:
    """Register a module; the one place a new module hooks into the config."""
    if module.name in MODULES and MODULES[module.name] != module:
        raise ValueError(f"config module {module.name} declared twice")
    for sub in module.subs:
        if bool(sub.fixed) == bool(sub.max_count):
            raise ValueError(f"{module.name} {sub.prefix}: give either fixed or max_count")
    MODULES[module.name] = module
    return module


def ordered_modules() -> list[Module]:
    return sorted(MODULES.values(), key=lambda m: (m.order, m.name))
