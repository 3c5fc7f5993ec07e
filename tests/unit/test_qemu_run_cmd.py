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

    calls: list[tuple[Path, object, object]] = []

    def fake_run_hosted(
        directory: Path, stdin: BinaryIO, stdout: BinaryIO, *, http: object, https: object
    ) -> int:
        calls.append((directory, http, https))
        return 3

    monkeypatch.setattr(appliance.hosted, "run_hosted", fake_run_hosted)
    result = CliRunner().invoke(main, ["run", "--hosted", "--dir", str(tmp_path)])
    assert calls == [(tmp_path, None, None)] and result.exit_code == 3
    result = CliRunner().invoke(
        main, ["run", "--hosted", "--dir", str(tmp_path), "--http", "127.0.0.1:8080",
               "--https", ":8443"],
    )  # fmt: skip
    assert calls[-1] == (tmp_path, ("127.0.0.1", 8080), ("0.0.0.0", 8443))
    bad = CliRunner().invoke(main, ["run", "--hosted", "--http", "8080"])
    assert bad.exit_code == 2 and "is not HOST:PORT" in bad.output
