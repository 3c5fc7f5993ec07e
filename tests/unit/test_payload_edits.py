"""The payload's construct and dataclasses (firmware/payload_edits.py): imported, they load
none of the modules only construct's debugger, pickling and compiler or a dataclass without
a docstring use, and those still work when used."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from firmware.payload_edits import (
    CONSTRUCT_EDITS,
    STDLIB_EDITS,
    Edit,
    edited_construct,
    edited_stdlib,
)
from firmware.run import ToolError
from tests.unit.stdlibtree import STDLIB, overlay

LAZY = ("pdb", "pickle", "hashlib", "_hashlib", "platform", "importlib.util", "inspect",
        "traceback")  # fmt: skip
INSTALLED = Path(importlib.util.find_spec("construct").origin).parent  # type: ignore[arg-type,union-attr]
PROBE = f"""
import sys
import construct as c
print(sorted(m for m in {LAZY!r} if m in sys.modules))
assert c.Pickled.parse(c.Pickled.build([1, "a"])) == [1, "a"]
s = c.Struct("n" / c.Int16ub).compile()
assert s.parse(b"\\x01\\x02").n == 258
assert c.Probe and c.Debugger and not c.lib.py3compat.ONWINDOWS
print(sorted(m for m in {LAZY!r} if m in sys.modules))
"""


def _run(path: Path) -> list[str]:
    out = subprocess.run([sys.executable, "-S", "-c", PROBE], env={"PYTHONPATH": str(path)},
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    return out.splitlines()


def test_the_edited_construct_imports_none_of_them_until_used(tmp_path: Path) -> None:
    edited_construct(INSTALLED, tmp_path / "construct")
    at_import, after_use = _run(tmp_path)
    assert at_import == "[]", at_import
    assert "pickle" in after_use and "hashlib" in after_use  # imported where used
    # the installed construct (what the host and the hosted box run) imports them all
    assert _run(INSTALLED.parent)[0] != "[]"


def test_a_construct_whose_text_differs_fails_the_build(tmp_path: Path) -> None:
    edits = (*CONSTRUCT_EDITS, Edit("core.py", "no such line", ""))
    with pytest.raises(ToolError, match="core.py does not hold 'no such line' once"):
        edited_construct(INSTALLED, tmp_path / "construct", edits)


DATACLASS_PROBE = """
import sys
from dataclasses import dataclass
@dataclass
class Documented:
    "A point."
    x: int
print("inspect" in sys.modules, Documented.__doc__)
@dataclass
class Bare:
    x: int
print("inspect" in sys.modules, Bare.__doc__)
"""


def _run_dataclasses(path: Path) -> list[str]:
    out = subprocess.run([sys.executable, "-S", "-c", DATACLASS_PROBE],
                         env={"PYTHONPATH": str(path)}, capture_output=True, text=True,
                         check=True).stdout  # fmt: skip
    return out.splitlines()


def test_the_edited_dataclasses_imports_inspect_only_for_a_class_without_a_docstring(
    tmp_path: Path,
) -> None:
    files = edited_stdlib(STDLIB, tmp_path / "stdlib")
    edited = tmp_path / "stdlib" / "dataclasses.py"
    assert edited in files
    assert _run_dataclasses(edited.parent) == ["False A point.", "True Bare(x: int)"]
    # the stdlib's own imports inspect with dataclasses
    assert _run_dataclasses(tmp_path / "empty") == ["True A point.", "True Bare(x: int)"]


def test_a_stdlib_whose_text_differs_fails_the_build(tmp_path: Path) -> None:
    edits = (*STDLIB_EDITS, Edit("dataclasses.py", "no such line", ""))
    with pytest.raises(ToolError, match="dataclasses.py does not hold 'no such line' once"):
        edited_stdlib(STDLIB, tmp_path / "stdlib", edits)


STDLIB_PROBE = """
import sys
lazy = ("urllib.parse", "fnmatch", "locale", "logging")
import concurrent.futures, pathlib, subprocess
print(sorted(m for m in lazy if m in sys.modules))
assert pathlib.PurePosixPath("/a/b.txt").match("*.txt")
assert pathlib.PurePosixPath("/a b").as_uri() == "file:///a%20b"
assert pathlib.PureWindowsPath("C:/x/Y.TXT").match("*.txt")
assert subprocess.run(["echo", "hi"], capture_output=True, text=True).stdout == "hi\\n"
f = concurrent.futures.Future()
f.add_done_callback(lambda _f: 1 / 0)
f.set_result(1)  # the callback's error is logged, as before
print(sorted(m for m in lazy if m in sys.modules))
"""


def test_the_edited_stdlib_imports_them_only_when_used(tmp_path: Path) -> None:
    files = edited_stdlib(STDLIB, tmp_path / "edited")
    stdlib = overlay(tmp_path / "edited", files, tmp_path / "stdlib")
    # -I: only the overlay (PYTHONPATH would put the host's stdlib in front of nothing)
    run = subprocess.run(
        [sys.executable, "-I", "-S", "-c", f"import sys; sys.path[:0] = [{str(stdlib)!r}]\n"
         + STDLIB_PROBE], capture_output=True, text=True, check=True,
    )  # fmt: skip
    at_import, after_use = run.stdout.splitlines()
    assert at_import == "[]", at_import
    assert after_use == "['fnmatch', 'locale', 'logging', 'urllib.parse']"
    assert "exception calling callback for" in run.stderr and "ZeroDivisionError" in run.stderr
    # the host's own stdlib imports them with the modules
    host = subprocess.run([sys.executable, "-I", "-S", "-c", STDLIB_PROBE], capture_output=True,
                          text=True, check=True).stdout.splitlines()  # fmt: skip
    assert host[0] != "[]"
