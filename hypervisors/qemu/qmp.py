"""A synchronous QMP connection: qemu.qmp's asyncio QMPClient on a private event-loop thread.

The private loop keeps the harness independent of whatever loop the caller (pytest, click)
may run, and lets any thread issue commands. Errors come out as our typed `QmpError`s with the
message that was sent.
"""

from __future__ import annotations

import asyncio
import queue
import socket
import threading
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

from qemu.qmp import ExecuteError, QMPClient, QMPError

from hypervisors.qemu.errors import (
    QmpConnectError,
    QmpError,
    QmpExecuteError,
    QmpTimeoutError,
)
from hypervisors.qemu.timeouts import QMP_TIMEOUT, SOCKET_TIMEOUT

T = TypeVar("T")
Address = str | tuple[str, int] | socket.socket


class QmpConnection:
    def __init__(self, name: str = "ipva") -> None:
        self.name = name
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"qmp-{name}", daemon=True
        )
        self._thread.start()
        self._client: QMPClient | None = None
        self._event_task: asyncio.Task[None] | None = None

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float | None) -> T:
        async def bounded() -> T:
            return await asyncio.wait_for(coro, timeout)

        return asyncio.run_coroutine_threadsafe(bounded(), self._loop).result()

    def connect(self, address: Address, timeout: float = SOCKET_TIMEOUT) -> dict[str, Any]:
        """Connect and negotiate capabilities; returns QEMU's greeting."""

        async def connect() -> QMPClient:
            client = QMPClient(self.name)
            await client.connect(address)
            return client

        try:
            self._client = self._run(connect(), timeout)
        except TimeoutError as exc:  # before OSError: TimeoutError is one of its subclasses
            raise QmpConnectError(f"QMP connect to {address!r}: no greeting in {timeout}s") from exc
        except (QMPError, OSError) as exc:
            raise QmpConnectError(f"QMP connect to {address!r} failed: {exc}") from exc
        self._event_task = self._run(self._start_pump(), None)
        greeting = self._client.greeting
        return greeting._asdict() if greeting is not None else {}

    async def _start_pump(self) -> asyncio.Task[None]:
        return asyncio.get_running_loop().create_task(self._pump_events())

    async def _stop_pump(self) -> None:
        if self._event_task is not None:
            self._event_task.cancel()
            await asyncio.gather(self._event_task, return_exceptions=True)

    async def _pump_events(self) -> None:
        assert self._client is not None
        async for event in self._client.events:
            self.events.put(dict(event))

    def execute(
        self, command: str, arguments: dict[str, Any] | None = None, timeout: float = QMP_TIMEOUT
    ) -> Any:
        """Run one QMP command and return its `return` value."""
        sent: dict[str, object] = {"execute": command}
        if arguments:
            sent["arguments"] = arguments
        if self._client is None:
            raise QmpError(f"QMP not connected (sent {sent})")
        try:
            return self._run(self._client.execute(command, arguments), timeout)
        except ExecuteError as exc:
            raise QmpExecuteError(sent, exc.error_class, str(exc)) from exc
        except TimeoutError as exc:
            raise QmpTimeoutError(sent, timeout) from exc
        except (QMPError, OSError) as exc:
            raise QmpError(f"QMP {command} failed: {exc!r} (sent {sent})") from exc

    def wait_event(self, name: str, timeout: float) -> dict[str, Any]:
        """The next event called `name` (others before it are dropped)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                event = self.events.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise QmpTimeoutError({"await-event": name}, timeout) from None
            if event.get("event") == name:
                return event

    def close(self) -> None:
        """Disconnect (tolerating a peer that is already gone) and stop the loop thread."""
        if self._client is not None:
            try:
                self._run(self._client.disconnect(), 5)
            except Exception:  # noqa: BLE001 - EOFError etc. after `quit`: the peer went first
                pass
            self._client = None
        try:
            self._run(self._stop_pump(), 5)
        except Exception:  # noqa: BLE001 - cleanup must not mask the caller's error
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self._loop.close()
