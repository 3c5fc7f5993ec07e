"""ConsoleRelay: share a running box's serial console with other clients over TCP.

QEMU's serial socket takes one client, and the harness (Machine) is it. The relay listens
on 127.0.0.1 (an ephemeral port), copies every console byte to each connected client and
types what a client sends into the box, so `ipva console --vm` can attach to the box
`ipva run` started while `ipva run` keeps its own view. Where it listens is written to a
state file, one per dist/ directory, in a per-user directory under the system's temporary
directory (not in dist/: that stays as built); removed again when the relay closes.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

ACCEPT_POLL = 0.5  # how often the accept/read loops look at the stop flag


class ConsoleRelay:
    """`send` types bytes into the box; feed console output to `publish`."""

    def __init__(self, send: Callable[[bytes], None], state_file: Path | None = None) -> None:
        self._send = send
        self.state_file = state_file
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(ACCEPT_POLL)
        self.port = int(self._server.getsockname()[1])
        self._clients: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._accept, name="relay-accept", daemon=True)]

    @property
    def url(self) -> str:
        return f"socket://127.0.0.1:{self.port}"

    def start(self) -> ConsoleRelay:
        if self.state_file is not None:
            self.state_file.parent.mkdir(parents=True, exist_ok=True)
            self.state_file.write_text(self.url + "\n")
        self._threads[0].start()
        return self

    def publish(self, data: bytes) -> None:
        """Console output: to every client; one that is gone or stuck is dropped."""
        with self._lock:
            for client in list(self._clients):
                try:
                    client.sendall(data)
                except OSError:
                    self._drop(client)

    def _drop(self, client: socket.socket) -> None:
        if client in self._clients:
            self._clients.remove(client)
        client.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(10)  # a client that stops reading must not stall the box
            with self._lock:
                self._clients.append(client)
            reader = threading.Thread(
                target=self._read, args=(client,), name="relay-client", daemon=True
            )
            self._threads.append(reader)
            reader.start()

    def _read(self, client: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                data = client.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                break
            if not data:
                break
            try:
                self._send(data)
            except Exception as exc:  # noqa: BLE001 - the box is gone; tell the log, end
                log.info("console relay: cannot type into the box: %s", exc)
                break
        with self._lock:
            self._drop(client)

    def close(self) -> None:
        self._stop.set()
        self._server.close()
        with self._lock:
            for client in list(self._clients):
                self._drop(client)
        if self.state_file is not None:
            self.state_file.unlink(missing_ok=True)

    def __enter__(self) -> ConsoleRelay:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def state_file(dist: Path) -> Path:
    """Where `ipva run` of `dist` records its relay for `ipva console --vm`."""
    key = hashlib.sha256(str(dist.resolve()).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"ipva-run-{os.getuid()}" / f"{key}.console.url"
