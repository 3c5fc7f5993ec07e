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
    fixturenames: tuple[str, ...] = ()


def booting(nodeid: str) -> Item:
    """A test that boots the built images (ipva_machine asks for ipva_dist)."""
    return Item(nodeid, ("ipva_machine", "ipva_dist"))


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
        booting(f"{path}::test_first_in_the_file"),  # unknown, but in the longest file
        Item("tests/unit/b.py::test_b"),
        booting(longest),
    ]
    conftest.pytest_collection_modifyitems(items)  # type: ignore[arg-type]
    assert [i.nodeid for i in items] == [
        f"{path}::test_first_in_the_file", longest,  # the file's own order kept
        "tests/unit/a.py::test_quick", "tests/unit/b.py::test_b",
    ]  # fmt: skip


def test_files_without_images_run_while_the_first_image_file_builds_them() -> None:
    """The longest image file first (its worker builds dist/), then every file that needs
    no images, longest first, then the other image files, longest first."""
    timed = json.loads((ROOT / "tests/durations.json").read_text())
    # the three longest image tests of three files (each file's sum is its one test here)
    files: dict[str, str] = {}
    for nodeid in sorted(timed, key=lambda k: -timed[k]):
        if nodeid.startswith("tests/vm/"):
            files.setdefault(nodeid.split("::")[0], nodeid)
    a, b, c = list(files.values())[:3]
    hosted = max((k for k in timed if k.startswith("tests/hosted/")), key=timed.__getitem__)
    items = [booting(c), Item("tests/unit/quick.py::test_quick"), booting(b), Item(hosted),
             booting(a)]  # fmt: skip
    conftest.pytest_collection_modifyitems(items)  # type: ignore[arg-type]
    assert [i.nodeid for i in items] == [a, hosted, "tests/unit/quick.py::test_quick", b, c]
