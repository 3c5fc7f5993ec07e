"""Suite-wide settings. (Fixtures for booting images come from the `ipva` pytest plugin.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import settings

# The machines running the suite are shared and noisy: Hypothesis' per-example deadline
# would turn load into flaky failures. Example counts stay as each test sets them.
settings.register_profile("ipva", deadline=None)
settings.load_profile("ipva")

# Seconds each long test took in a whole run (`./dev test --durations=80`, the call phase):
# the suite runs longest first, and `./dev test` hands the workers one test at a time, so
# the two workers end together instead of one finishing the slowest tests alone (they sort
# last by name). A missing or stale entry only costs time, never a result.
DURATIONS = Path(__file__).with_name("durations.json")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    seconds: dict[str, float] = json.loads(DURATIONS.read_text())
    order = {id(item): n for n, item in enumerate(items)}
    items.sort(key=lambda item: (-seconds.get(item.nodeid, 0.0), order[id(item)]))
