"""The configuration itself: an immutable value; every change makes a new one.

The box holds three of them (see appliance/box.py): *running* (what `config change` edits),
*active* (what the services use; `config activate` moves live-applicable differences
there) and *saved* (what `config write` put in VARS; `reset` starts from it).

A Config stores only non-default values, keyed by object: `("IP0", "ETH0")`, or
`("DHCP0", "")` for module-level arguments. A numbered sub-object (`RT3`) exists exactly
when its key is present.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from appliance.config import modules as _builtin_modules  # noqa: F401  (declares the modules)
from appliance.config.grammar import GrammarError, Op, pair_args, quote, show_token
from appliance.config.schema import MODULES, Arg, Module, Sub, ordered_modules
from appliance.config.types import BadValueError, Flag, Password

ObjKey = tuple[str, str]  # (module, sub-object name or "")


class ConfigError(Exception):
    """A config request was refused; nothing was changed. The message says what to do."""


def _obj_label(key: ObjKey) -> str:
    return f"{key[0]} {key[1]}" if key[1] else key[0]


@dataclass(frozen=True)
class Config:
    """One configuration: each object's non-default argument values, by object key."""

    objects: Mapping[ObjKey, Mapping[str, Any]]

    @classmethod
    def factory(cls) -> Config:
        """No objects: every argument at its default (the base a config is parsed onto)."""
        return cls({})

    @classmethod
    def factory_settings(cls) -> Config:
        """What a box with no saved config runs (modules.FACTORY_OBJECTS: ETH1 static)."""
        return cls({k: dict(v) for k, v in _builtin_modules.FACTORY_OBJECTS.items()})

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Config) and dict(self.objects) == dict(other.objects)

    def __hash__(self) -> int:
        return hash(tuple(sorted((k, tuple(sorted(v.items()))) for k, v in self.objects.items())))

    def value(self, module: str, arg: str, sub: str = "") -> Any:
        """Effective value (default if not set) of `/arg` of MODULE [SUB]."""
        decl = _arg_decl(module, sub, arg)
        return self.objects.get((module, sub), {}).get(arg, decl.default)

    def exists(self, module: str, sub: str) -> bool:
        return (module, sub) in self.objects

    def with_object(self, key: ObjKey, values: Mapping[str, Any] | None) -> Config:
        objects = dict(self.objects)
        if values is None:
            objects.pop(key, None)
        else:
            objects[key] = dict(values)
        return Config(objects)

    def lines(self) -> list[str]:
        """`config show`: the `config change` lines that recreate this config."""
        return [line for _key, line in self.object_lines()]

    def object_lines(self) -> Iterator[tuple[ObjKey, str]]:
        for module in ordered_modules():
            for key, decls in _object_keys(module, self):
                values = self.objects.get(key)
                if values is None:
                    continue
                words = ["config change", _obj_label(key)]
                for a in decls:
                    if a.name in values:
                        v = values[a.name]
                        words.append(f"/{a.name}" if v is True else f"/{a.name} {_fmt(a, v)}")
                yield key, " ".join(words)


def _fmt(arg: Arg, value: Any) -> str:
    return quote(quote_value(arg.type.format(value)))


def unquote_value(text: str) -> str:
    """A typed value as the box reads it: URL-decoded (`%3A` → `:`, `%20` → blank), so
    that update servers can send any value as one word (`config add UP1 /url http%3A%2F…`)."""
    if "%" not in text:
        return text
    # imported here: a box whose values have no escape never loads urllib.parse (its
    # regexes cost the cold boot's imports under TCG; the payload's pathlib does not either)
    from urllib.parse import unquote

    return unquote(text, errors="surrogateescape")


def quote_value(text: str) -> str:
    """The inverse of unquote_value for what `config show` and backups write: only `%`
    needs it (as `%25`), everything else reads back as it is."""
    return text.replace("%", "%25")


def _object_keys(module: Module, config: Config) -> Iterator[tuple[ObjKey, tuple[Arg, ...]]]:
    """Every object of a module that could be shown, in `config show` order."""
    yield (module.name, ""), module.args
    for sub in module.subs:
        if sub.fixed:
            for i in sub.fixed:
                yield (module.name, f"{sub.prefix}{i}"), sub.args
        else:
            for i in range(sub.max_count):
                key = (module.name, f"{sub.prefix}{i}")
                if key in config.objects:
                    yield key, sub.args


def _arg_decl(module: str, sub: str, arg: str) -> Arg:
    mod = MODULES[module]
    if not sub:
        found = mod.arg(arg)
    else:
        s = mod.find_sub(sub)
        found = s[0].arg(arg) if s else None
    if found is None:
        raise KeyError(f"{module} {sub} /{arg}")
    return found


def _module_names() -> str:
    return ", ".join(m.name for m in ordered_modules())


def _find_module(name: str) -> Module:
    module = MODULES.get(name.upper())
    if module is None:
        raise ConfigError(f"unknown module {show_token(name)}: modules are {_module_names()}")
    return module


def _describe_subs(module: Module) -> str:
    return ", ".join(n for s in module.subs for n in s.names())


def _resolve(op: Op, config: Config) -> tuple[Module, Sub | None, ObjKey]:
    """Which object an op addresses; for `config add RT` picks the next free number."""
    module = _find_module(op.module)
    if op.sub is None:
        if not module.args and module.subs:
            raise ConfigError(
                f"{module.name} has no arguments of its own: name one of its objects "
                f"({_describe_subs(module)}), e.g. config {op.verb} {module.name} "
                f"{module.subs[0].names()[0].split('.')[0]} /…"
            )
        return module, None, (module.name, "")
    found = module.find_sub(op.sub)
    if found is None:
        have = _describe_subs(module) or "no sub-objects"
        raise ConfigError(f"{module.name} has no object {show_token(op.sub)}: it has {have}")
    sub, index = found
    if index is None:
        if op.verb != "add" or sub.fixed:
            raise ConfigError(
                f"give the number of the {sub.prefix} object ({', '.join(sub.names())})"
            )
        free = [
            i for i in range(sub.max_count) if not config.exists(module.name, f"{sub.prefix}{i}")
        ]
        if not free:
            raise ConfigError(
                f"all {sub.max_count} {module.name} {sub.prefix} objects are in use: "
                f"config rem one first"
            )
        index = free[0]
    valid = sub.fixed if sub.fixed else range(sub.max_count)
    if index not in valid:
        raise ConfigError(
            f"{module.name} has no object {show_token(op.sub)}: it has {', '.join(sub.names())}"
        )
    return module, sub, (module.name, f"{sub.prefix}{index}")


def _arg_list(decls: tuple[Arg, ...]) -> str:
    return " ".join(f"/{a.name}" for a in decls) or "(none)"


def apply_op(config: Config, op: Op) -> tuple[Config, str]:
    """Apply one `config change|add|rem`; returns the new config and what to print.

    Raises ConfigError (and changes nothing) if the request or the resulting object is bad.
    """
    module, sub, key = _resolve(op, config)
    decls = sub.args if sub else module.args
    label = _obj_label(key)
    by_name = {a.name: a for a in decls}
    seen: set[str] = set()
    parsed: dict[str, Any] = {}

    def takes_value(name: str) -> bool:
        decl = by_name.get(name.lower())
        return op.verb != "rem" and (decl is None or not isinstance(decl.type, Flag))

    pairs = pair_args(op.words, takes_value)
    for aw in pairs:
        decl = by_name.get(aw.name.lower())
        if decl is None:
            raise ConfigError(
                f"{label} has no argument {show_token('/' + aw.name)}: "
                f"its arguments are {_arg_list(decls)}"
            )
        if decl.name in seen:
            raise ConfigError(f"/{decl.name} given twice: give each argument once")
        seen.add(decl.name)
        if op.verb == "rem":
            if aw.value is not None:
                raise ConfigError(
                    f"config rem takes argument names only, not the value "
                    f"{show_token(aw.value)}: config rem {label} /{decl.name}"
                )
            continue
        if aw.value is None:
            if isinstance(decl.type, Flag):
                parsed[decl.name] = True
                continue
            raise ConfigError(f"{label} /{decl.name} needs a value: {decl.type.describe()}")
        try:
            parsed[decl.name] = decl.type.parse(unquote_value(aw.value))
        except BadValueError as e:
            raise ConfigError(f"{label} /{decl.name}: {e}") from None

    exists = key in config.objects
    dynamic = sub is not None and sub.dynamic
    if op.verb == "rem":
        if dynamic and not exists:
            raise ConfigError(f"{label} does not exist (config show lists what does)")
        if not pairs:  # a numbered object goes; any other returns to its defaults
            return config.with_object(key, None), ""
        values = {k: v for k, v in config.objects.get(key, {}).items() if k not in seen}
    else:
        if not pairs and not dynamic:
            raise ConfigError(
                f"nothing to change: config {op.verb} {label} /<arg> <value> "
                f"(arguments: {_arg_list(decls)})"
            )
        # change sets the whole line (what it does not name returns to its default); add
        # adds or replaces the named options and keeps the rest, as the real firmware does
        kept = config.objects.get(key, {}) if op.verb == "add" else {}
        values = {**kept, **parsed}
        given = {a.name: values.get(a.name, a.default) for a in decls}
        for name in parsed:  # values that depend on their neighbours (a password's user)
            values[name] = by_name[name].type.complete(values[name], given)

    # only non-default values are stored, so `config show` prints non-defaults only
    values = {
        a.name: values[a.name] for a in decls if a.name in values and values[a.name] != a.default
    }
    effective = {a.name: values.get(a.name, a.default) for a in decls}
    for a in decls:
        if a.required and a.name not in values:
            how = (
                f"; to remove the whole object: config rem {label}"
                if op.verb == "rem" and dynamic
                else f": config {op.verb} {label} /{a.name} <value>"
            )
            raise ConfigError(f"{label} needs /{a.name} ({a.type.describe()}){how}")
    check = sub.check if sub else module.check
    problem = check(effective) if check else None
    if problem:
        raise ConfigError(f"{label}: {problem}")
    if not values and not dynamic:
        return config.with_object(key, None), ""
    added = op.verb == "add" and dynamic and not exists
    return config.with_object(key, values), (f"added {label}" if added else "")


@dataclass(frozen=True)
class Activation:
    """What `config activate` did: the new active config, what it applied, what needs a reset."""

    active: Config
    applied: list[str]  # "LOG0 /type" …
    pending: list[str]  # needs `config write` + `reset`


def activate(running: Config, active: Config) -> Activation:
    """Move every live-applicable difference from running to active."""
    new = dict(active.objects)
    applied: list[str] = []
    pending: list[str] = []
    for key in sorted(set(running.objects) | set(active.objects)):
        module = MODULES.get(key[0])
        if module is None:
            continue
        found = module.find_sub(key[1]) if key[1] else None
        decls = found[0].args if found else module.args
        old, cur = active.objects.get(key), running.objects.get(key)
        if old == cur:
            continue
        if found and found[0].dynamic and (old is None or cur is None):
            # a numbered object appears or goes as a whole
            what = f"{_obj_label(key)} ({'added' if cur is not None else 'removed'})"
            if any(a.needs_reset for a in decls):
                pending.append(what)
            else:
                applied.append(what)
                _put(new, key, cur)
            continue
        values = dict(old or {})
        for a in decls:
            before = (old or {}).get(a.name, a.default)
            after = (cur or {}).get(a.name, a.default)
            if before == after:
                continue
            if a.needs_reset:
                pending.append(f"{_obj_label(key)} /{a.name}")
                continue
            applied.append(f"{_obj_label(key)} /{a.name}")
            if a.name in (cur or {}):
                values[a.name] = after
            else:
                values.pop(a.name, None)
        _put(new, key, values if values or (found and found[0].dynamic) else None)
    return Activation(Config(new), applied, pending)


def _put(
    objects: dict[ObjKey, Mapping[str, Any]], key: ObjKey, values: Mapping[str, Any] | None
) -> None:
    if values is None:
        objects.pop(key, None)
    else:
        objects[key] = dict(values)


def diff_count(a: Config, b: Config) -> int:
    """How many arguments/objects differ (for "N unwritten changes")."""
    n = 0
    for key in set(a.objects) | set(b.objects):
        x, y = a.objects.get(key, {}), b.objects.get(key, {})
        if (key in a.objects) != (key in b.objects) and not x and not y:
            n += 1
        n += sum(1 for k in set(x) | set(y) if x.get(k) != y.get(k))
    return n


__all__ = [
    "Activation",
    "Config",
    "ConfigError",
    "GrammarError",
    "ObjKey",
    "activate",
    "apply_op",
    "diff_count",
]


SECRET = "********"


def describe_op(op: Op) -> str:
    """A `config change|add|rem` request as the log shows it: as typed, passwords masked."""
    module = MODULES.get(op.module.upper())
    decls = [*module.args, *(a for s in module.subs for a in s.args)] if module else []
    secret = {a.name for a in decls if isinstance(a.type, Password)}
    words = [f"config {op.verb}", op.module.upper(), *([op.sub.upper()] if op.sub else [])]
    hide = False
    for w in op.words:
        if w.is_arg:
            hide = w.text[1:].lower() in secret
            words.append(w.text)
        else:
            words.append(SECRET if hide else quote(w.text))
            hide = False
    return " ".join(words)
