"""The listeners: one cheroot WSGI server for HTTP, one for HTTPS, same application.

cheroot (Debian's python3-cheroot) is a threaded WSGI server with TLS through Python's
ssl module. Limits sized for a 128 MiB box and hostile clients, each a change to how
cheroot 9 does it (found by tests/hosted/test_http_fuzz.py):
- A new connection waits in cheroot's selector until it sends something; cheroot would
  hand it to a worker at once, so a few silent connections held every worker.
- TLS handshakes happen in the worker that reads the request, not in the accept loop
  (where 5 silent connections delayed every handshake by 3 s each).
- The request line, headers and TLS handshake must all arrive within HEADER_DEADLINE_S of
  the first byte (a watchdog shuts the socket), so a client sending a byte every few
  seconds holds a worker that long at most; each address may hold MAX_PER_CLIENT
  connections, fewer than the workers, so one slow client never holds them all.
- `Expect: 100-continue` is answered when the application first reads the body (after
  the login), not at once: curl then sends no body with a request that gets a 401.
- No read of a body takes more than MAX_READ: cheroot read a chunked body's chunk whole,
  as large as its size line said (a 413 now; chunked bodies have the app's limits too).
- A body the application did not read (a 401, a 413, a refused upload) is read and thrown
  away in small pieces up to DRAIN_MAX; more than that closes the connection. cheroot read
  the rest at once into memory (8 unauthenticated 32 MiB PUTs: 242 MB).
The body cap is a firmware upload's (firmware.MAX_REQUEST); the app refuses less per URL,
chunked bodies included, before the login.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from cheroot import connections as cheroot_connections
from cheroot import errors as cheroot_errors
from cheroot import server as cheroot_server
from cheroot import wsgi
from cheroot.makefile import MakeFile
from cheroot.ssl.builtin import BuiltinSSLAdapter
from werkzeug.exceptions import RequestEntityTooLarge

from appliance.services.http.app import MAX_BODY
from appliance.services.http.cert import Certificate, pem_files, server_context
from appliance.services.http.firmware import MAX_REQUEST
from appliance.services.http.listen import Bind

WORKER_THREADS = 10  # per listener: an admin UI, a few scripts, room beside a slow client
MAX_PER_CLIENT = 8  # open connections per client address and listener (< WORKER_THREADS)
MAX_HEADER = 16 << 10
HEADER_DEADLINE_S = 10.0  # request line + headers (+ TLS handshake) from the first byte
SOCKET_TIMEOUT_S = 10  # a client silent this long mid-request (or idle) is dropped
DRAIN_MAX = 1 << 20  # an unread body up to this is thrown away; above, the connection closes
DRAIN_PIECE = 64 << 10
MAX_READ = MAX_BODY  # one read of a body at most (a backup is read in one; see _BodyReader)
WATCH_INTERVAL_S = 0.5
LISTEN_BACKLOG = 16
SERVER_NAME = "IPVA"


class BindError(Exception):
    """A listener could not be opened (port taken, no permission); says which and why."""


class _BodyReader:
    """The connection's reader while one request's body is read. With `Expect:
    100-continue` the first read sends `100 Continue` (PEP 3333's second way), so the login
    comes first. No read takes more than MAX_READ at once: cheroot reads a chunk of a
    chunked body whole, whatever size its line declares (a 413 instead)."""

    def __init__(self, rfile: Any, send: Callable[[], None] | None) -> None:
        self.rfile = rfile
        self._send = send
        self.sent = send is None

    def _go(self, size: int | None) -> None:
        if size is None or size < 0 or size > MAX_READ:
            raise RequestEntityTooLarge()
        if not self.sent and self._send is not None:
            self.sent = True
            self._send()

    def read(self, size: int | None = -1) -> bytes:
        self._go(size)
        return bytes(self.rfile.read(size))

    def readline(self, size: int | None = -1) -> bytes:
        self._go(size if size is not None and size >= 0 else MAX_READ)
        return bytes(self.rfile.readline(size))

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        self._go(MAX_READ)
        return bytes(next(self.rfile))

    def has_data(self) -> bool:
        return bool(self.rfile.has_data())

    def close(self) -> None:
        self.rfile.close()


class _Request(cheroot_server.HTTPRequest):
    """cheroot's request with the deadline, the late 100 Continue and the bounded drain."""

    def __init__(self, server: Any, conn: Any, proxy_mode: bool = False,
                 strict_mode: bool = True) -> None:  # fmt: skip
        super().__init__(server, conn, proxy_mode, strict_mode)
        self.expect_continue = False
        self.body: _BodyReader | None = None

    def parse_request(self) -> None:
        with self.server.header_deadline(self.conn):
            self.conn.handshake()
            super().parse_request()

    def read_request_headers(self) -> bool:
        reader = cheroot_server.HTTPRequest.header_reader

        def read(rfile: Any, headers: dict[bytes, bytes]) -> dict[bytes, bytes]:
            headers = reader(rfile, headers)
            expect = headers.pop(b"Expect", b"")  # cheroot would answer it at once
            self.expect_continue = expect.lower() == b"100-continue"
            return headers

        self.header_reader = read
        return bool(super().read_request_headers())

    def respond(self) -> None:
        own = self.conn.rfile
        self.body = _BodyReader(own, self._send_continue if self.expect_continue else None)
        self.conn.rfile = self.body
        try:
            super().respond()
        finally:
            self.conn.rfile = own

    def _send_continue(self) -> None:
        self.conn.wfile.write(f"{self.server.protocol} 100 Continue\r\n\r\n".encode("ascii"))

    def send_headers(self) -> None:
        if self.body is not None and not self.body.sent:
            self.close_connection = True  # the client may send its body after all: close
        elif self.chunked_read:
            if not getattr(self.rfile, "closed", True):
                self.close_connection = True  # unread chunks left
        else:
            remaining = getattr(self.rfile, "remaining", 0)
            if remaining > DRAIN_MAX:
                self.close_connection = True
            elif not self.close_connection:
                while remaining > 0:  # thrown away piece by piece, never held whole
                    piece = self.rfile.read(min(remaining, DRAIN_PIECE))
                    if not piece:
                        self.close_connection = True
                        break
                    remaining = self.rfile.remaining
        super().send_headers()


class _Connection(cheroot_server.HTTPConnection):
    """A connection whose failure ends the connection, never the worker thread; counted
    per client address; its TLS handshake done in its worker (handshake()).

    cheroot 9 lets an error raised while it answers a broken request (a TLS client that
    sent a bad request line and hung up: SSLEOFError inside its 400 handler) escape from
    the worker, and the thread dies; four of those and HTTPS stops answering. Found by
    tests/hosted/test_http_fuzz.py."""

    RequestHandlerClass = _Request

    def __init__(self, server: Any, sock: Any, makefile: Any = MakeFile) -> None:
        super().__init__(server, sock, makefile)
        self.admitted = ""  # the client address counted for this connection
        self.shaken = not isinstance(sock, ssl.SSLSocket)

    def handshake(self) -> None:
        if self.shaken:
            return
        self.shaken = True
        try:
            self.socket.do_handshake()
        except ssl.SSLError as e:
            if "http request" in str(e):  # plain HTTP to the HTTPS port: cheroot says so
                raise cheroot_errors.NoSSLError from e
            raise

    def communicate(self) -> bool:
        try:
            return bool(super().communicate())
        except Exception as e:  # the client is gone or hostile: drop it, keep the worker
            self.server.error_log(f"connection dropped: {type(e).__name__}: {e}")
            return False

    def close(self) -> None:
        if self.admitted:
            self.server.release(self.admitted)
            self.admitted = ""
        super().close()


class _Connections(cheroot_connections.ConnectionManager):
    """cheroot's connection manager, but a new connection waits for its first byte in the
    selector (not in a worker) and an address over MAX_PER_CLIENT is closed at once."""

    def _from_server_socket(self, server_socket: Any) -> Any:
        conn = super()._from_server_socket(server_socket)  # type: ignore[misc]
        if conn is None:
            return None
        address = str(getattr(conn, "remote_addr", "") or "?")
        if not self.server.admit(address):
            conn.close()
            return None
        conn.admitted = address
        self.put(conn)
        return None


class _Server(wsgi.Server):
    """cheroot's WSGI server with the per-address count and the header deadlines."""

    ConnectionClass = _Connection

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._guard = threading.Lock()
        self.clients: Counter[str] = Counter()
        self.refused = 0  # connections closed for MAX_PER_CLIENT
        self.timed_out = 0  # requests whose header missed HEADER_DEADLINE_S
        self._deadlines: dict[_Connection, float] = {}

    def prepare(self) -> None:
        super().prepare()
        self._connections.close()  # type: ignore[has-type]  # cheroot's own, replaced before anything is accepted
        self._connections = _Connections(self)

    def admit(self, address: str) -> bool:
        with self._guard:
            if self.clients[address] >= MAX_PER_CLIENT:
                self.refused += 1
                return False
            self.clients[address] += 1
            return True

    def release(self, address: str) -> None:
        with self._guard:
            self.clients[address] -= 1
            if self.clients[address] <= 0:
                del self.clients[address]

    @contextmanager
    def header_deadline(self, conn: _Connection) -> Iterator[None]:
        with self._guard:
            self._deadlines[conn] = time.monotonic() + HEADER_DEADLINE_S
        try:
            yield
        finally:
            with self._guard:
                self._deadlines.pop(conn, None)

    def expire_headers(self) -> None:
        """Shut the sockets whose header is late: the worker's read ends at once."""
        now = time.monotonic()
        with self._guard:
            late = [c for c, t in self._deadlines.items() if t < now]
            for conn in late:
                del self._deadlines[conn]
            self.timed_out += len(late)
        for conn in late:
            try:  # socket.socket's own: an SSLSocket's would end its TLS state under the reader
                socket.socket.shutdown(conn.socket, socket.SHUT_RDWR)
            except OSError:
                pass  # already gone


class _Adapter(BuiltinSSLAdapter):
    """cheroot's ssl adapter with our context; the handshake is left to the worker."""

    def wrap(self, sock: socket.socket) -> Any:
        s = self.context.wrap_socket(sock, do_handshake_on_connect=False, server_side=True)
        return s, {"wsgi.url_scheme": "https", "HTTPS": "on"}


def _adapter(cert: Certificate) -> BuiltinSSLAdapter:
    with pem_files(cert) as (crt, key):  # the files exist only while these load them
        adapter = _Adapter(crt, key)
        adapter.context = server_context(crt, key)
    return adapter


class Listener:
    """One cheroot server on one address, serving in its own thread; a second thread
    (the watchdog) ends requests whose header is late."""

    def __init__(self, bind: Bind, app: Any, cert: Certificate | None = None) -> None:
        self.bind = bind
        self.https = cert is not None
        self.server = _Server(
            (bind.host, bind.port),
            app,
            numthreads=WORKER_THREADS,
            server_name=SERVER_NAME,
            request_queue_size=LISTEN_BACKLOG,
            timeout=SOCKET_TIMEOUT_S,
            shutdown_timeout=2,
        )
        self.server.max_request_header_size = MAX_HEADER
        self.server.max_request_body_size = MAX_REQUEST
        self.server.server_name = SERVER_NAME
        self.server.software = SERVER_NAME  # the Server header says no more than that
        if cert is not None:
            self.server.ssl_adapter = _adapter(cert)
        # cheroot prints connection errors (a client hung up mid-answer …) to stderr, which
        # in the guest is the console: count them instead, keep the last for diagnosis
        self.errors = 0
        self.last_error = ""
        self.server.error_log = self._error_log  # type: ignore[method-assign]
        self._thread: threading.Thread | None = None
        self._watchdog: threading.Thread | None = None
        self._stopping = threading.Event()

    def use(self, cert: Certificate) -> None:
        """Serve `cert` from the next TLS handshake on (connections open keep theirs): the
        adapter wraps every new socket with its `context`, swapped here whole."""
        adapter = self.server.ssl_adapter
        if adapter is not None:
            adapter.context = _adapter(cert).context

    def _error_log(self, msg: str = "", level: int = 20, traceback: bool = False) -> None:
        self.errors += 1
        self.last_error = msg[:200]

    @property
    def port(self) -> int:
        """The bound port (differs from bind.port when that was 0)."""
        return int(self.server.bind_addr[1])

    def start(self) -> None:
        try:
            self.server.prepare()  # binds and listens, or raises
        except OSError as e:
            raise BindError(f"cannot listen on {self.bind}: {e}") from e
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self.server.serve, name=f"http-{self.bind.port}", daemon=True
        )
        self._watchdog = threading.Thread(
            target=self._watch, name=f"http-{self.bind.port}-watch", daemon=True
        )
        self._thread.start()
        self._watchdog.start()

    def _watch(self) -> None:
        while not self._stopping.wait(WATCH_INTERVAL_S):
            self.server.expire_headers()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self.server.stop()
            self._thread.join(timeout=5)
            self._thread = None
        if self._watchdog is not None:
            self._watchdog.join(timeout=5)
            self._watchdog = None
