"""The console interpreter: one line in, the text to print out. It never raises.

Commands (a leading `!` is accepted, as on the box): `config change|add|rem|show|write|
activate`, `vars create|read|del`, `reset`, `reboot`, `mod cmd <MODULE> <cmd> [args]`,
`help`/`?`, `version`.
Every refusal is one line starting `error:` that names the offending word and says what to
do next; a refused command changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from appliance import modcmd
from appliance.box import Box, BoxError
from appliance.config import (
    MODULES,
    ConfigError,
    GrammarError,
    Word,
    ordered_modules,
    parse_op,
    split_words,
)
from appliance.config.grammar import show_token
from appliance.config.types import Flag
from appliance.config.varlines import (
    MAX_WORD,
    VarsError,
    check_name,
    parse_create,
    read_line,
    under,
)
from appliance.flash.limits import FlashError

if TYPE_CHECKING:
    from appliance.services.update.service import UpdateService

# the update server's finals that are console lines of their own (`iresetn` after UP0 prot):
# values of services/update/script.py's Final, which is imported only when one is typed
FINAL_LINES = ("ireset", "resetn", "iresetn")

CONFIG_SEMANTICS = """\
The box keeps three configurations:
  changed   config change/add/rem edit it; config show prints it.
  active    what the box runs with. config activate applies the changes that can be
            applied live and lists those that need a reset (addresses, ports).
  saved     config write stores the changed configuration in flash (VARS), in one step.
reset starts the box again with the saved configuration: changes not written are lost."""

HELP = f"""\
config change <MODULE> [<SUB>] /<arg> [<value>] ...
                          set the whole line: what it does not name returns to its
                          default (config change IP0 ETH0 /addr 10.0.0.2 /mask 255.0.0.0)
config add <MODULE> [<SUB>] /<arg> [<value>] ...
                          add or replace the named arguments, keep the rest
                          (config add UP1 /poll 1); config add IP0 RT /… adds a new
                          numbered object with the next free number
config rem <MODULE> [<SUB>] [/<arg> ...]
                          the named arguments back to default; without any: remove a
                          numbered object, or the whole line back to defaults
Values are URL-decoded (%2F is /, %20 a blank); config show writes a % as %25.
config show [changed|active|saved]
                          the configuration as config change lines (non-defaults only)
config activate           apply the changes that work without a reset
vars create <NAME> <flags> <value>
                          store a variable (flags p; pb: the value in hex), e.g.
                          vars create UPDATE/CHECK p 42
vars read [<NAME>]        print NAME and the variables under NAME/ (all without NAME)
vars del <NAME>           remove NAME and the variables under NAME/
config write              save the changed configuration to flash
reset                     orderly restart with the saved configuration
ireset                    reset once the box is idle (no console, web or script line
                          for 30 s)
resetn                    reset now if something asks for it (a new firmware waiting
                          in the other slot, changes only a reset applies)
iresetn                   reset once idle, if something asks for it (update servers send it)
reboot                    forced watchdog trap: restarts as after a crash. Avoid it,
                          use reset
mod cmd <MODULE> <cmd> [args]
                          module command (help mod lists them)
version                   firmware version
help [config|mod|<MODULE>]
                          this text, or details
A leading ! is accepted (!reset).

{CONFIG_SEMANTICS}"""

Handler = Callable[[Box, list[Word]], str]


def error(text: str) -> str:
    return f"error: {text}"


class Shell:
    """Executes console lines against a box. Not thread-safe by itself: the runtime
    (boot.Runtime) holds its one lock around every call, so consoles take turns."""

    def __init__(self, box: Box, services_up: Callable[[], None] = lambda: None) -> None:
        """`services_up`: brings up the services that start after the prompt, if they are
        not yet (boot.Runtime); the lines that need them call it first."""
        self.box = box
        self.services_up = services_up
        self._commands: dict[str, Handler] = {
            "config": self._config,
            "reset": self._reset,
            # the update server's finals as lines of their own (`iresetn` after UP0 prot)
            **{name: self._final_handler(name) for name in FINAL_LINES},
            "reboot": self._reboot,
            "mod": self._mod,
            "vars": self._vars,
            "help": self._help,
            "?": self._help,
            "version": self._version,
        }

    @property
    def prompt(self) -> str:
        return f"{self.box.name}> "

    def execute(self, line: str) -> str:
        """Run one console line; returns what to print ("" for nothing). Never raises."""
        try:
            return self._execute(line)
        except Exception as e:
            # A programming error. The console must never die, and one broken command
            # must not restart a box that carries calls, so no crash dump here; instead
            # the error and where it happened go to the trace (/log.txt, the log
            # targets), where support finds it, and the answer says so.
            import traceback  # here: with linecache and tokenize, not before the prompt

            where = traceback.extract_tb(e.__traceback__)[-1]
            self.box.trace(
                f"shell: internal error in {show_token(line.strip())}: {type(e).__name__}: "
                f"{e} at {where.filename.rsplit('/', 1)[-1]}:{where.lineno} ({where.name})"
            )
            return error(
                f"internal error {type(e).__name__}: {e} (see the trace; "
                "please report it with the line you typed)"
            )

    def refuse_overlong(self, line: str) -> str:
        return error(
            f"input too long: the line is cut at the limit, it began {show_token(line.strip())}; "
            "nothing was done"
        )

    def _execute(self, line: str) -> str:
        text = line.strip(" \t")
        if text.startswith("!"):
            text = text[1:].lstrip(" \t")
        if not text:
            return ""
        try:
            # a certificate in hex (the update server's X509/REQUESTRESPONSE) is one word
            is_vars = text[:5].lower() in ("vars", "vars ", "vars\t")
            words = split_words(text, MAX_WORD) if is_vars else split_words(text)
        except GrammarError as e:
            return error(str(e))
        if not words:
            return ""
        head = words[0]
        handler = None if head.quoted else self._commands.get(head.text.lower())
        if handler is None:
            return error(f"unknown command {show_token(head.text)}: type help for the list")
        try:
            return handler(self.box, words[1:])
        except (ConfigError, GrammarError, BoxError, modcmd.ModCmdError) as e:
            return error(str(e))

    # config ---------------------------------------------------------------------------
    def _config(self, box: Box, words: list[Word]) -> str:
        if not words:
            return error("config needs a verb: change, add, rem, show, write or activate")
        verb, rest = words[0].text.lower(), words[1:]
        if verb in ("change", "add", "rem"):
            return box.change(parse_op(verb, rest))
        if verb == "show":
            return self._show(box, rest)
        if verb in ("write", "activate"):
            if rest:
                return error(f"config {verb} takes no arguments, got {show_token(rest[0].text)}")
            if verb == "write":
                return box.write()
            result = box.activate()
            out = []
            if result.applied:
                out.append("activated: " + ", ".join(result.applied))
            if result.pending:
                out.append(
                    "needs reset: " + ", ".join(result.pending) + " (config write, then reset)"
                )
            return "\n".join(out) or "nothing to activate"
        return error(
            f"unknown config verb {show_token(words[0].text)}: "
            "change, add, rem, show, write or activate"
        )

    def _show(self, box: Box, rest: list[Word]) -> str:
        which = rest[0].text.lower() if rest else "changed"
        configs = {"changed": box.running, "running": box.running}
        configs |= {"active": box.active, "saved": box.saved}
        if len(rest) > 1 or which not in configs:
            bad = rest[1].text if len(rest) > 1 else rest[0].text
            return error(f"config show takes changed, active or saved, not {show_token(bad)}")
        return "\n".join(configs[which].lines())

    # vars -----------------------------------------------------------------------------
    def _vars(self, box: Box, words: list[Word]) -> str:
        verb = words[0].text.lower() if words else ""
        args = [w.text for w in words[1:]]
        if verb not in ("create", "read", "del"):
            return error("usage: vars create <NAME> <flags> <value> | vars read [<NAME>] | "
                         "vars del <NAME>")  # fmt: skip
        if box.flash is None:
            return error("no flash for variables: the flash disk is not mounted (boot trace)")
        store = box.flash.vars
        try:
            if verb == "create":
                var = parse_create(args)
                box.commit_vars({var.name: var.value})
                return ""
            if len(args) > 1 or (verb == "del" and not args):
                return error(f"usage: vars {verb} <NAME>")
            name = check_name(args[0]) if args else ""
        except VarsError as e:
            return error(str(e))
        keys = under(store.keys(), name)
        if name and not keys:
            return error(f"no variable {name} (vars read lists them all)")
        if verb == "read":
            return "\n".join(read_line(k, store.get(k) or b"") for k in keys)
        box.commit_vars(dict.fromkeys(keys))
        return ""

    # restarts -------------------------------------------------------------------------
    def _reset(self, box: Box, words: list[Word]) -> str:
        if words:
            return error(f"reset takes no arguments, got {show_token(words[0].text)}")
        n = box.unwritten()
        box.request_reset()
        note = f" ({n} unwritten change{'s' if n != 1 else ''} discarded)" if n else ""
        return f"reset: restarting with the saved configuration{note}"

    def _update_service(self, box: Box) -> UpdateService | None:
        self.services_up()
        # imported by now (services_up); not at the top, where the prompt would wait for it
        from appliance.services.update.service import UpdateService

        return box.service(UpdateService)

    def _final_handler(self, name: str) -> Handler:
        def run(box: Box, words: list[Word]) -> str:
            if words:
                return error(f"{name} takes no arguments, got {show_token(words[0].text)}")
            update = self._update_service(box)
            if update is None:
                return error(f"{name}: no update service on this box; use reset")
            # imported by now (with the update service); not at the top: see FINAL_LINES
            from appliance.services.update.script import Final

            return update.reset_final(box, Final(name))

        return run

    def _reboot(self, box: Box, words: list[Word]) -> str:
        if words:
            return error(f"reboot takes no arguments, got {show_token(words[0].text)}")
        box.request_reboot()
        return (
            "reboot: forced watchdog trap, the box restarts as after a crash "
            "(use reset for an orderly restart)"
        )

    # mod cmd --------------------------------------------------------------------------
    def _mod(self, box: Box, words: list[Word]) -> str:
        if not words or words[0].text.lower() != "cmd":
            return error("usage: mod cmd <MODULE> <cmd> [args] (help mod lists them)")
        rest = words[1:]
        available = box.commands.modules()
        if not rest:
            return error(f"mod cmd needs a module: {', '.join(available) or 'none registered'}")
        module = rest[0].text
        if module.upper() not in available:  # one of a service that starts after the prompt?
            self.services_up()
            available = box.commands.modules()
        if module.upper() not in available:
            return error(
                f"no module {show_token(module)} has commands: try "
                f"{', '.join(available) or 'none registered yet'}"
            )
        cmds = available[module.upper()]
        if len(rest) < 2:
            return error(f"{module.upper()} commands: {', '.join(cmds)}")
        handler = box.commands.lookup(module, rest[1].text)
        if handler is None:
            return error(
                f"{module.upper()} has no command {show_token(rest[1].text)}: "
                f"its commands are {', '.join(cmds)}"
            )
        try:
            return handler(box, [w.text for w in rest[2:]])
        except (OSError, ValueError, FlashError) as e:  # the disk's or the input's, not a bug
            raise modcmd.ModCmdError(
                f"mod cmd {module.upper()} {rest[1].text} failed: {type(e).__name__}: {e}"
            ) from e

    # help, version --------------------------------------------------------------------
    def _help(self, box: Box, words: list[Word]) -> str:
        if not words:
            return HELP
        topic = words[0].text
        if topic.lower() == "config":
            mods = "\n".join(f"  {m.name:<7} {m.help}" for m in ordered_modules())
            return f"{CONFIG_SEMANTICS}\n\nModules (help <MODULE> for arguments):\n{mods}"
        if topic.lower() == "mod":
            self.services_up()
            lines = [
                f"  mod cmd {m} {c:<14} {h}"
                for m, cmds in box.commands.modules().items()
                for c, h in cmds.items()
            ]
            return "\n".join(lines) or "no module commands registered"
        if topic.upper() in MODULES:
            return module_help(topic.upper())
        return error(f"no help for {show_token(topic)}: try help, help config, help mod, help IP0")

    def _version(self, box: Box, words: list[Word]) -> str:
        update = self._update_service(box)
        extra = update.summary(box) if update is not None else []
        return "\n".join([box.version_line(), *extra])


def module_help(name: str) -> str:
    module = MODULES[name]
    out = [f"{module.name}: {module.help}"]

    def args(prefix: str, decls: tuple) -> None:
        for a in decls:
            default = "" if a.default in ("", None) else f" (default {a.type.format(a.default)})"
            if isinstance(a.type, Flag):
                default = " (default on)" if a.default else ""
            reset = "  [needs reset]" if a.needs_reset else ""
            req = "  [required]" if a.required else ""
            out.append(
                f"  {prefix}/{a.name:<14} {a.help}: {a.type.describe()}{default}{req}{reset}"
            )

    args("", module.args)
    for sub in module.subs:
        out.append(f" {', '.join(sub.names())}: {sub.help}")
        args("  ", sub.args)
    return "\n".join(out)
