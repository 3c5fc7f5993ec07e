"""`ipva run` argument handling (the VM paths are exercised by tests/vm)."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import pytest
from click.testing import CliRunner

from tools.cli import main


def test_missing_dist_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["run", "--headless", "--dist", str(tmp_path)])
    assert result.exit_code == 1
    assert "no built disks" in result.output and "ipva build" in result.output


def test_unknown_profile_is_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["run", "--profile", "virtualbox"])
    assert result.exit_code == 2 and "virtualbox" in result.output


def test_hosted_calls_run_hosted_with_the_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import appliance.hosted

    calls: list[Path] = []

    def fake_run_hosted(directory: Path, stdin: BinaryIO, stdout: BinaryIO) -> int:
        calls.append(directory)
        return 3

    monkeypatch.setattr(appliance.hosted, "run_hosted", fake_run_hosted)
    result = CliRunner().invoke(main, ["run", "--hosted", "--dir", str(tmp_path)])
    assert calls == [tmp_path] and result.exit_code == 3
