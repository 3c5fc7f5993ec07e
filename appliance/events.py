"""Box events: a small typed hook that services subscribe to (the logging service, the web UI).

    box.events.subscribe(on_event)        # on_event(event: Event) -> None
    box.events.emit(ConfigWritten(3))     # called by whoever did it, after it happened

Events are facts after the fact, delivered synchronously in the emitting thread (a console's
or the DHCP watcher's), in subscription order. A subscriber must be quick and must not raise:
a subscriber that raises is reported once on the trace and the others still get the event.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class ConfigChanged:
    """`config change|add|rem` edited the running config."""

    line: str  # the message the console printed


@dataclass(frozen=True)
class ConfigActivated:
    applied: tuple[str, ...]
    pending: tuple[str, ...]  # what needs a reset (the box's reset-required state)


@dataclass(frozen=True)
class ConfigWritten:
    """The saved config changed (config write, restore, factory reset)."""

    objects: int
    how: str  # "write" | "restore" | "factory-reset"


@dataclass(frozen=True)
class RestartRequested:
    kind: str  # "reset" | "reboot"


@dataclass(frozen=True)
class AddressChanged:
    port: str  # "ETH0"
    address: str | None  # "10.0.2.15/24 (dhcp)"; None: the address is gone (lease lost)


@dataclass(frozen=True)
class LinkChanged:
    port: str
    up: bool


@dataclass(frozen=True)
class Traced:
    line: str  # the whole trace line, `0:0000:030:4 - …`


Event = (
    ConfigChanged
    | ConfigActivated
    | ConfigWritten
    | RestartRequested
    | AddressChanged
    | LinkChanged
    | Traced
)
Subscriber = Callable[[Event], None]


class Events:
    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []
        self._lock = threading.Lock()
        self._failed: set[int] = set()
        self.on_error: Callable[[str], None] = lambda _text: None

    def subscribe(self, fn: Subscriber) -> Callable[[], None]:
        """Add a subscriber; returns the function that removes it again."""
        with self._lock:
            self._subscribers.append(fn)

        def unsubscribe() -> None:
            with self._lock:
                if fn in self._subscribers:
                    self._subscribers.remove(fn)

        return unsubscribe

    def emit(self, event: Event) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for fn in subscribers:
            try:
                fn(event)
            except Exception as e:  # one bad subscriber must not stop the box or the others
                if id(fn) not in self._failed:
                    self._failed.add(id(fn))
                    self.on_error(f"event subscriber failed: {type(e).__name__}: {e}")
