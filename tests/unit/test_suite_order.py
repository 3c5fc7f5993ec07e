"""tests/durations.json names tests that exist: a renamed test would silently lose its place
at the front of the suite (and the suite its balance between workers)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import NamedTuple

from tests import conftest

ROOT = Path(__file__).parents[2]


class Item(NamedTuple):
    nodeid: str


def test_every_timed_test_exists() -> None:
    timed = json.loads((ROOT / "tests/durations.json").read_text())
    assert timed
    for nodeid, seconds in timed.items():
        path, name = nodeid.split("::")
        base = re.sub(r"\[.*\]$", "", name)
        assert seconds > 0, nodeid
        assert re.search(rf"^def {base}\(", (ROOT / path).read_text(), re.M), nodeid


def test_the_longest_files_run_first_each_in_its_own_order() -> None:
    timed = json.loads((ROOT / "tests/durations.json").read_text())
    longest = max(timed, key=timed.__getitem__)
    path = longest.split("::")[0]
    items = [
        Item("tests/unit/a.py::test_quick"),
        Item(f"{path}::test_first_in_the_file"),  # unknown, but in the longest file
        Item("tests/unit/b.py::test_b"),
        Item(longest),
    ]
    conftest.pytest_collection_modifyitems(items)  # type: ignore[arg-type]
    assert [i.nodeid for i in items] == [
        f"{path}::test_first_in_the_file", longest,  # the file's own order kept
        "tests/unit/a.py::test_quick", "tests/unit/b.py::test_b",
    ]  # fmt: skip
