"""construct as the payload carries it: the imports at the top of its modules that only a
debugger, pickling or construct's own compiler use are made where they are used.

construct 2.10 imports pdb (with cmd, bdb, code, glob, pprint) for `Debugger`, pickle for
`Pickled`, hashlib and importlib.util for `Struct.compile()`, and platform for one Windows
test, all when `import construct` runs. The box uses none of them, but the runtime imports
construct before its prompt (the flash's and the crash dump's formats), and hashlib loads
OpenSSL's libcrypto: under TCG these imports cost ~0.2 s of a cold boot (notes of issue 27).
The edits keep construct's whole API (a Debugger still runs pdb, it imports it then); they
are exact text edits for the version the project pins (pyproject.toml), and a construct
whose text differs fails the build instead of being carried unedited.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from firmware.run import ToolError


@dataclass(frozen=True)
class Edit:
    """In `file` (relative to the package), `old` (found exactly once) becomes `new`."""

    file: str
    old: str
    new: str


EDITS = (
    Edit("core.py",
         "import struct, io, binascii, itertools, collections, pickle, sys, os, hashlib, "
         "importlib, importlib.machinery, importlib.util\n",
         "import struct, io, binascii, itertools, collections, sys, os\n"),
    Edit("core.py",
         "        modulename = hexlify(hashlib.sha1(",
         "        import hashlib, importlib.machinery, importlib.util\n"
         "        modulename = hexlify(hashlib.sha1("),
    Edit("core.py",
         "        return pickle.load(stream)\n",
         "        import pickle\n        return pickle.load(stream)\n"),
    Edit("core.py",
         "        pickle.dump(obj, stream)\n",
         "        import pickle\n        pickle.dump(obj, stream)\n"),
    Edit("debug.py",
         "import sys, traceback, pdb, inspect\n",
         "import sys, traceback, inspect\n"),
    Edit("debug.py",
         "        pdb.post_mortem(",
         "        import pdb\n        pdb.post_mortem("),
    Edit("lib/py3compat.py", "import sys, platform\n", "import sys\n"),
    Edit("lib/py3compat.py",
         'ONWINDOWS = platform.system() == "Windows"',
         'ONWINDOWS = sys.platform == "win32"'),
)  # fmt: skip


def edited_construct(src: Path, dst: Path) -> Path:
    """A copy of the construct package `src` in `dst` with EDITS made; returns `dst`."""
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
    for edit in EDITS:
        path = dst / edit.file
        text = path.read_text()
        if text.count(edit.old) != 1:
            raise ToolError(
                f"construct ({src}): {edit.file} does not hold {edit.old.strip()!r} once; "
                "the edits in firmware/construct_imports.py are for the version pyproject.toml "
                "pins: install that one (`./dev` does) or update the edits"
            )
        path.write_text(text.replace(edit.old, edit.new))
    return dst
