"""Saved states (QEMU migration to a file) and what the box does after a pause.

A box saved at its prompt and resumed seconds later behaves as after a hypervisor's
suspend/resume or live migration: its clock steps to the host's time (the trace says by how
much), the DHCP lease is renewed, the web admin's listeners and the log targets go on. A
saved state that does not fit (other hardware) or does not load (a damaged stream) is never
fatal: the machine boots cold and says why.
"""

from __future__ import annotations

import email.utils
import re
import shutil
import time
from pathlib import Path

import pytest

from hypervisors.qemu.machine import Machine
from hypervisors.qemu.profiles import dist_disks, get_profile
from tests.hosted.httpbox import request
from tests.receivers import rsyslog, wait_for

pytestmark = pytest.mark.vm

HOST = "10.0.2.2"  # QEMU user networking: the host's loopback, from the guest
PAUSE_S = 8.0  # between save and resume: the box's clock falls this far behind


def box_clock_lag(box: Machine) -> float:
    """Host time minus the box's, from the web admin's Date header (whole seconds)."""
    answer = request(box.http_url, "GET", "/", timeout=30)
    date = answer.headers.get("Date")
    assert date, f"no Date header from the box: {answer.headers}"
    return time.time() - email.utils.parsedate_to_datetime(date).timestamp()


def test_a_resumed_box_steps_its_clock_renews_its_lease_and_keeps_serving(
    ipva_machine,  # type: ignore[no-untyped-def]
    ipva_dist: Path,
    tmp_path: Path,
) -> None:
    with rsyslog(tmp_path / "rsyslog") as syslogd:
        first = ipva_machine("vmware", resume=True)  # a resumed box can be saved again
        first.wait_for_prompt()
        for line in (
            f"config change LOG1 /type syslog /addr {HOST} /port {syslogd.udp_port} /class 3",
            "config change SYS0 /name resumed1",
            "config activate",
        ):
            assert "error" not in first.command(line)
        wait_for(lambda: any("resumed1 IPVA:" in x for x in syslogd.lines()), what="syslog")
        first.wait_quiet()
        state = first.save_state(tmp_path / "state")
        assert not first.is_running()
        time.sleep(PAUSE_S)

        box = ipva_machine("vmware", saved_state=state)
        assert box.resumed, box.cold_boot_reason
        box.wait_for_prompt(timeout=60, web_admin=False)
        answered = time.monotonic() - box.started_at
        box.wait_for_prompt(timeout=60)  # and the resume's lines (the harness knows them)
        log = box.console_log
        assert "IPVA bootcode" not in log  # no boot: the prompt came back
        stepped = re.search(
            r"time: resumed after a pause: clock stepped by \+(\d+\.\d) s to the host's time", log
        )
        assert stepped and float(stepped.group(1)) >= PAUSE_S - 1, log
        # the renewal runs on the DHCP watcher's thread after the resume: its line may come
        # after the clock's (seen in CI: asserted at once on the log, it was not there yet)
        renewed = "ETH0 DHCP lease renewed: 10.0.2.15/24 (dhcp)"
        deadline = time.monotonic() + 60
        while renewed not in box.console_log and time.monotonic() < deadline:
            time.sleep(0.2)
        assert renewed in box.console_log, box.console_log
        # the listeners go on, reached through this QEMU's new forwarded ports, and the
        # box's clock is the host's again
        assert abs(box_clock_lag(box)) <= 2.5
        # the log target goes on: the resume itself and what is typed after it
        wait_for(lambda: any("resumed after a pause" in x for x in syslogd.lines()),
                 what="the resume on syslog")  # fmt: skip
        box.command("config change DNS0 /server1 10.0.0.77")
        wait_for(lambda: any("10.0.0.77" in x for x in syslogd.lines()), what="syslog after")
        assert "resumed1" in box.command("config show")
        print(f"resume: prompt answered {answered:.2f} s after QEMU started")

        # the state stays as it was: a second machine resumes from it too
        again = ipva_machine("vmware", saved_state=state)
        assert again.resumed
        again.wait_for_prompt(timeout=60)

        # other hardware: the state does not fit, and says what differs
        other = Machine(get_profile("vmware", ram_mib=128), dist_disks(ipva_dist))
        why = state.unusable(other.fingerprint())
        other.cleanup()
        assert why is not None and why.startswith("made for other hardware") and "'128'" in why


def test_a_state_that_does_not_load_falls_back_to_a_cold_boot(
    ipva_machine,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    first = ipva_machine("vmware", resume=True)  # the suite's saved state (made once)
    assert first.saved_state is not None
    damaged = tmp_path / "damaged"
    shutil.copytree(first.saved_state.path, damaged)
    first.cleanup()
    stream = damaged / "state.mig"
    stream.chmod(0o644)
    stream.write_bytes(stream.read_bytes()[: stream.stat().st_size // 3])

    box = ipva_machine("vmware", saved_state=type(first.saved_state)(damaged))
    assert not box.resumed
    assert box.cold_boot_reason and "did not load" in box.cold_boot_reason
    box.wait_for_prompt()
    assert re.search(r"IPVA bootcode", box.console_log)
    assert "ETH0 IP address 10.0.2.15/24 (dhcp)" in box.console_log
