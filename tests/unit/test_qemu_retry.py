"""The one retry primitive: fn(False) until truthy or timeout, then fn(True) once more."""

from __future__ import annotations

import pytest

from hypervisors.qemu.errors import WaitTimeout
from hypervisors.qemu.timeouts import retry


def test_returns_the_first_truthy_result() -> None:
    calls: list[bool] = []

    def fn(last_try: bool) -> str | None:
        calls.append(last_try)
        return "ok" if len(calls) == 3 else None

    assert retry(fn, timeout=5, interval=0) == "ok"
    assert calls == [False, False, False]


def test_last_try_runs_once_after_the_timeout() -> None:
    calls: list[bool] = []

    def fn(last_try: bool) -> None:
        calls.append(last_try)

    with pytest.raises(WaitTimeout, match="waiting for the moon"):
        retry(fn, timeout=0.05, what="the moon", interval=0.01)
    assert calls[-1] is True and calls.count(True) == 1 and calls[0] is False


def test_last_try_may_succeed_or_raise_its_own_error() -> None:
    assert retry(lambda last: last or None, timeout=0.01, interval=0) is True

    def fn(last_try: bool) -> None:
        if last_try:
            raise RuntimeError("saw: nothing")

    with pytest.raises(RuntimeError, match="saw: nothing"):
        retry(fn, timeout=0.01, interval=0)


def test_wait_timeout_names_what_and_shows_console_tail() -> None:
    err = WaitTimeout("the shell prompt", 3, ["line a", "line b"])
    assert "the shell prompt" in str(err) and "  | line b" in str(err)
