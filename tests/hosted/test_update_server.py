"""Boxes driven by (a stand-in for) innovaphone's update server V2: tests/updateserver.py
answers exactly the command lines update.php sends (compared with the real one under
`php -S`). Two boxes poll it: each fills the poll URL from the first answer, uploads its
backup, installs the master's build once (the server reads the master's box_info.xml),
resets into it, and then stays quiet: one poll per (15-minute) interval, no download, no
backup. Each box sends two backups: the one the second answer asks for first, then, once,
the configuration that answer's own `config add UP1 …` lines made (the box sends a backup
again only when its saved configuration changed)."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from httpbox import HostedHttpBox, firmware_image, with_boot_disk

from appliance import boot
from appliance.hal.hosted import HostedPlatform
from appliance.services.update import service as update_service
from tests.receivers import http_serving
from tests.updateserver import NO_FILES_SIG, UpdateServer, update_server

MINUTE_S = 0.1  # a /poll minute here: the server's fast polling (1) and interval (15)
OLD, MASTER = ("16r1", 1601000), ("16r1sr1", 1601001)  # the master runs the host's build


def image(version: str, build: int) -> bytes:
    """Signed with the test key, which the boxes' keyrings hold (tests/signing.py)."""
    return firmware_image(version, build)


def box_dir(directory: Path, version: str, build: int) -> Path:
    return with_boot_disk(directory, version, build)


class Box:
    """A hosted box that polls on its own; its console output collected."""

    def __init__(self, directory: Path, hw_id: str) -> None:
        self.out = io.BytesIO()
        platform = HostedPlatform(directory, stdin=io.BytesIO(), stdout=self.out, hw_id=hw_id)
        self.runtime = boot.Runtime(platform)
        assert self.runtime.boot()

    def __call__(self, line: str) -> str:
        return self.runtime.execute(line)

    def trace(self) -> str:
        return self.out.getvalue().decode()

    def close(self) -> None:
        self.runtime.close()


def wait_until(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(update_service, "MINUTE_S", MINUTE_S)
    monkeypatch.setattr(update_service, "IDLE_S", 0.3)


@pytest.fixture
def master(tmp_path: Path) -> Iterator[HostedHttpBox]:
    m = HostedHttpBox(box_dir(tmp_path / "master", *MASTER))
    try:
        yield m
    finally:
        m.close()


@pytest.fixture
def server(master: HostedHttpBox) -> Iterator[UpdateServer]:
    with update_server(master.http_url + "/CMD0/box_info.xml") as srv:
        srv.firmware[str(MASTER[1])] = image(*MASTER)
        yield srv


def polls_of(srv: UpdateServer, hwid: str) -> list[dict[str, str]]:
    with srv.lock:
        return [p for p in srv.polls if p.get("hwid") == hwid]


def test_two_boxes_are_polled_into_line_and_then_stay_quiet(
    tmp_path: Path, fast: None, server: UpdateServer
) -> None:
    boxes = {hw: Box(box_dir(tmp_path / hw, *OLD), hw) for hw in ("IPVA-hosted-a", "IPVA-hosted-b")}
    try:
        for box in boxes.values():
            # what an admin types once; the server does the rest
            for line in (f"config change UP1 /url {server.base}", "config write",
                         "config activate"):  # fmt: skip
                assert not box(line).startswith("error"), line
        for hw in boxes:
            wait_until(
                lambda hw=hw: any(p.get("PROT") == str(MASTER[1]) for p in polls_of(server, hw)),
                60,
                f"{hw} polling with PROT={MASTER[1]}",
            )
        # the first answer's URL came back filled, with the box's state appended
        first_full = polls_of(server, "IPVA-hosted-a")[0]
        assert first_full["type"] == "ipva" and first_full["sn"] == "" and first_full["ip"] == ""
        assert (first_full["polling"], first_full["phase"]) == ("5", "update")
        assert first_full["PROT"] == str(OLD[1]) and first_full["BOOT"].isdigit()
        # the admin's plain URL (the state args only): the first-poll rewrite
        assert set(server.polls[0]) == {"PROT", "BOOT"}
        # fast polling ended by the server once the box was in line
        saved = boxes["IPVA-hosted-a"]("config show saved")
        assert "/no-dhcp" in saved and "/poll 15" in saved and "/provision" not in saved
        assert "?polling=0&phase=update&type=#t&sn=#m&hwid=#h&ip=#i" in saved
        wait_until(lambda: all(p.get("polling") == "0" for hw in boxes
                               for p in polls_of(server, hw)[-1:]), 30, "polling=0")  # fmt: skip
        # the first polling=0 answer asks for the backup again, and the box PUTs the changed
        # configuration after that poll was counted: the quiet count starts once it is in
        wait_until(lambda: all(len(server.backups.get(hw, [])) >= 2 for hw in boxes), 30,
                   "the second backups")  # fmt: skip
        # quiet: five intervals, polls only (at most one per interval), nothing else
        before = {hw: len(polls_of(server, hw)) for hw in boxes}
        backups = {hw: len(server.backups[hw]) for hw in boxes}
        time.sleep(5 * 15 * MINUTE_S)
        for hw, box in boxes.items():
            later = polls_of(server, hw)[before[hw] :]
            assert 1 <= len(later) <= 5 + 1, (hw, len(later))
            assert all(p.get("CHECK") == NO_FILES_SIG for p in later)
            assert all(p.get("PROT") == str(MASTER[1]) for p in later)
            assert len(server.backups[hw]) == backups[hw] == 2, hw
            first, second = server.backups[hw]
            assert first.startswith(b"vars check ") and b"polling=5" in first
            assert b"polling=0" in second and b"/poll 15" in second
            assert "16r1sr1 build 1601001 started and confirmed" in box("version")
        assert sorted(server.downloads) == [f"/fw/{MASTER[1]}/ipva.bin"] * 2  # updated once each
        assert server.errors == []  # the master's box_info.xml was read
    finally:
        for box in boxes.values():
            box.close()


def test_a_script_that_activates_a_new_url_each_time_polls_once_per_interval(
    tmp_path: Path, fast: None
) -> None:
    """update.php rewrites the URL whenever its state args change and ends with config
    activate: the box must not poll again for that, only after /poll."""
    import http.server

    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            hits.append(self.path)
            url = f"http://127.0.0.1:{self.server.server_address[1]}/s.htm%3Fn%3D{len(hits)}"
            body = (f"config add UP1 /url {url}\r\nconfig add UP1 /poll 1\r\n"
                    "config write\r\nconfig activate\r\n").encode()  # fmt: skip
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    with http_serving(Handler) as port:
        box = Box(box_dir(tmp_path / "box", *OLD), "IPVA-hosted")
        try:
            box(f"config change UP1 /url http://127.0.0.1:{port}/s.htm /poll 1")
            box("config activate")
            time.sleep(20 * MINUTE_S)
            # the admin's activate starts the poller (1), then at most one poll per interval
            # (without the rule: hundreds, each activate polling again at once)
            assert 2 <= len(hits) <= 20 + 2, len(hits)
            assert "/s.htm?n=" in box("config show saved")
        finally:
            box.close()


def sent(box: Box, line: str) -> None:
    """`line` (an scfg) started its PUT, once the one before it (a worker) is done."""
    deadline = time.monotonic() + 10
    while "under way" in (answer := box(line)):
        assert time.monotonic() < deadline, answer
        time.sleep(0.05)
    assert "sending the backup" in answer, answer


def test_scfg_puts_a_commands_output_and_the_backup_once(
    tmp_path: Path, fast: None, server: UpdateServer
) -> None:
    box = Box(box_dir(tmp_path / "box", *OLD), "IPVA-hosted")
    try:
        box("vars create CERT/REQ p abc123")
        vardump = (f"mod cmd UP0 scfg {server.base}?mode=vardump&sn=#m&var=CERT/REQ&file=req.txt"
                   " ser nop /always vars%20read%20CERT/REQ")  # fmt: skip
        assert "sending the output" in box(vardump)
        wait_until(lambda: "req.txt" in server.vardumps, 10, "the vardump PUT")
        assert server.vardumps["req.txt"] == "abc123"
        backup = f"mod cmd UP0 scfg {server.base}?mode=backup&hwid=#h&sn=#m"
        sent(box, backup)
        wait_until(lambda: "IPVA-hosted" in server.backups, 10, "the backup PUT")
        wait_until(lambda: "sent already" in box(backup), 10, "UPDATE/SCFG stored")
        assert len(server.backups["IPVA-hosted"]) == 1
        box("config change SYS0 /name other")
        box("config write")
        sent(box, backup)  # the saved config changed
        wait_until(lambda: len(server.backups["IPVA-hosted"]) == 2, 10, "a second backup")
        assert b"config change SYS0 /name other" in server.backups["IPVA-hosted"][1]
        refused = box("mod cmd UP0 scfg ftp://x/ ser 1")
        assert refused.startswith("error:") and "not an http:// or https:// URL" in refused
    finally:
        box.close()


def test_finals_on_the_console_reset_only_when_asked(tmp_path: Path, fast: None) -> None:
    box = Box(box_dir(tmp_path / "box", *OLD), "IPVA-hosted")
    try:
        assert "nothing asks for a reset" in box("resetn")
        assert "nothing asks for a reset" in box("iresetn")
        box("config change IP0 ETH0 /addr 10.0.0.5 /mask 255.0.0.0")
        box("config activate")
        answer = box("iresetn")
        assert "resetting once the box is idle" in answer and "IP0 ETH0 /addr" in answer
        wait_until(lambda: "UP0: iresetn: resetting" in box.trace(), 10, "the idle reset")
        assert box("ireset x").startswith("error: ireset takes no arguments")
    finally:
        box.close()
