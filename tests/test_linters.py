"""The house style is checked by the suite itself (as mkosi does): ruff lint and format, mypy
over every package, and the import contracts (layers, no cycles) with import-linter.

Strictness and the contracts are declared in pyproject.toml ([tool.mypy],
[tool.importlinter]).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args],
        cwd=REPO, capture_output=True, text=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def _ruff(*args: str) -> subprocess.CompletedProcess[str]:
    return _run(sys.executable, "-m", "ruff", *args)


def test_ruff_check() -> None:
    proc = _ruff("check", "--no-cache", ".")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff_format() -> None:
    proc = _ruff("format", "--check", "--no-cache", ".")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy_finds_no_errors() -> None:
    # the files and the strictness come from [tool.mypy]; no cache: a clean verdict each run
    proc = _run(sys.executable, "-m", "mypy", "--no-incremental", "--cache-dir", "/dev/null")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Success: no issues found" in proc.stdout


def test_import_contracts_are_kept() -> None:
    proc = _run(BIN / "lint-imports", "--no-cache")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout
