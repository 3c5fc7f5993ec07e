"""The hosted runtime driven like `ipva run --hosted` with piped stdin: transcript on stdout."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

from appliance.formats.crashdump import read_dump
from appliance.hal.block import FileBlockDevice
from appliance.hosted import run_hosted

SEED = """\
config change IP0 ETH0 /addr 192.168.0.10 /mask 255.255.255.0
config change IP0 RT0 /gateway 192.168.0.1
config change DHCP0 /mode off
config write
reset
"""

SEED_SHOW = [
    "config change IP0 ETH0 /addr 192.168.0.10 /mask 255.255.255.0",
    "config change IP0 RT0 /gateway 192.168.0.1",
    "config change DHCP0 /mode off",
]


def hosted(directory: Path, commands: str) -> str:
    out = io.BytesIO()
    rc = run_hosted(directory, io.BytesIO(commands.encode()), out)
    assert rc == 0
    return out.getvalue().decode("ascii")


def answers(transcript: str, command: str) -> list[str]:
    """The lines printed after the prompt line that echoes `command`, up to the next prompt."""
    lines = transcript.split("\n")
    idx = max(i for i, line in enumerate(lines) if line.endswith("> " + command))
    out = []
    for line in lines[idx + 1 :]:
        if line.startswith("IPVA> ") or "> " in line and line.split("> ")[0].isidentifier():
            break
        out.append(line)
    return out


def show(transcript: str) -> list[str]:
    return [line for line in answers(transcript, "config show") if line.startswith("config ")]


def test_seed_sequence_survives_reset_and_a_new_run(tmp_path: Path) -> None:
    t = hosted(tmp_path, SEED + "config show\n")
    assert "error" not in t
    assert "reset: restarting with the saved configuration" in t
    assert t.count("0:0000:030:4 - mem(268435456)=256.00MB") == 2  # booted twice
    assert show(t) == SEED_SHOW
    # a new process on the same image files: what config write saved is still there
    t2 = hosted(tmp_path, "config show\n")
    assert show(t2) == SEED_SHOW


def test_boot_trace_format(tmp_path: Path) -> None:
    t = hosted(tmp_path, "")
    first = t.splitlines()[:2]
    assert first[0].startswith("0:0000:030:4 - ")
    assert first[1] == "0:0000:030:4 - mem(268435456)=256.00MB"
    assert {p.name for p in tmp_path.iterdir()} == {"boot.img", "cf.img", "flash.img", "dump.img"}


def test_unwritten_changes_are_gone_after_reset(tmp_path: Path) -> None:
    t = hosted(
        tmp_path,
        "config change DHCP0 /mode off\nconfig write\n"
        "config change LOG0 /type syslog /addr 10.0.0.5\nreset\nconfig show\n",
    )
    assert "(2 unwritten changes discarded)" in t
    assert show(t) == ["config change DHCP0 /mode off"]


def test_activate_applies_live_and_lists_what_needs_reset(tmp_path: Path) -> None:
    t = hosted(
        tmp_path,
        "config change SYS0 /name pbx1\nconfig change IP0 ETH0 /addr 10.0.0.2\nconfig activate\n"
        "config show active\n",
    )
    assert "activated: SYS0 /name" in t
    assert "needs reset: IP0 ETH0 /addr (config write, then reset)" in t
    assert "pbx1> config show active" in t  # the prompt shows the box name once active
    assert show_active(t) == ["config change SYS0 /name pbx1"]


def show_active(t: str) -> list[str]:
    return [x for x in answers(t, "config show active") if x.startswith("config ")]


def test_backup_factory_reset_restore_gives_same_config(tmp_path: Path) -> None:
    t = hosted(
        tmp_path,
        SEED + "config change LOG0 /type http /addr 10.1.1.1 /path /log\n"
        'config change NTP0 /tz "CET-1CEST,M3.5.0,M10.5.0/3" /server1 pool.ntp.org\n'
        "config add IP0 RT /dest 10.9.0.0 /mask 255.255.0.0 /gateway 192.168.0.2\n"
        "config write\nmod cmd FLASHDIR0 add-item 7 cn=alice\nconfig show\nmod cmd CFG0 backup\n",
    )
    before = show(t)
    assert len(before) == 6
    backup = "\n".join(answers(t, "mod cmd CFG0 backup")) + "\n"
    assert backup.startswith("vars check ")
    assert backup.endswith("\nmod cmd FLASHDIR0 add-item 7 cn=alice\n")
    t2 = hosted(
        tmp_path,
        "mod cmd CFG0 factory-reset yes\nmod cmd FLASHMAN0 reset ldap\nreset\nconfig show\n",
    )
    assert show(t2) == []

    from appliance import boot
    from appliance.hal.hosted import HostedPlatform
    from appliance.services import boot_services
    from appliance.trace import TraceBuffer

    platform = HostedPlatform(tmp_path, stdin=io.BytesIO(), stdout=io.BytesIO())
    box = boot.boot_box(platform, TraceBuffer(), boot_services())
    try:
        box.restore_text(backup)
    finally:
        box.close()
    t3 = hosted(tmp_path, "config show\nmod cmd FLASHDIR0 show 7\n")
    assert show(t3) == before
    assert answers(t3, "mod cmd FLASHDIR0 show 7") == ["mod cmd FLASHDIR0 add-item 7 cn=alice"]


def test_reboot_leaves_a_crash_record_and_restarts_like_a_crash(tmp_path: Path) -> None:
    t = hosted(tmp_path, "config change DHCP0 /mode off\n!reboot\nconfig show\n")
    assert "forced watchdog trap" in t
    assert "restart after a crash: watchdog trap (reboot command)" in t
    assert show(t) == []  # unwritten changes are gone as after any crash
    with FileBlockDevice(tmp_path / "dump.img") as dump:
        reading = read_dump(dump)
    assert reading.dump is not None and reading.dump.reported
    assert reading.dump.threads and reading.dump.trace  # stacks and the trace tail
    # shown once: the next boot does not report the same crash again
    assert "restart after a crash" not in hosted(tmp_path, "")


def test_line_discipline_in_transcript(tmp_path: Path) -> None:
    t = hosted(tmp_path, "conf\x7f\x7fnfig show\r\nfoo\x03version\r\x1b[A\n")
    assert "error" not in t.replace("\b", "")
    versions = [line for line in t.splitlines() if line.startswith("16r1sr1 IPVA[")]
    assert len(versions) == 2  # version, then history-up + enter runs it again


def test_garbage_never_kills_the_runtime(tmp_path: Path) -> None:
    junk = bytes(range(256)) * 4 + b"\n" + b"x" * 5000 + b"\n" + b"\xff\xfe\x00\n"
    out = io.BytesIO()
    rc = run_hosted(tmp_path, io.BytesIO(junk + b"version\n"), out)
    assert rc == 0
    text = out.getvalue().decode("ascii", "replace")
    assert "error: input too long" in text
    assert "IPVA[" in text.split("version")[-1]


def test_python_m_appliance_hosted_subprocess(tmp_path: Path) -> None:
    env = {**os.environ, "IPVA_HOSTED_DIR": str(tmp_path)}
    env.pop("IPVA_PLATFORM", None)
    run = lambda cmds: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "appliance"],
        input=cmds.encode(),
        capture_output=True,
        env=env,
        timeout=120,
        check=True,
        cwd=Path(__file__).parents[2],
    ).stdout.decode()
    run(SEED)
    assert show(run("config show\n")) == SEED_SHOW
