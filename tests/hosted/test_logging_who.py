"""What the log targets get from the running box: logins and failed logins on the web admin
(user, address, the lockout), config changes, writes and resets with who made them (the
console, the web admin's user@address). Against a real TCP receiver (tests/receivers.py)."""

from __future__ import annotations

import io
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.boot import Runtime
from appliance.hal.hosted import HostedPlatform
from appliance.services.http import HttpService
from appliance.services.http.auth import LOCKOUT_AFTER, LOCKOUT_FIRST_S
from tests.hosted.httpbox import _Sink, authed, request
from tests.receivers import TcpListener, tcp_listener, wait_for


@pytest.fixture
def listener() -> Iterator[TcpListener]:
    with tcp_listener() as t:
        yield t


def texts(listener: TcpListener) -> list[str]:
    """The records' texts (after `IPVA: `)."""
    return [line.split(" IPVA: ", 1)[1] for line in listener.lines() if " IPVA: " in line]


def arrived(listener: TcpListener, text: str) -> str:
    return wait_for(lambda: next((t for t in texts(listener) if t == text), None), what=text)


def test_console_and_web_changes_logins_and_lockout_are_logged_with_who(
    tmp_path: Path, listener: TcpListener
) -> None:
    typed = (
        f"config change LOG0 /type tcp /addr 127.0.0.1 /port {listener.port}\n"
        "config activate\nconfig write\nreset\n"
    )
    console = _Sink()
    platform = HostedPlatform(
        tmp_path,
        stdin=io.BytesIO(typed.encode()),
        stdout=console,  # type: ignore[arg-type]
        http=("127.0.0.1", 0),
    )
    runtime = Runtime(platform, newline=b"\n")
    assert runtime.boot(), console.text()
    try:
        runtime.serve_consoles()  # the typed lines, then end of input
        who = f"console {platform.consoles()[0].name}"
        # LOG0 is active from `config activate` on: what follows is logged, with who
        arrived(listener, f"config activate (by {who})")
        # LOG0 and the factory settings' IP0 ETH1
        arrived(listener, f"config write: 2 saved objects (by {who})")
        arrived(listener, f"reset (by {who})")
        arrived(listener, "boot " + runtime.box.version_line())  # type: ignore[union-attr]

        box = runtime.box
        assert box is not None
        service = next(s for s in box.services if isinstance(s, HttpService))
        assert service.wait_started()  # the web admin comes up after the prompt
        url = service.urls()["http"]
        assert authed(url, "GET", "/!version", password="wrong").status == 401
        arrived(listener, "failed login as admin from 127.0.0.1: wrong user or password")
        assert authed(url, "GET", "/!version", user="root\x01x", password="x").status == 401
        arrived(listener, "failed login as root?x from 127.0.0.1: wrong user or password")
        assert request(url, "GET", "/!version").status == 401  # no credentials: no failure

        change = "config change DNS0 /server1 10.0.0.53"
        assert authed(url, "GET", "/!" + urllib.parse.quote(change)).status == 200
        arrived(listener, "login admin from 127.0.0.1 (web admin)")
        arrived(listener, f"{change} (by HTTP admin@127.0.0.1)")
        assert authed(url, "GET", "/!config%20write").status == 200
        arrived(listener, "config write: 3 saved objects (by HTTP admin@127.0.0.1)")  # + DNS0
        # Digest answers every request: the second one is no second login
        assert texts(listener).count("login admin from 127.0.0.1 (web admin)") == 1

        for _ in range(LOCKOUT_AFTER):  # the good login cleared the count
            authed(url, "GET", "/!version", password="guess-pw")
        arrived(
            listener,
            "failed login as admin from 127.0.0.1: wrong user or password; "
            f"127.0.0.1 refused for {LOCKOUT_FIRST_S:.0f} s",
        )
        assert b"guess-pw" not in listener.data  # a password never reaches a log
    finally:
        runtime.close()
