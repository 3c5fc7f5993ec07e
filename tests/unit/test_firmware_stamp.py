"""The firmware's own identity in its payload (appliance/firmware.json): what the runtime
shows as its version after an update, and the test-only --fail-at-start build."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from appliance import boot, version
from appliance.hal.hosted import HostedPlatform
from appliance.version import BUILD, FIRMWARE_VERSION, Stamp, read_stamp
from firmware.settings import BuildSettings
from tools.build_cmd import build_command, settings_from_options


def test_no_stamp_means_the_sources_own_version(tmp_path: Path) -> None:
    assert read_stamp(tmp_path / "none.json") == Stamp(FIRMWARE_VERSION, BUILD, False)
    assert read_stamp() == Stamp()  # the source tree carries none: hosted runs as 16r1sr1


def test_the_build_settings_stamp_round_trips(tmp_path: Path) -> None:
    settings = BuildSettings(version="16r1sr2", build=1601002, fail_at_start=True)
    path = tmp_path / version.STAMP_NAME
    path.write_text(settings.stamp.to_json())
    assert read_stamp(path) == Stamp("16r1sr2", 1601002, True)
    assert BuildSettings.from_json(settings.to_json()) == settings
    # a settings.json from before the option
    old = settings.to_json().replace(', "fail_at_start": true', "")
    assert "fail_at_start" not in old and not BuildSettings.from_json(old).fail_at_start


def test_fail_at_start_is_hidden_and_off_unless_asked() -> None:
    assert "--fail-at-start" not in build_command.get_help(build_command.make_context("build", []))
    ctx = build_command.make_context("build", ["--targets", "none"])
    assert settings_from_options(ctx.params).fail_at_start is False
    ctx = build_command.make_context("build", ["--targets", "none", "--fail-at-start"])
    assert settings_from_options(ctx.params).fail_at_start is True


def stamped(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, stamp: Stamp) -> None:
    path = tmp_path / version.STAMP_NAME
    path.write_text(stamp.to_json())
    monkeypatch.setattr(version, "STAMP_PATH", path)


def test_a_fail_at_start_firmware_exits_before_anything_is_opened(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stamped(monkeypatch, tmp_path, Stamp("16r1sr3", 1601003, True))
    monkeypatch.setenv("IPVA_HOSTED_DIR", str(tmp_path / "box"))
    assert boot.main() == boot.FAIL_AT_START_RC
    assert "built with --fail-at-start" in capsys.readouterr().err
    assert not (tmp_path / "box").exists()  # no disk was even created


def test_the_box_shows_the_version_its_payload_carries(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    stamped(monkeypatch, tmp_path, Stamp("16r1sr2", 1601002, False))
    runtime = boot.Runtime(
        HostedPlatform(tmp_path / "box", stdin=io.BytesIO(), stdout=io.BytesIO())
    )
    assert runtime.boot()
    try:
        assert runtime.execute("version").startswith("16r1sr2 IPVA[1601002]")
    finally:
        runtime.close()
