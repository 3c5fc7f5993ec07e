"""Leaves stay leaves: the box's core and `ipva dump show` load no appliance.services module.

The import contract (pyproject.toml) forbids the imports; this checks what a fresh
interpreter really loads, which also catches an import hidden in a function run at import.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _services_loaded(module: str) -> list[str]:
    code = (
        f"import importlib, json, sys; importlib.import_module({module!r}); "
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('appliance.'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    loaded: list[str] = json.loads(out)
    assert any(m.startswith("appliance.") for m in loaded)  # the probe sees appliance modules
    return [m for m in loaded if m == "appliance.services" or m.startswith("appliance.services.")]


@pytest.mark.parametrize(
    "module",
    ["appliance.box", "tools.dump_cmd", "appliance.formats.crashdump", "appliance.trace"],
)
def test_loads_no_service_module(module: str) -> None:
    assert _services_loaded(module) == []


def test_the_probe_sees_services_where_they_are_loaded() -> None:
    assert "appliance.services.trace" in _services_loaded("appliance.services.trace")
