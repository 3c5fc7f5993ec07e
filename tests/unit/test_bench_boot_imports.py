"""The boot bench's import table reads what `-X importtime` prints on the console."""

from __future__ import annotations

from bench.boot import PROMPT, Boot, _interpreter_start, _print_imports, report

CONSOLE = [
    "import time: self [us] | cumulative | imported package",
    "import time:       120 |        120 |   _hashlib",
    "import time:        30 |        150 | hashlib",
    "0:0000:030:4 - QEMU Virtual CPU version 2.5+",
    "import time:      1000 |       1000 | appliance.boot",
]


def test_imports_are_read_from_the_console_with_their_nesting() -> None:
    boot = Boot(lines=[(1.0, line) for line in CONSOLE])
    assert boot.imports() == [
        ("  _hashlib", 120, 120),
        ("hashlib", 30, 150),
        ("appliance.boot", 1000, 1000),
    ]
    out: list[str] = []
    _print_imports([boot.imports(), boot.imports()], out.append)
    assert out[0].startswith("runtime imports: 3 modules, 0.00 s")
    assert [line.split()[-1] for line in out[2:]] == ["appliance.boot", "hashlib", "_hashlib"]
    assert out[2].split()[0] == "1.0"


def test_no_import_lines_no_table() -> None:
    out: list[str] = []
    _print_imports([Boot().imports()], out.append)
    assert out == []


def test_the_interpreters_own_start_is_apart_from_its_imports() -> None:
    """From /init's `bootprof runtime start` to the first line -X importtime prints (at the
    interpreter's first import): what the hash seed's wait for the kernel's CRNG was in."""
    lines = [(2.0, "bootprof runtime start"), (2.5, CONSOLE[0]), *[(3.0, x) for x in CONSOLE[1:]]]
    assert _interpreter_start(Boot(lines=lines), 2.0) == {
        "  of which CPython start (exec → first import)": 0.5
    }
    assert _interpreter_start(Boot(lines=lines[:1]), 2.0) == {}
    assert _interpreter_start(Boot(lines=lines), None) == {}


def test_a_run_without_floor_boots_still_reports() -> None:
    """`bench(["empty"], n, baseline=…)` or profile boots alone: no floor to divide by, and
    the noise line names only the kinds that have a ready row."""
    boot = Boot(lines=[(2.0, "IPVA bootcode"), (4.0, "0:0000:030:4 - cpu"), (5.0, PROMPT)])
    out: list[str] = []
    report({"empty": [boot], "baseline": [boot]}, out.append)
    assert out[-1] == "noise, (max - min) / median: empty 0%, baseline 0%"
