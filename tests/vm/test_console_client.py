"""`ipva console --vm --send` against the serial console of a box `ipva run` booted: the
user's two commands, one boot."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hypervisors.qemu.relay import state_file
from hypervisors.qemu.timeouts import BOOT_TIMEOUT, SHUTDOWN_TIMEOUT

pytestmark = pytest.mark.vm

IPVA = [sys.executable, "-m", "tools.cli"]


def test_console_send_to_the_box_ipva_run_started(ipva_dist: Path, tmp_path: Path) -> None:
    out = (tmp_path / "run.out").open("wb")
    run = subprocess.Popen(
        [*IPVA, "run", "--headless", "--dist", str(ipva_dist)],
        stdin=subprocess.PIPE,
        stdout=out,
        stderr=subprocess.STDOUT,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        deadline = time.monotonic() + BOOT_TIMEOUT
        transcript = tmp_path / "run.out"
        while "IPVA> " not in transcript.read_text(errors="replace"):
            assert run.poll() is None, transcript.read_text(errors="replace")
            assert time.monotonic() < deadline, "no prompt from ipva run"
            time.sleep(0.5)
        assert state_file(ipva_dist).exists()
        script = tmp_path / "support.txt"
        script.write_text(
            "config change SYS0 /name support7\nconfig activate\nconfig show\nversion\n"
        )
        res = subprocess.run(
            [*IPVA, "console", "--vm", "--dist", str(ipva_dist), "--send", str(script),
             "--log", str(tmp_path / "console.log")],
            capture_output=True, text=True, timeout=BOOT_TIMEOUT, env=dict(os.environ),
        )  # fmt: skip
        assert res.returncode == 0, res.stdout + res.stderr
        assert "config change SYS0 /name support7" in res.stdout.split("config show", 1)[1]
        assert "IPVA[" in res.stdout and "Bootcode[" in res.stdout  # the version answer
        assert "support7> " in res.stdout  # the prompt took the activated name
        bad = tmp_path / "bad.txt"
        bad.write_text("config change SYS0 /nosuch 1\n")
        res = subprocess.run(
            [*IPVA, "console", "--vm", "--dist", str(ipva_dist), "--send", str(bad)],
            capture_output=True, text=True, timeout=BOOT_TIMEOUT,
        )  # fmt: skip
        assert res.returncode == 1 and "error: " in res.stdout, res.stdout + res.stderr
        # ipva run saw the same console
        assert "support7> " in transcript.read_text(errors="replace")
    finally:
        run.stdin.close()  # type: ignore[union-attr]  # end of commands: ipva run powers off
        run.wait(timeout=SHUTDOWN_TIMEOUT * 3)
        out.close()
    assert not state_file(ipva_dist).exists()
