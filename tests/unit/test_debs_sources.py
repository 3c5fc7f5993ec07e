"""firmware.debs.sources_of: one `apt-cache show` for the bootcode's binaries, read record by
record (a binNMU's Source names the source version; a binary without Source is its own)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence

import pytest

from firmware import debs
from firmware.run import ToolError

SHOW = b"""Package: busybox
Source: busybox (1:1.35.0-4+deb12u1)
Version: 1:1.35.0-4+deb12u1+b1
Description: Tiny utilities

Package: signify-openbsd
Version: 31-3
Description: Lightweight cryptographic signing

Package: python3.11-minimal
Source: python3.11
Version: 3.11.2-6+deb12u9

"""


def fake_run(
    calls: list[list[str]], out: bytes
) -> Callable[..., subprocess.CompletedProcess[bytes]]:
    def run(argv: Sequence[str], **kwargs: object) -> subprocess.CompletedProcess[bytes]:
        calls.append(list(argv))
        return subprocess.CompletedProcess(argv, 0, out, b"")

    return run


def test_one_apt_cache_run_names_each_packages_source(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []
    monkeypatch.setattr(debs, "run", fake_run(calls, SHOW))
    names = ["signify-openbsd", "busybox", "python3.11-minimal"]
    assert debs.sources_of(names) == [
        ("signify-openbsd", "31-3"),
        ("busybox", "1:1.35.0-4+deb12u1"),
        ("python3.11", "3.11.2-6+deb12u9"),
    ]
    assert calls == [["apt-cache", "show", "--no-all-versions", *names]]


def test_a_package_apt_does_not_know_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(debs, "run", fake_run([], SHOW))
    with pytest.raises(ToolError, match=r"Debian package nosuch not available: run `apt-get"):
        debs.sources_of(["busybox", "nosuch"])
