"""The prompt's imports made at build time (firmware/promptimports.py) on a small payload
tree: the files they read, in order, and the dataclass methods compiled ahead, which the
payload's dataclasses (firmware/payload_edits.py) then uses instead of compiling, for
exactly the texts it was compiled from."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from firmware.payload_edits import DATACLASS_FNS, edited_stdlib
from firmware.promptimports import import_prompt
from firmware.run import ToolError
from tests.unit.stdlibtree import STDLIB, overlay

MOD = '''
from dataclasses import dataclass, field

@dataclass(frozen=True)
class Point:
    """A point."""
    x: int
    y: int = 0

@dataclass
class Bag:
    """Things."""
    items: list[str] = field(default_factory=list)
'''
# imports pkg.mod from the tree (argv[1]) and counts the method texts dataclasses compiles
# itself (exec of a text, not of a code object), then makes a class the build never saw
PROBE = """
import sys
tree = sys.argv[1]
sys.path[:0] = [tree + "/usr/lib/ipva", tree + "/usr/lib/python3.11"]
import dataclasses
assert dataclasses.__file__.startswith(tree), dataclasses.__file__
compiled_here = []
def counting_exec(code, *args):  # what dataclasses calls exec with: a text is compiled
    if isinstance(code, str):
        compiled_here.append(code)
    return exec(code, *args)
dataclasses.exec = counting_exec  # its global name before the builtin
from pkg.mod import Bag, Point
p = Point(1)
assert (p, repr(p), hash(p) == hash(Point(1, 0))) == (Point(1, 0), "Point(x=1, y=0)", True)
try:
    p.x = 2
except dataclasses.FrozenInstanceError:
    pass
else:
    raise AssertionError("not frozen")
assert Bag().items == [] and Bag(["a"]) == Bag(["a"])
print(len(compiled_here))
@dataclasses.dataclass
class New:
    "Not in the file."
    z: str
assert New("a").z == "a" and repr(New("b")) == "New(z='b')"
print(len(compiled_here))
"""


def payload_tree(root: Path) -> Path:
    """A payload tree: this host's stdlib with the payload's edited modules (as source), and
    a package pkg."""
    edited = root.with_name(f"{root.name}.edited")
    (root / "usr/lib").mkdir(parents=True)
    overlay(edited, edited_stdlib(STDLIB, edited), root / "usr/lib/python3.11")
    pkg = root / "usr/lib/ipva/pkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "mod.py").write_text(MOD)
    return root


def probe(tree: Path) -> list[int]:
    out = subprocess.run([sys.executable, "-S", "-c", PROBE, str(tree)], capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    return [int(n) for n in out.split()]


def test_the_prompts_imports_are_listed_in_order_with_the_compiled_methods(
    tmp_path: Path,
) -> None:
    tree = payload_tree(tmp_path / "tree")
    got = import_prompt(tree, tree / "usr/lib/ipva", tree / "usr/lib/python3.11", ["pkg.mod"])
    lib = Path("usr/lib/python3.11")
    at = got.files.index(lib / "dataclasses.py")  # the compiled methods right after it
    assert got.files[at + 1] == lib / DATACLASS_FNS
    assert got.files[-2:] == [Path("usr/lib/ipva/pkg/__init__.py"), Path("usr/lib/ipva/pkg/mod.py")]
    assert all((tree / f).is_file() for f in got.files)
    assert got.dataclass_fns >= 5  # Point: __init__, __repr__, __eq__, __setattr__, … ; Bag's
    # the same bytes every build (the reproducible-build test holds the whole image to it)
    first = (tree / lib / DATACLASS_FNS).read_bytes()
    import_prompt(tree, tree / "usr/lib/ipva", tree / "usr/lib/python3.11", ["pkg.mod"])
    assert (tree / lib / DATACLASS_FNS).read_bytes() == first


def test_the_payloads_dataclasses_compiles_only_texts_the_build_did_not(tmp_path: Path) -> None:
    tree = payload_tree(tmp_path / "tree")
    import_prompt(tree, tree / "usr/lib/ipva", tree / "usr/lib/python3.11", ["pkg.mod"])
    # every method of pkg's classes from the file; the new class's compiled here
    at_import, after_new = probe(tree)
    assert at_import == 0 and after_new >= 2


def test_without_the_file_or_with_a_broken_one_everything_is_compiled_as_before(
    tmp_path: Path,
) -> None:
    tree = payload_tree(tmp_path / "tree")
    assert probe(tree)[0] >= 5  # no file: all compiled here, all still works
    (tree / "usr/lib/python3.11" / DATACLASS_FNS).write_bytes(b"\xff not marshal")
    assert probe(tree)[0] >= 5


def test_a_module_that_fails_to_import_fails_the_build(tmp_path: Path) -> None:
    tree = payload_tree(tmp_path / "tree")
    (tree / "usr/lib/ipva/pkg/broken.py").write_text("import no_such_module\n")
    with pytest.raises(ToolError, match="no_such_module"):
        import_prompt(tree, tree / "usr/lib/ipva", tree / "usr/lib/python3.11", ["pkg.broken"])
