"""Real log receivers on 127.0.0.1 for the log-target tests: Debian's rsyslogd (UDP and TCP
inputs, started with its own config, never the system service), a plain TCP listener and
an HTTP server (http.server is fine here: it is the test's peer, not the product)."""

from __future__ import annotations

import contextlib
import http.server
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

WAIT_S = 20.0


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate, timeout: float = WAIT_S, what: str = "a condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


@dataclass
class Rsyslog:
    udp_port: int
    tcp_port: int
    out: Path

    def lines(self) -> list[str]:
        return self.out.read_text().splitlines() if self.out.exists() else []


# what rsyslog parsed out of each message: pri, facility, severity, host, tag, msg
RSYSLOG_TEMPLATE = "%pri% %syslogfacility-text% %syslogseverity% %hostname% %syslogtag%%msg%\\n"


@contextlib.contextmanager
def rsyslog(workdir: Path) -> Iterator[Rsyslog]:
    daemon = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
    if not Path(daemon).exists():
        pytest.fail("rsyslogd missing: ./dev installs it (apt-get install rsyslog)")
    workdir.mkdir(parents=True, exist_ok=True)
    r = Rsyslog(free_port(socket.SOCK_DGRAM), free_port(), workdir / "received.log")
    conf = workdir / "rsyslog.conf"
    conf.write_text(
        f'global(workDirectory="{workdir}")\n'
        'module(load="imudp")\nmodule(load="imtcp")\n'
        f'input(type="imudp" address="127.0.0.1" port="{r.udp_port}")\n'
        f'input(type="imtcp" address="127.0.0.1" port="{r.tcp_port}")\n'
        f'template(name="fields" type="string" string="{RSYSLOG_TEMPLATE}")\n'
        f'*.* action(type="omfile" file="{r.out}" template="fields")\n'
    )
    log = (workdir / "rsyslogd.out").open("wb")
    proc = subprocess.Popen(
        [daemon, "-n", "-f", str(conf), "-i", str(workdir / "rsyslogd.pid")],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:

        def listening() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"rsyslogd exited: {(workdir / 'rsyslogd.out').read_text()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", r.tcp_port), timeout=1),
            ):
                return True
            return False

        wait_for(listening, what="rsyslogd to listen")
        yield r
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


@dataclass
class TcpListener:
    port: int
    data: bytearray = field(default_factory=bytearray)
    connections: int = 0

    def lines(self) -> list[str]:
        return self.data.decode().splitlines()


@contextlib.contextmanager
def tcp_listener() -> Iterator[TcpListener]:
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    t = TcpListener(server.getsockname()[1])
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            t.connections += 1
            conn.settimeout(0.2)
            with conn:
                while not stop.is_set():
                    try:
                        chunk = conn.recv(4096)
                    except TimeoutError:
                        continue
                    if not chunk:
                        break
                    t.data += chunk

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield t
    finally:
        stop.set()
        thread.join(5)
        server.close()


@dataclass
class HttpRequest:
    method: str
    path: str
    body: bytes
    content_type: str


@dataclass
class HttpReceiver:
    port: int
    requests: list[HttpRequest] = field(default_factory=list)
    status: int = 200


@contextlib.contextmanager
def http_receiver() -> Iterator[HttpReceiver]:
    receiver = HttpReceiver(0)

    class Handler(http.server.BaseHTTPRequestHandler):
        def _record(self) -> None:
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n) if n else b""
            receiver.requests.append(
                HttpRequest(self.command, self.path, body, self.headers.get("Content-Type", ""))
            )
            self.send_response(receiver.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST = _record

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class FirmwareServer:
    """Files over HTTP for the update tests (hosted and VM); counts the requests. `hold_at`
    (bytes) stops the next download longer than that there until `release` is set, so a
    power cut can land mid-download."""

    host: str = "127.0.0.1"  # the name the client uses for this host (10.0.2.2 in a guest)
    port: int = 0
    files: dict[str, bytes] = field(default_factory=dict)
    hits: list[str] = field(default_factory=list)
    hold_at: int | None = None
    held: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    sent: threading.Event = field(default_factory=threading.Event)  # a file went out whole

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"


@contextlib.contextmanager
def firmware_server(host: str = "127.0.0.1") -> Iterator[FirmwareServer]:
    srv = FirmwareServer(host)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            srv.hits.append(self.path)
            body = srv.files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            hold = srv.hold_at if srv.hold_at is not None and len(body) > srv.hold_at else None
            if hold is not None:  # a shorter file (a script) does not reach it: not consumed
                srv.hold_at = None
            for at in range(0, len(body), 1 << 16):
                if hold is not None and at >= hold:
                    srv.held.set()
                    srv.release.wait(60)
                    return
                try:
                    self.wfile.write(body[at : at + (1 << 16)])
                except OSError:  # the guest went away (a power cut)
                    return
            srv.sent.set()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    srv.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.release.set()
        server.shutdown()
        server.server_close()
