"""The payload's edited copies of construct and of four stdlib modules (dataclasses,
pathlib, subprocess, concurrent.futures): the imports at the top of their modules that only
rarely used code needs are made where that code is, and dataclasses takes the code of the
methods it makes from the build when it can.

construct 2.10 imports pdb (with cmd, bdb, code, glob, pprint) and traceback for
`Debugger`, pickle for `Pickled`, hashlib and importlib.util for `Struct.compile()`,
platform for one Windows test, and inspect for nothing, all when `import construct` runs.
dataclasses imports inspect (with ast, dis, tokenize, linecache) only to make a docstring,
from the class's signature, for a dataclass that has none; the runtime's dataclasses all have one
(tests/unit/test_dataclass_docstrings.py). pathlib imports urllib.parse for as_uri() and
fnmatch for patterns, subprocess locale for a text pipe's encoding, concurrent.futures
logging (and with it string) for a failing callback. The box uses none of that before its
prompt, but the runtime imports all these modules before it, and hashlib loads OpenSSL's
libcrypto: under TCG these imports cost ~0.4 s of a cold boot (notes of issue 27).

A dataclass's methods are source text that dataclasses compiles as the class is made
(~390 compiles before the prompt, a quarter of its imports' time); the payload's looks each
text up first in the code the build compiled (firmware/promptimports.py, DATACLASS_FNS).

The edits keep the whole API (a Debugger still runs pdb, it imports it then; a dataclass
without a docstring still gets one). They are exact text edits for the versions the build
takes (construct: the one pyproject.toml pins; dataclasses: Debian's python3.11), and a file
whose text differs fails the build instead of being carried unedited.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from firmware.run import ToolError


@dataclass(frozen=True)
class Edit:
    """In `file` (relative to the package), `old` (found exactly once) becomes `new`."""

    file: str
    old: str
    new: str


def import_before(file: str, line: str, modules: str) -> Edit:
    """In `file`, `line` (found once) gets `import modules` before it, at its indentation:
    a module-level import made where it is used."""
    indent = line[: len(line) - len(line.lstrip())]
    return Edit(file, line, f"{indent}import {modules}\n{line}")


CONSTRUCT_EDITS = (
    Edit("core.py",
         "import struct, io, binascii, itertools, collections, pickle, sys, os, hashlib, "
         "importlib, importlib.machinery, importlib.util\n",
         "import struct, io, binascii, itertools, collections, sys, os\n"),
    import_before("core.py", "        modulename = hexlify(hashlib.sha1(",
                  "hashlib, importlib.machinery, importlib.util"),
    import_before("core.py", "        return pickle.load(stream)\n", "pickle"),
    import_before("core.py", "        pickle.dump(obj, stream)\n", "pickle"),
    Edit("debug.py", "import sys, traceback, pdb, inspect\n", "import sys\n"),
    import_before("debug.py", '        print("".join(traceback.format_exception(', "traceback"),
    import_before("debug.py", "        pdb.post_mortem(", "pdb"),
    Edit("lib/py3compat.py", "import sys, platform\n", "import sys\n"),
    Edit("lib/py3compat.py",
         'ONWINDOWS = platform.system() == "Windows"',
         'ONWINDOWS = sys.platform == "win32"'),
)  # fmt: skip
# dataclasses also takes its methods' code from the build's file of them when it is there,
# beside its own .pyc (firmware/promptimports.py), compiling only the texts it lacks
DATACLASS_FNS = "dataclasses.fns"
_COMPILED_FNS = """# ipva's payload: the code of the methods the runtime's dataclasses get before
# its prompt, compiled when the firmware was built (firmware/promptimports.py), by their
# source text; a text that is not there is compiled here, as it always was.
_COMPILED = None


def _compiled(txt):
    global _COMPILED
    if _COMPILED is None:
        import marshal
        try:
            with open(__file__.rpartition('/')[0] + '/FNS', 'rb') as f:
                _COMPILED = marshal.loads(f.read())  # load(f): a read per object, 5x slower
        except (OSError, ValueError, EOFError):
            _COMPILED = {}
    return _COMPILED.get(txt, txt)


def _create_fn(name, args, body, *, globals=None, locals=None,
""".replace("FNS", DATACLASS_FNS)
STDLIB_EDITS = (
    Edit("dataclasses.py", "import inspect\n", ""),
    import_before("dataclasses.py", "        cls.__doc__ = (cls.__name__ +\n", "inspect"),
    Edit("dataclasses.py",
         "def _create_fn(name, args, body, *, globals=None, locals=None,\n", _COMPILED_FNS),
    Edit("dataclasses.py",
         "    exec(txt, globals, ns)\n",
         "    exec(_compiled(txt), globals, ns)\n"),
    # pathlib: urllib.parse (and with it its regexes) only for as_uri(), fnmatch only for
    # match() and glob patterns
    Edit("pathlib.py", "import fnmatch\n", ""),
    Edit("pathlib.py",
         "from urllib.parse import quote_from_bytes as urlquote_from_bytes\n",
         "def urlquote_from_bytes(b):\n"
         "    from urllib.parse import quote_from_bytes\n"
         "    return quote_from_bytes(b)\n"),
    *(import_before("pathlib.py", line, "fnmatch") for line in (
        "        return re.compile(fnmatch.translate(pattern), re.IGNORECASE).fullmatch\n",
        "        return re.compile(fnmatch.translate(pattern)).fullmatch\n",
        "            if not fnmatch.fnmatchcase(part, pat):\n")),
    # subprocess: locale only for the encoding of a text-mode pipe
    Edit("subprocess.py", "import locale\n", ""),
    import_before("subprocess.py", "        return locale.getencoding()\n", "locale"),
    # concurrent.futures: logging (with string and their regexes) only when a callback
    # raised or a future is in a state it cannot be in
    Edit("concurrent/futures/_base.py", "import logging\n", ""),
    Edit("concurrent/futures/_base.py",
         'LOGGER = logging.getLogger("concurrent.futures")\n',
         "class _Logger:\n"
         "    def __getattr__(self, name):\n"
         "        import logging\n"
         '        return getattr(logging.getLogger("concurrent.futures"), name)\n'
         "\n\n"
         "LOGGER = _Logger()\n"),
)  # fmt: skip


def _edit(src: Path, dst: Path, edits: Sequence[Edit], hint: str) -> None:
    for edit in edits:
        path = dst / edit.file
        text = path.read_text()
        if text.count(edit.old) != 1:
            raise ToolError(
                f"{src / edit.file} does not hold {edit.old.strip()!r} once; the edits in "
                f"firmware/payload_edits.py are for {hint}: use that one or update the edits"
            )
        path.write_text(text.replace(edit.old, edit.new))


def edited_construct(src: Path, dst: Path, edits: Sequence[Edit] = CONSTRUCT_EDITS) -> Path:
    """A copy of the construct package `src` in `dst` with `edits` made; returns `dst`."""
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
    _edit(src, dst, edits, "the construct pyproject.toml pins (`./dev` installs it)")
    return dst


def edited_stdlib(src: Path, dst: Path, edits: Sequence[Edit] = STDLIB_EDITS) -> list[Path]:
    """The stdlib files `edits` name, copied from `src` (the stdlib's directory) into `dst`
    and edited: the files to compile over their unedited copies in the payload."""
    if dst.exists():
        shutil.rmtree(dst)
    files = sorted({edit.file for edit in edits})
    for name in files:
        (dst / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / name, dst / name)
    _edit(src, dst, edits, "Debian bookworm's python3.11 (firmware/debs.py)")
    return [dst / name for name in files]
