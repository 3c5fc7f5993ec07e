"""The payload's construct (firmware/construct_imports.py): imported, it loads none of the
modules only its debugger, pickling and compiler use, and those still work when used."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from firmware import construct_imports
from firmware.construct_imports import EDITS, Edit, edited_construct
from firmware.run import ToolError

LAZY = ("pdb", "pickle", "hashlib", "_hashlib", "platform", "importlib.util")
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


def test_a_construct_whose_text_differs_fails_the_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(construct_imports, "EDITS", (*EDITS, Edit("core.py", "no such line", "")))
    with pytest.raises(ToolError, match="core.py does not hold 'no such line' once"):
        edited_construct(INSTALLED, tmp_path / "construct")
