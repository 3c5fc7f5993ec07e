"""The runtime's services as the hosted console shows them: the same modules as in the VM,
absent hardware answering so, the trace buffer, the event hook on a real boot."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
from test_hosted_runtime import answers, hosted  # noqa: I001  (same directory)

from appliance import boot
from appliance.events import ConfigWritten, Event, RestartRequested
from appliance.hal.hosted import HostedPlatform
from appliance.owner import NotOwner
from appliance.services import boot_services
from appliance.trace import TraceBuffer


def help_mod_modules(transcript: str) -> list[str]:
    return sorted({line.split()[2] for line in answers(transcript, "help mod")})


def test_help_mod_lists_every_service_module_hosted_too(tmp_path: Path) -> None:
    t = hosted(tmp_path, "help mod\n")
    # the same list the VM shows (tests/vm/test_hardware.py compares it there)
    assert help_mod_modules(t) == [
        "ALARM0", "CF0", "CFG0", "CMD0", "CPU", "DUMP", "ETH0", "ETH1", "FLASHDIR0", "FLASHMAN0",
        "HTTP0", "LOG0", "LOG0/CNT", "LOG1", "MEM", "TIME0", "TRACE", "UP0", "UP1", "X509",
    ]  # fmt: skip


def test_hardware_absent_on_the_host_answers_so(tmp_path: Path) -> None:
    t = hosted(tmp_path, "mod cmd ETH0 info\nmod cmd ETH1 addr\nmod cmd TIME0 info\n")
    assert answers(t, "mod cmd ETH0 info") == ["error: ETH0: no network interface on this platform"]
    assert answers(t, "mod cmd ETH1 addr") == ["error: ETH1: no network interface on this platform"]
    assert answers(t, "mod cmd TIME0 info") == ["timekeeping: not started on this platform"]


def test_trace_show_and_clear_read_the_boot_trace(tmp_path: Path) -> None:
    t = hosted(
        tmp_path,
        "mod cmd TRACE show\nmod cmd TRACE show 2\nmod cmd TRACE clear\nmod cmd TRACE show\n"
        "mod cmd TRACE show x\n",
    )
    shown = answers(t, "mod cmd TRACE show")
    assert shown == ["trace buffer is empty"]  # after clear (the last `show`)
    first = t.split("IPVA> mod cmd TRACE show\n", 1)[1].split("IPVA> ", 1)[0].splitlines()
    assert first[0] == "0:0000:030:4 - " + HostedPlatform(tmp_path).cpu().brand
    assert "0:0000:030:4 - config: 0 saved objects loaded" in first
    assert any(line.startswith("0:0000:081:4 - ") for line in first)  # FLASHMAN's tag
    assert answers(t, "mod cmd TRACE show 2") == first[-2:]
    assert answers(t, "mod cmd TRACE clear") == [f"trace cleared ({len(first)} lines)"]
    assert answers(t, "mod cmd TRACE show x")[0].startswith("error: usage: mod cmd TRACE show")


def test_box_events_on_a_real_boot(tmp_path: Path) -> None:
    platform = HostedPlatform(tmp_path, stdin=io.BytesIO(), stdout=io.BytesIO())
    box = boot.boot_box(platform, TraceBuffer(), boot_services())
    seen: list[Event] = []
    try:
        box.events.subscribe(seen.append)
        box.write()
        box.request_reset()
    finally:
        box.close()
    # the factory settings (ETH1's address) are what a new box writes
    assert seen == [ConfigWritten(1, "write"), RestartRequested("reset")]


def test_a_reset_requested_outside_a_console_line_is_carried_out(tmp_path: Path) -> None:
    """As the web UI and an update's final do: request a reset as a job on the box's
    owner; the runtime restarts it right after that job. From another thread directly it
    is refused (NotOwner): nothing changes the box beside its owner."""
    out = io.BytesIO()
    runtime = boot.Runtime(HostedPlatform(tmp_path, stdin=io.BytesIO(), stdout=out))
    assert runtime.boot()
    first = runtime.box
    assert first is not None
    with pytest.raises(NotOwner):
        first.request_reset()
    assert first.restart_request is None
    first.owner.call(first.request_reset)
    deadline = time.monotonic() + 60
    while runtime.box is first or runtime.box is None:
        assert time.monotonic() < deadline, "the requested reset was not carried out"
        time.sleep(0.05)
    assert runtime.box.restart_request is None
    assert out.getvalue().decode().count("config: 0 saved objects loaded") == 2  # booted again
    runtime.close()
