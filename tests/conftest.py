"""Suite-wide settings. (Fixtures for booting images come from the `ipva` pytest plugin.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import settings

from firmware.bootbins import BootBins, build_bootbins

# The machines running the suite are shared and noisy: Hypothesis' per-example deadline
# would turn load into flaky failures. Example counts stay as each test sets them.
settings.register_profile("ipva", deadline=None)
settings.load_profile("ipva")

# Seconds each long test took in a whole run (`./dev test --durations=80`, the call phase).
# `./dev test` hands each worker a whole test file at a time (a file's tests share its
# module fixtures and may build on each other, as the GNS3 node's do), the files in this
# order: the longest file that boots images first (its worker builds them, once for all),
# then every file that needs no images (the other workers run those meanwhile instead of
# waiting for the build: ~30 s, or the kernel's minutes on a fresh machine), then the
# other image files, longest first (the sum of its tests' seconds), so the workers end
# together instead of one finishing the slowest files alone (they sort last by name). A
# missing or stale entry only costs time, never a result.
DURATIONS = Path(__file__).with_name("durations.json")
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def box_bootbins() -> BootBins:
    """The box's own busybox and signify (static, against musl: firmware/bootbins.py), the
    programs its initramfs carries: from the per-user build cache, built there first when
    missing (a minute, under the cache's lock, so a parallel image build waits for it and
    then finds them). Not from a build's work tree: a parallel build rewrites that."""
    return build_bootbins(REPO / ".cache")


def _file(item: pytest.Item) -> str:
    return item.nodeid.split("::")[0]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    seconds: dict[str, float] = json.loads(DURATIONS.read_text())
    per_file: dict[str, float] = {}
    for item in items:
        per_file[_file(item)] = per_file.get(_file(item), 0.0) + seconds.get(item.nodeid, 0.0)
    images = {_file(item) for item in items if "ipva_dist" in item.fixturenames}
    first = max(images, key=lambda f: per_file[f], default=None)

    def rank(item: pytest.Item) -> tuple[int, float]:
        f = _file(item)
        return (0 if f == first else 1 if f not in images else 2), -per_file[f]

    # a stable sort: a file's tests keep their order (pytest collects them together)
    items.sort(key=rank)
