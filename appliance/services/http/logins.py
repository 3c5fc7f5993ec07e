"""Which web admin requests are logins and failed logins, as box events for the log.

Digest answers every request with the credentials, so a login is the first good answer
from a user at an address after SESSION_IDLE_S without one (or after a failure there);
a failed login is every counted failure (auth.Verdict.counts: not a missing header, not an
expired nonce the browser renews by itself), with the lockout it started, if any.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from appliance.events import Event, LoginFailed, LoginSucceeded

SESSION_IDLE_S = 1800.0  # a browser left open for half an hour logs in anew
SESSIONS = 256  # (user, address) pairs remembered; the oldest go first


class Logins:
    def __init__(
        self, emit: Callable[[Event], None], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._emit = emit
        self._clock = clock
        self._seen: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._lock = threading.Lock()

    def succeeded(self, user: str, client: str) -> None:
        now = self._clock()
        with self._lock:
            last = self._seen.pop((user, client), None)
            self._seen[(user, client)] = now
            while len(self._seen) > SESSIONS:
                self._seen.popitem(last=False)
        if last is None or now - last > SESSION_IDLE_S:
            self._emit(LoginSucceeded(user, client))

    def failed(self, user: str, client: str, reason: str, refused_s: float) -> None:
        with self._lock:
            for key in [k for k in self._seen if k[1] == client]:
                del self._seen[key]  # the next good answer from there is a login again
        self._emit(LoginFailed(user, client, reason, refused_s))
