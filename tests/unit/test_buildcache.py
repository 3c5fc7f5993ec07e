"""firmware/buildcache.py: an entry is built once, and a build that fails leaves none."""

from __future__ import annotations

from pathlib import Path

import pytest

from firmware.buildcache import cached_build


def test_an_entry_is_built_once_and_a_failed_build_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    builds: list[Path] = []

    def build(work: Path, staged: Path) -> None:
        builds.append(work)
        (staged / "thing").write_text("made")
        (staged / "done.json").write_text("{}")

    first = cached_build("things", "k1", "done.json", build)
    again = cached_build("things", "k1", "done.json", build)
    assert first == (tmp_path / "ipva/things/k1", True) and again == (first[0], False)
    assert len(builds) == 1 and not builds[0].exists()  # the work directory is gone
    assert (first[0] / "thing").read_text() == "made"

    def failing(work: Path, staged: Path) -> None:
        (staged / "thing").write_text("half")
        raise RuntimeError("compiler died")

    with pytest.raises(RuntimeError, match="compiler died"):
        cached_build("things", "k2", "done.json", failing)
    assert not (tmp_path / "ipva/things/k2").exists()
    assert not (tmp_path / "ipva/things/k2.build").exists()
