"""The payload's stdlib is what the runtime's import graph reaches; its bytecode has no
docstrings of modules and functions (and still runs, with class docstrings kept)."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sysconfig
from pathlib import Path

from firmware.payload import CODECS, _compile_tree, _modules, stdlib_reached

STDLIB = Path(sysconfig.get_paths()["stdlib"])  # the host's: Debian's 3.11, as the guest's


def test_every_import_of_every_root_is_followed_but_not_developer_tools(tmp_path: Path) -> None:
    pkg = tmp_path / "box"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("import json\nfrom . import b\n")
    (pkg / "b.py").write_text(
        "def later():\n    import csv\n\ndef profile():\n    import cProfile\n"
    )
    reached = stdlib_reached(STDLIB, [str(tmp_path)], _modules(pkg, "box"))
    assert {Path("json/__init__.py"), Path("json/decoder.py"), Path("csv.py")} <= reached
    assert Path("cProfile.py") not in reached and Path("tkinter/__init__.py") not in reached
    assert Path("encodings/__init__.py") in reached  # the interpreter's start
    assert Path("stringprep.py") in reached  # encodings.idna's, looked up by name


def test_only_the_codecs_the_box_looks_up_are_kept(tmp_path: Path) -> None:
    reached = stdlib_reached(STDLIB, [str(tmp_path)], {})
    codecs = {p.stem for p in reached if p.parts[0] == "encodings"}
    assert {"__init__", "aliases", "utf_8", "ascii", "latin_1", "idna", "utf_16"} <= codecs
    assert set(CODECS) <= codecs
    assert not codecs & {"cp1252", "koi8_r", "shift_jis", "mac_roman", "big5"}
    # every codec the list names is a module of that name (a typo: a LookupError in the box)
    assert all((STDLIB / "encodings" / f"{codec}.py").is_file() for codec in CODECS)


def test_the_runtime_reaches_what_the_box_runs() -> None:
    repo = Path(__file__).resolve().parents[2]
    reached = stdlib_reached(STDLIB, [str(repo)], _modules(repo / "appliance", "appliance"))
    for needed in ("ssl.py", "http/client.py", "ipaddress.py", "xml/etree/ElementTree.py",
                   "ctypes/__init__.py", "runpy.py", "hashlib.py"):  # fmt: skip
        assert Path(needed) in reached, needed


def test_bytecode_without_docstrings_runs_and_keeps_class_docstrings(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    (src / "mod.py").write_text(
        '"""module doc"""\n'
        "from dataclasses import dataclass\n"
        "def f(x):\n    'function doc'\n    return x + 1\n"
        "def g():\n    'only a docstring'\n"
        "@dataclass\nclass C:\n    'class doc'\n    n: int = 2\n"
    )
    _compile_tree(src, out, "/usr/lib/ipva")
    loader = importlib.machinery.SourcelessFileLoader("mod", str(out / "mod.pyc"))
    spec = importlib.util.spec_from_loader("mod", loader)
    assert spec is not None
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    assert mod.__doc__ is None and mod.f.__doc__ is None and mod.g() is None
    assert mod.f(1) == 2 and mod.C.__doc__ == "class doc" and mod.C().n == 2
    assert mod.f.__code__.co_filename == "/usr/lib/ipva/mod.py"
