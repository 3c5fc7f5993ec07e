"""QmpConnection against a fake QMP server over socketpair() (as NixOS tests its driver)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator

import pytest

from hypervisors.qemu.errors import (
    QmpConnectError,
    QmpError,
    QmpExecuteError,
    QmpTimeoutError,
)
from hypervisors.qemu.qmp import QmpConnection

GREETING = {"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""},
                    "capabilities": []}}  # fmt: skip


class FakeQemu(threading.Thread):
    """Answers like QEMU: greeting, qmp_capabilities, then per-command canned behaviour."""

    def __init__(self, sock: socket.socket, greeting: object = GREETING) -> None:
        super().__init__(daemon=True)
        self.sock = sock
        self.greeting = greeting
        self.received: list[dict[str, object]] = []

    def send(self, obj: object) -> None:
        self.sock.sendall(json.dumps(obj).encode() + b"\r\n")

    def messages(self) -> Iterator[dict[str, object]]:
        # the client sends bare JSON objects, not lines: split the stream as QEMU does
        decoder, buffer = json.JSONDecoder(), ""
        while chunk := self.sock.recv(4096):
            buffer += chunk.decode()
            while buffer.strip():
                try:
                    msg, end = decoder.raw_decode(buffer.lstrip())
                except ValueError:
                    break
                buffer = buffer.lstrip()[end:]
                yield msg

    def run(self) -> None:
        self.send(self.greeting)
        for msg in self.messages():
            self.received.append(msg)
            name, ident = msg.get("execute"), msg.get("id")
            if name in ("qmp_capabilities", "cont"):
                self.send({"return": {}, "id": ident})
            elif name == "query-status":
                self.send({"event": "RESET", "data": {"guest": False},
                           "timestamp": {"seconds": 1, "microseconds": 0}})  # fmt: skip
                self.send({"return": {"status": "running", "running": True}, "id": ident})
            elif name == "bad":
                self.send({"error": {"class": "GenericError", "desc": "nope"}, "id": ident})
            elif name == "quit":
                self.send({"return": {}, "id": ident})
                break
            elif name == "hang":
                continue
        self.sock.close()


@pytest.fixture
def pair() -> Iterator[tuple[QmpConnection, FakeQemu]]:
    ours, theirs = socket.socketpair()
    fake = FakeQemu(theirs)
    fake.start()
    qmp = QmpConnection("test")
    qmp.connect(ours)
    yield qmp, fake
    qmp.close()


def test_connect_negotiates_and_returns_greeting() -> None:
    ours, theirs = socket.socketpair()
    fake = FakeQemu(theirs)
    fake.start()
    qmp = QmpConnection("test")
    try:
        greeting = qmp.connect(ours)
        assert greeting["QMP"]["version"]["qemu"]["major"] == 7
        assert fake.received[0]["execute"] == "qmp_capabilities"
    finally:
        qmp.close()


def test_execute_returns_the_return_value_and_queues_events(
    pair: tuple[QmpConnection, FakeQemu],
) -> None:
    qmp, _ = pair
    assert qmp.execute("query-status") == {"status": "running", "running": True}
    assert qmp.wait_event("RESET", timeout=5)["data"] == {"guest": False}


def test_error_reply_is_typed_and_carries_the_sent_message(
    pair: tuple[QmpConnection, FakeQemu],
) -> None:
    qmp, _ = pair
    with pytest.raises(QmpExecuteError) as info:
        qmp.execute("bad", {"x": 1})
    assert info.value.error_class == "GenericError"
    assert info.value.desc == "nope"
    assert info.value.sent == {"execute": "bad", "arguments": {"x": 1}}


def test_no_answer_is_a_timeout_naming_the_command(pair: tuple[QmpConnection, FakeQemu]) -> None:
    qmp, _ = pair
    with pytest.raises(QmpTimeoutError, match="hang"):
        qmp.execute("hang", timeout=0.2)


def test_commands_after_the_peer_left_fail_typed(pair: tuple[QmpConnection, FakeQemu]) -> None:
    qmp, fake = pair
    qmp.execute("quit")
    fake.join(5)
    with pytest.raises(QmpError):
        qmp.execute("query-status", timeout=2)


def test_wait_event_timeout(pair: tuple[QmpConnection, FakeQemu]) -> None:
    qmp, _ = pair
    with pytest.raises(QmpTimeoutError, match="SHUTDOWN"):
        qmp.wait_event("SHUTDOWN", timeout=0.1)


def test_garbage_greeting_is_a_connect_error() -> None:
    ours, theirs = socket.socketpair()
    fake = FakeQemu(theirs, greeting={"hello": "world"})
    fake.start()
    qmp = QmpConnection("test")
    try:
        with pytest.raises(QmpConnectError, match="QMP connect"):
            qmp.connect(ours, timeout=5)
    finally:
        qmp.close()


def test_nobody_listening_is_a_connect_error(tmp_path: object) -> None:
    qmp = QmpConnection("test")
    try:
        with pytest.raises(QmpConnectError):
            qmp.connect(f"{tmp_path}/absent.sock", timeout=2)
    finally:
        qmp.close()


def test_execute_before_connect_is_an_error() -> None:
    qmp = QmpConnection("test")
    try:
        with pytest.raises(QmpError, match="not connected"):
            qmp.execute("query-status")
    finally:
        qmp.close()
