"""What the box imports before its prompt, found at build time by importing it from the
payload tree: the files it reads (firmware/readorder.py lays them out first) and the code
of the methods its dataclasses get, compiled ahead (payload_edits.DATACLASS_FNS).

A dataclass's methods (__init__, __repr__, __eq__, …; five or six for a frozen one) are
source text that `dataclasses` compiles with exec() as the class is made: 385 compiles
before the prompt, a quarter of the prompt's import time on the host and as much under TCG
(~0.4 s of a cold boot; notes of issue 27). The payload's dataclasses
(firmware/payload_edits.py) looks each text up in DATACLASS_FNS first, a marshalled dict
{source text: code object} written here, and compiles only a text that is not there. The
key is the whole text, so a code object is used only for exactly the source it was
compiled from; the build host's interpreter is the payload's (Debian bookworm's
python3.11), so its marshal and bytecode are the guest's.

The imports run in a fresh interpreter (-I -S, hash seed 0, -X no_debug_ranges like the
payload's .pyc: the same bytes every build) with only the payload's directories on its
path, importing what the guest's `appliance/__main__.py` imports before it boots
(PROMPT_IMPORTS). A module or dataclass the boot reaches only later is missed: it is read
and compiled as before, slower, never wrong.
"""

from __future__ import annotations

import marshal
import subprocess
import sys
import sysconfig
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from firmware.payload_edits import DATACLASS_FNS
from firmware.run import ToolError

# what appliance/__main__.py imports before the boot starts (in the guest: a VM platform)
PROMPT_IMPORTS = ("appliance.hal.platform", "appliance.hal.vm", "appliance.boot")
# argv: the output file, the three path entries, the modules to import. Prints the file of
# every module the interpreter then holds, in the order they were first imported.
_SCRIPT = """
import marshal, sys
out, sys.path[:], modules = sys.argv[1], sys.argv[2:5], sys.argv[5:]
import dataclasses
if not hasattr(dataclasses, "_compiled"):
    sys.exit(f"{dataclasses.__file__}: not the payload's dataclasses (no _compiled)")
fns = {}
def compiled(text):
    if text not in fns:
        fns[text] = compile(text, "<string>", "exec", dont_inherit=True)
    return fns[text]
dataclasses._compiled = compiled
for name in modules:
    __import__(name)
with open(out, "wb") as f:
    marshal.dump(fns, f)
for module in list(sys.modules.values()):
    spec = getattr(module, "__spec__", None)
    where = getattr(module, "__file__", None)
    if where and getattr(spec, "origin", None) != "frozen":  # frozen: in the binary
        print(where)
"""


@dataclass(frozen=True)
class PromptImports:
    """The prompt's imports from one payload tree."""

    # relative to the tree, in the order first imported; the compiled dataclass methods
    # right after dataclasses
    files: list[Path]
    dataclass_fns: int  # how many method texts the file of them holds


def import_prompt(
    tree: Path, app: Path, stdlib: Path, modules: Iterable[str] = PROMPT_IMPORTS
) -> PromptImports:
    """Import `modules` from the payload in `tree` (the runtime's directory `app`, the
    stdlib's `stdlib`, both in `tree`); writes the compiled dataclass methods beside the
    stdlib's dataclasses."""
    tree = tree.resolve()
    app, stdlib = app.resolve(), stdlib.resolve()
    fns = stdlib / DATACLASS_FNS
    fns.unlink(missing_ok=True)
    proc = subprocess.run(
        [sys.executable, "-I", "-S", "-X", "no_debug_ranges", "-c", _SCRIPT, str(fns),
         str(app), str(stdlib), str(stdlib / "lib-dynload"), *modules],
        capture_output=True, text=True, env={"PYTHONHASHSEED": "0"},
    )  # fmt: skip
    if proc.returncode != 0:
        raise ToolError(f"importing the prompt's modules from the payload failed:\n{proc.stderr}")
    # imported as the interpreter started, before the path was the payload's: the build
    # host's stdlib (encodings, …), which the payload holds as sourceless .pyc
    host_stdlib = Path(sysconfig.get_paths()["stdlib"])
    files: list[Path] = []
    for line in proc.stdout.splitlines():
        file = Path(line)
        if file.is_relative_to(tree):
            rel = file.relative_to(tree)
        elif file.is_relative_to(host_stdlib):
            rel = stdlib.relative_to(tree) / file.relative_to(host_stdlib).with_suffix(".pyc")
        else:
            continue
        if (tree / rel).is_file() and rel not in files:
            files.append(rel)
            if rel.parent == stdlib.relative_to(tree) and rel.stem == "dataclasses":
                files.append(fns.relative_to(tree))
    return PromptImports(files, len(marshal.loads(fns.read_bytes())))
