"""The listeners: one cheroot WSGI server for HTTP, one for HTTPS, same application.

cheroot (Debian's python3-cheroot) is a threaded WSGI server with TLS through Python's
ssl module. Limits sized for a 128 MiB box and hostile clients: a few worker threads, a
request header cap, the body cap (a firmware upload's, firmware.MAX_REQUEST: the app refuses
less per URL, before the login), a socket timeout for slow clients, a
short TLS handshake timeout (cheroot shakes hands in its accept loop, so a client that
connects and says nothing must not hold HTTPS up for long).
"""

from __future__ import annotations

import socket
import threading
from typing import Any

from cheroot import server as cheroot_server
from cheroot import wsgi
from cheroot.ssl.builtin import BuiltinSSLAdapter

from appliance.services.http.cert import Certificate, pem_files, server_context
from appliance.services.http.firmware import MAX_REQUEST
from appliance.services.http.listen import Bind

WORKER_THREADS = 4  # per listener: an admin UI, a few scripts
MAX_HEADER = 16 << 10
SOCKET_TIMEOUT_S = 10  # a client silent this long mid-request is dropped
HANDSHAKE_TIMEOUT_S = 3
LISTEN_BACKLOG = 16
SERVER_NAME = "IPVA"


class BindError(Exception):
    """A listener could not be opened (port taken, no permission); says which and why."""


class _Connection(cheroot_server.HTTPConnection):
    """A connection whose failure ends the connection, never the worker thread.

    cheroot 9 lets an error raised while it answers a broken request (a TLS client that
    sent a bad request line and hung up: SSLEOFError inside its 400 handler) escape from
    the worker, and the thread dies; four of those and HTTPS stops answering. Found by
    tests/hosted/test_http_fuzz.py."""

    def communicate(self) -> bool:
        try:
            return bool(super().communicate())
        except Exception as e:  # the client is gone or hostile: drop it, keep the worker
            self.server.error_log(f"connection dropped: {type(e).__name__}: {e}")
            return False


class _Adapter(BuiltinSSLAdapter):
    """cheroot's ssl adapter with our context and a bounded handshake."""

    def wrap(self, sock: socket.socket) -> Any:
        sock.settimeout(HANDSHAKE_TIMEOUT_S)
        return super().wrap(sock)


def _adapter(cert: Certificate) -> BuiltinSSLAdapter:
    with pem_files(cert) as (crt, key):  # the files exist only while these load them
        adapter = _Adapter(crt, key)
        adapter.context = server_context(crt, key)
    return adapter


class Listener:
    """One cheroot server on one address, serving in its own thread."""

    def __init__(self, bind: Bind, app: Any, cert: Certificate | None = None) -> None:
        self.bind = bind
        self.https = cert is not None
        self.server = wsgi.Server(
            (bind.host, bind.port),
            app,
            numthreads=WORKER_THREADS,
            server_name=SERVER_NAME,
            request_queue_size=LISTEN_BACKLOG,
            timeout=SOCKET_TIMEOUT_S,
            shutdown_timeout=2,
        )
        self.server.ConnectionClass = _Connection
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
        self._thread = threading.Thread(
            target=self.server.serve, name=f"http-{self.bind.port}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self.server.stop()
            self._thread.join(timeout=5)
            self._thread = None
