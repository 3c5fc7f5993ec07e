"""The bootcode's busybox has only the applets of firmware/bootbins.py's APPLETS: every
command the bootcode's scripts and the runtime's subprocesses run must be one of them (or a
shell builtin, a function of the scripts, a program of the payload). The configuration is
Debian's with the other applets off. The built binary's applets: the build checks them,
tests/vm/test_package_contents.py checks the boot disk's."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from firmware.bootbins import APPLETS, BUSYBOX_CHANGES, busybox_config

REPO = Path(__file__).resolve().parents[2]
BOOTCODE = REPO / "firmware/bootcode"
SCRIPTS = ("init", "signify.sh", "bootctl.sh", "udhcpc.script")

# ash's keywords and special builtins the scripts use (no process, no applet)
SHELL_WORDS = {
    "case", "esac", "for", "in", "do", "done", "if", "then", "elif", "else", "fi", "while",
    "until", "break", "continue", "return", "exit", "local", "export", "set", "read", "cd",
    ".", ":", "eval", "exec", "shift", "trap", "wait", "unset",
}  # fmt: skip
# what the runtime runs that is not busybox: the payload's programs, and the hosted
# runtime's host tools (its CF card is an image file there)
NOT_BUSYBOX = {"openssl", "python3.11", "mkfs.fat"}

# a command word: at a line's start, after | ; & ` $( or a `{ ` group, past keywords
_COMMAND = re.compile(
    r"(?:^|[|;&`]|\$\(|(?<!\$)\{)\s*(?:(?:if|then|do|else|elif|while|until|!)\s+)*"
    r"([A-Za-z_.\[][\w.\-\[]*)(.?)",
    re.M,
)


def shell_commands(text: str) -> set[str]:
    """The command words of a busybox sh script (its functions' names included)."""
    text = re.sub(r"\\\n", " ", text)  # continued lines
    text = re.sub(r"(^|\s)#.*", r"\1", text, flags=re.M)  # comments
    text = re.sub(r"'[^']*'", "''", text)  # awk and printf programs run no commands
    # a case branch's patterns (`bound|renew)`): its command follows as if on its own line
    text = re.sub(r"^(\s*)[^\s()$]+(?:\s*\|\s*[^\s()$]+)*\)", r"\1", text, flags=re.M)
    found = set()
    for m in _COMMAND.finditer(text):
        word, after = m[1], m[2]
        if after in ("=", ")", "|"):  # an assignment, a case pattern
            continue
        if "[" in word and word not in ("[", "[["):
            continue  # a case pattern's bracket
        found.add(word)
    return found


def shell_functions(text: str) -> set[str]:
    return set(re.findall(r"^\s*(\w+)\(\)\s*\{", text, re.M))


def runtime_commands() -> set[str]:
    """argv[0] of every subprocess call of the runtime with a literal argument list."""
    found = set()
    for path in (REPO / "appliance").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not (isinstance(node, ast.Call) and node.args):
                continue
            name = getattr(node.func, "attr", getattr(node.func, "id", ""))
            first = node.args[0]
            if (name in ("run", "Popen", "_run", "check_output", "call")
                    and isinstance(first, ast.List) and first.elts
                    and isinstance(first.elts[0], ast.Constant)
                    and isinstance(first.elts[0].value, str)):  # fmt: skip
                found.add(first.elts[0].value)
    return found


def test_every_command_of_the_bootcode_scripts_is_an_applet() -> None:
    texts = {name: (BOOTCODE / name).read_text() for name in SCRIPTS}
    functions = set().union(*(shell_functions(t) for t in texts.values()))
    applets = {a.name for a in APPLETS}
    for name, text in texts.items():
        missing = shell_commands(text) - applets - SHELL_WORDS - functions
        assert not missing, f"{name} runs {sorted(missing)}: not in APPLETS"


def test_the_scan_sees_the_commands_it_must() -> None:
    # the scanner itself: commands in substitutions, pipelines, after keywords and groups
    text = (
        'x=$(od -An "$f" | tr -d " ")\nif grep -q a /b; then\n  { cat f; xxd -r; } > o\nfi\n'
        "case $1 in\nbound|renew) ip addr ;;\nesac\nawk '{print $1; exit}' f\n"
        'say "(not a command) $(crc32 < f)" # sort in a comment\n'
    )
    assert shell_commands(text) == {
        "od", "tr", "grep", "then", "cat", "xxd", "fi", "case", "ip", "esac", "awk", "say",
        "crc32",
    }  # fmt: skip


def test_every_command_the_runtime_runs_is_an_applet_or_the_payloads() -> None:
    applets = {a.name for a in APPLETS}
    found = runtime_commands()
    assert {"ip", "udhcpc", "mount", "umount", "mkdosfs", "reboot"} <= found
    assert not found - applets - NOT_BUSYBOX, "not in APPLETS"


def test_the_configuration_is_debians_with_only_the_applets_on() -> None:
    debian = "\n".join([
        "CONFIG_STATIC=y", "CONFIG_LS=y", "CONFIG_CAT=y", "# CONFIG_XXD is not set",
        "CONFIG_EXTRA_COMPAT=y", "CONFIG_FEATURE_PIDFILE=y", "CONFIG_MODPROBE_SMALL=y",
    ])  # fmt: skip
    symbols = {"LS": {"ls"}, "CAT": {"cat"}, "XXD": {"xxd"}, "MKDOSFS": {"mkdosfs"},
               "DEPMOD": {"depmod"}}  # fmt: skip
    config = busybox_config(debian, symbols).splitlines()
    assert "CONFIG_STATIC=y" in config and "CONFIG_FEATURE_PIDFILE=y" in config  # Debian's
    assert "# CONFIG_LS is not set" in config and "CONFIG_CAT=y" in config
    assert "CONFIG_XXD=y" in config and "CONFIG_MKDOSFS=y" in config  # on, even if not there
    assert "CONFIG_DEPMOD=y" not in config
    assert dict(BUSYBOX_CHANGES)["EXTRA_COMPAT"] == "n"
    assert "# CONFIG_EXTRA_COMPAT is not set" in config
