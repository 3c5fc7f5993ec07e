"""Box events: a small typed hook that services subscribe to (the logging service, the web UI).

    box.events.subscribe(on_event)        # on_event(event: Event) -> None
    box.events.emit(ConfigWritten(3))     # called by whoever did it, after it happened

Events are facts after the fact, delivered synchronously in the emitting thread (a console's
or the DHCP watcher's), in subscription order. A subscriber must be quick and must not raise:
a subscriber that raises is reported once on the trace and the others still get the event.

Who did it: whoever runs console lines on the box's behalf says so around them
(`with acting("console ttyS0"):`, the web admin `HTTP admin@10.0.2.2`, the update script
`UP1 update script`); the box puts `actor()` into the events those lines cause (`by`). A
context variable, so it belongs to the thread (and request) that set it: a line typed on
one console while a web request runs is not attributed to the other.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

_ACTOR: contextvars.ContextVar[str] = contextvars.ContextVar("actor", default="")


@contextmanager
def acting(who: str) -> Iterator[None]:
    """Lines run in this block are `who`'s (for the `by` of the events they cause)."""
    token = _ACTOR.set(who)
    try:
        yield
    finally:
        _ACTOR.reset(token)


def actor() -> str:
    """Who runs the current line ("" when nobody said: the box itself, a watcher)."""
    return _ACTOR.get()


@dataclass(frozen=True)
class ConfigChanged:
    """`config change|add|rem` edited the running config."""

    line: str  # the message the console printed
    request: str = ""  # the request as typed, passwords masked (config.describe_op)
    by: str = ""  # actor(): who typed it


@dataclass(frozen=True)
class ConfigActivated:
    """`config activate` ran: what it applied live and what needs a reset."""

    applied: tuple[str, ...]
    pending: tuple[str, ...]  # what needs a reset (the box's reset-required state)
    by: str = ""


@dataclass(frozen=True)
class ConfigWritten:
    """The saved config changed (config write, restore, factory reset)."""

    objects: int
    how: str  # "write" | "restore" | "factory-reset"
    by: str = ""


@dataclass(frozen=True)
class RestartRequested:
    """A reset or reboot was asked for (by whom)."""

    kind: str  # "reset" | "reboot"
    by: str = ""  # "" for the box's own (the restart after a crash)


@dataclass(frozen=True)
class AddressChanged:
    """A port got an address or lost it."""

    port: str  # "ETH0"
    address: str | None  # "10.0.2.15/24 (dhcp)"; None: the address is gone (lease lost)


@dataclass(frozen=True)
class LinkChanged:
    """A port's link went up or down."""

    port: str
    up: bool


@dataclass(frozen=True)
class Crashed:
    """The boot found a crash dump of the previous run (reboot, exception, signal, death)."""

    reason: str


@dataclass(frozen=True)
class LoginSucceeded:
    """A web admin login: the first good answer from this user and address in a while
    (Digest answers every request; each one is not a login)."""

    user: str
    client: str  # the client's IP address


@dataclass(frozen=True)
class LoginFailed:
    """A web admin login failed (and maybe locked the address out)."""

    user: str  # as the client gave it ("" when it gave none)
    client: str
    reason: str  # "wrong user or password" …, never the password
    refused_s: float = 0.0  # > 0: this failure locked the address out for that long


@dataclass(frozen=True)
class LogTargetChanged:
    """A log target stopped taking records (up=False: down, the records wait and are
    retried), or takes them again; from the target's sender thread."""

    module: str  # LOG0, LOG1
    target: str  # "syslog 10.0.0.5:514"
    up: bool
    error: str = ""  # why it is down


@dataclass(frozen=True)
class FlashReady:
    """A deferred flash mount is complete (FLASHDIR0 read after the prompt): writes no
    longer wait for it. `damage`: what that read found (trace lines), `ok`: False when it
    failed (writes are refused, said by the flash service)."""

    ok: bool
    damage: tuple[str, ...] = ()


@dataclass(frozen=True)
class Resumed:
    """The VM ran again after a pause (hypervisor suspend/resume, live migration, a saved
    state): the clock was stepped by `offset_s` to the host's time (hal.resume)."""

    offset_s: float


@dataclass(frozen=True)
class CertificateChecked:
    """The HTTPS certificate's validity, looked at (at the web admin's start, daily, after a
    new one): `near` when it ends within the warning time (alarm 70 raised, else cleared)."""

    subject: str  # CN=IPVA,O=ipva
    not_after: str  # 2027-01-05 12:00 UTC
    days_left: int
    near: bool


@dataclass(frozen=True)
class Traced:
    """A line went to the box's trace."""

    line: str  # the whole trace line, `0:0000:030:4 - …`


Event = (
    ConfigChanged
    | ConfigActivated
    | ConfigWritten
    | RestartRequested
    | AddressChanged
    | LinkChanged
    | Crashed
    | LoginSucceeded
    | LoginFailed
    | LogTargetChanged
    | FlashReady
    | Resumed
    | CertificateChecked
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
