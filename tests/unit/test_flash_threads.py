"""FLASHMAN guards its own commits: two threads writing at once are one after the other.

The emulated disk (flashdev.GateDevice) holds the first writer inside its commit, before its
records land, and a second writer is sent into the same window. Without FlashMan's own lock
the second one lays its records out behind the first one's (still empty) place, writes and
commits them and returns while the first is held: a power cut then leaves a hole before an
acknowledged commit, which the next mount reports as damage. With it, the second writer
waits inside FlashMan until the first commit is complete.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable

import pytest
from flashdev import GateDevice, formatted_image, memdev, mount, state

from appliance.flash import Flash
from appliance.flash.flashman import FlashMan

FLASHMAN_FILE = sys.modules[FlashMan.__module__].__file__


def _in_flashman(thread: threading.Thread) -> bool:
    """The thread is stopped somewhere inside FlashMan (waiting for the commit lock)."""
    assert thread.ident is not None
    frame = sys._current_frames().get(thread.ident)
    while frame is not None:
        if frame.f_code.co_filename == FLASHMAN_FILE:
            return True
        frame = frame.f_back
    return False


def _two_writers(
    first: Callable[[Flash], None], second: Callable[[Flash], None], image: bytes
) -> tuple[GateDevice, Flash, bytes]:
    """Hold `first` at its first write, run `second` meanwhile; returns the device, the
    flash both wrote to, and the disk as a power cut while `first` was held leaves it."""
    dev = GateDevice(image)
    flash = mount(dev)
    dev.arm()
    a = threading.Thread(target=first, args=(flash,), name="writer-A")
    b = threading.Thread(target=second, args=(flash,), name="writer-B")
    a.start()
    assert dev.paused.wait(10), "writer A never reached the disk"
    b.start()
    deadline = time.monotonic() + 10
    while b.is_alive() and not _in_flashman(b) and time.monotonic() < deadline:
        time.sleep(0.001)
    b.join(0.5)  # time enough to finish a commit on a memory disk, were it let through
    b_done_while_a_held = not b.is_alive()
    b_in_flashman = b.is_alive() and _in_flashman(b)
    cut = bytes(dev.durable)  # a power cut now
    dev.release()
    a.join(10)
    b.join(10)
    assert not a.is_alive() and not b.is_alive()
    assert not b_done_while_a_held, f"writer B committed while A was held: {dev.writes}"
    assert b_in_flashman, "writer B is not waiting inside FlashMan"
    # every write of A's commit came before B's first: the commits did not interleave
    names = [name for name, _o, _n in dev.writes]
    assert names == sorted(names), dev.writes
    return dev, flash, cut


def _seeded() -> bytes:
    """A formatted flash whose VARS log has a head segment with room (so the held write is
    a record write, not a new segment's header)."""
    dev = memdev(formatted_image(16))
    mount(dev).vars.commit({"seed0": b"s" * 50})
    return bytes(dev.data)


def _remount(image: bytes) -> tuple[dict[str, bytes], dict[int, str]]:
    """The state a remount finds; it must report no damage."""
    lines: list[str] = []
    flash = mount(memdev(image), lines.append)
    assert flash.flashman.damage == [], lines
    return state(flash)


def test_two_config_commits_run_one_after_the_other() -> None:
    dev, flash, cut = _two_writers(
        lambda f: f.vars.commit({"A": b"a" * 100}),
        lambda f: f.vars.commit({"B": b"b" * 100}),
        _seeded(),
    )
    after = _remount(bytes(dev.durable))
    assert after == state(flash)
    assert after[0] == {"seed0": b"s" * 50, "A": b"a" * 100, "B": b"b" * 100}
    assert _remount(cut)[0] == {"seed0": b"s" * 50}  # cut while A was held: the old state


def test_a_commit_and_a_reset_run_one_after_the_other() -> None:
    """Let through, the reset frees the segment the held commit then writes into: the box
    shows the value, the next mount has lost it."""
    dev, flash, _cut = _two_writers(
        lambda f: f.vars.commit({"A": b"a" * 100}), lambda f: f.vars.reset(), _seeded()
    )
    assert state(flash) == _remount(bytes(dev.durable)) == ({}, {})


def _just_before_a_compaction(owner: str) -> tuple[bytes, Callable[[Flash, int, bytes], None], int]:
    """A flash whose next rewrite of key i compacts the owner's log (a GC step)."""
    dev = memdev(formatted_image(16))
    flash = mount(dev)

    def put(f: Flash, i: int, v: bytes) -> None:
        if owner == "vars":
            f.vars.commit({f"k{i % 40}": v})
        else:
            f.flashdir.put(i % 40, v.decode())

    for i in range(2000):
        image, before = bytes(dev.data), flash.flashman.compactions
        put(flash, i, b"x" * 900 + str(i).encode())
        if flash.flashman.compactions > before:
            return image, put, i
    raise AssertionError("the log never compacted")


@pytest.mark.parametrize("owner", ["vars", "ldap"])
def test_a_compaction_and_a_commit_run_one_after_the_other(owner: str) -> None:
    """The held writer is in the commit that compacts; the second writes the same log."""
    image, put, i = _just_before_a_compaction(owner)
    dev, flash, cut = _two_writers(
        lambda f: put(f, i, b"A" * 900), lambda f: put(f, i + 1, b"B" * 900), image
    )
    assert flash.flashman.compactions > 0
    after = _remount(bytes(dev.durable))
    assert after == state(flash)
    vars_, ldap = after
    if owner == "vars":
        assert (vars_[f"k{i % 40}"], vars_[f"k{(i + 1) % 40}"]) == (b"A" * 900, b"B" * 900)
    else:
        assert (ldap[i % 40], ldap[(i + 1) % 40]) == ("A" * 900, "B" * 900)
    _remount(cut)  # cut while A was held: no damage (old or new is test_flash_powercut's)
