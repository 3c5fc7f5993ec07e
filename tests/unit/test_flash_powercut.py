"""Power cut after the N-th write, for N = 0, 1, 2, … until the operation completes: after
every cut the remounted flash holds exactly the old or the new state, and stays usable.
Each scenario runs with clean cuts, torn last writes and reordered (cached) writes."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flashdev import MODES, CutDevice, PowerCut, blank_image, formatted_image, memdev, mount, state

from appliance.flash import Flash, FlashFullError

Op = Callable[[Flash], None]
State = tuple[dict[str, bytes], dict[int, str]]


def _run(base: bytes, ops: list[Op], cut_at: int | None, mode: str, seed: int):
    """Mount `base` on a cutting device and run ops; returns (device, ops completed, cut?)."""
    dev = CutDevice(base, cut_at, mode, seed)
    done = 0
    try:
        flash = mount(dev)
        for op in ops:
            try:
                op(flash)
            except FlashFullError:
                pass
            done += 1
    except PowerCut:
        return dev, done, True
    return dev, done, False


def sweep(base: bytes, ops: list[Op], mode: str, *, seed: int = 0) -> int:
    """Cut at every write of the op sequence; returns the number of cut points."""
    # reference run: the state after each op
    expected: list[State] = [state(mount(memdev(base)))]
    dev = memdev(base)
    flash = mount(dev)
    for op in ops:
        try:
            op(flash)
        except FlashFullError:
            pass
        expected.append(state(flash))
    assert state(mount(memdev(bytes(dev.data)))) == expected[-1]
    n = 0
    while True:
        dev, done, cut = _run(base, ops, n, mode, seed + n)
        if not cut:
            break
        survivor = dev.survivor()
        lines: list[str] = []
        after = mount(survivor, lines.append)
        got = state(after)
        ok = [expected[done]] + ([expected[done + 1]] if done + 1 < len(expected) else [])
        assert got in ok, f"cut at write {n} ({mode}) during op {done}: state is neither"
        # the flash stays usable after the cut, and that write survives a remount
        after.vars.commit({"after-cut": b"%d" % n})
        assert state(mount(memdev(bytes(survivor.data))))[0]["after-cut"] == b"%d" % n
        n += 1
        assert n < 10_000
    return n


def vars_commit(updates: dict[str, bytes | None]) -> Op:
    return lambda f: f.vars.commit(updates)


@pytest.fixture(scope="module")
def base() -> bytes:
    """16 segments with some VARS and FLASHDIR content."""
    dev = memdev(formatted_image(16))
    f = mount(dev)
    f.vars.commit({f"k{i}": bytes([i]) * (100 * i) for i in range(8)})
    for i in range(40):
        f.flashdir.add_item(100 + i, f"(cn=user{i})(h323=user{i})(loc=Sindelfingen)(node=root)")
    return bytes(dev.data)


@pytest.mark.parametrize("mode", MODES)
def test_vars_commit(base: bytes, mode: str) -> None:
    big = {f"k{i}": bytes([i + 1]) * 9000 for i in range(8)}  # spans segments
    big.update({"k3": None, "new": b"fresh"})
    assert sweep(base, [vars_commit(big)], mode) >= 4


@pytest.mark.parametrize("mode", MODES)
def test_flashdir_add_replace_delete(base: bytes, mode: str) -> None:
    ops: list[Op] = [
        lambda f: f.flashdir.add_item(999, "(cn=pwtest)(h323=pwtest)(loc=Sindelfingen)(node=root)"),
        lambda f: f.flashdir.replace(105, "(cn=changed)"),
        lambda f: f.flashdir.delete(110),
    ]
    assert sweep(base, ops, mode) >= 3


@pytest.mark.parametrize("mode", MODES)
def test_compaction(base: bytes, mode: str) -> None:
    """Rewrite VARS until it must compact (10 segments max): cuts inside the GC."""
    dev = memdev(base)
    f = mount(dev)
    value = bytes(range(256)) * 110  # 28 KiB: two per segment
    i = 0
    while len(f.flashman.owners[1].segs) < 10:
        f.vars.commit({f"v{i % 2}": value + bytes([i % 256])})
        i += 1
    start = bytes(dev.data)
    ops: list[Op] = [vars_commit({f"v{j % 2}": value + bytes([j])}) for j in range(3)]
    probe = mount(memdev(start))
    for op in ops:
        op(probe)
    assert probe.flashman.compactions > 0
    assert sweep(start, ops, mode) >= 6


@pytest.mark.parametrize("mode", MODES)
def test_full_disk_fill(mode: str) -> None:
    """Fill FLASHDIR until 'flash full'; cut anywhere in the whole fill."""
    ops: list[Op] = [
        (lambda f, i=i: f.flashdir.add_item(i, f"(cn=u{i})(data={'x' * 6000})")) for i in range(50)
    ]
    probe = mount(memdev(formatted_image(16)))
    with pytest.raises(FlashFullError):
        for i in range(50):
            probe.flashdir.add_item(i, f"(cn=u{i})(data={'x' * 6000})")
    assert sweep(formatted_image(16), ops, mode) > 30


@pytest.mark.parametrize("mode", MODES)
def test_reset_all(base: bytes, mode: str) -> None:
    assert sweep(base, [lambda f: f.flashman.reset_all()], mode) >= 16


@pytest.mark.parametrize("mode", MODES)
def test_reset_vars_and_ldap(base: bytes, mode: str) -> None:
    ops: list[Op] = [lambda f: f.vars.reset(), lambda f: f.flashdir.reset()]
    assert sweep(base, ops, mode) >= 2


@pytest.mark.parametrize("mode", MODES)
def test_format_blank_disk(mode: str) -> None:
    """The first boot formats the blank disk: a cut there leaves a blank or empty flash."""
    assert sweep(blank_image(16), [], mode) >= 16


@pytest.mark.parametrize("seed", range(6))
def test_reorder_seeds(base: bytes, seed: int) -> None:
    big = {f"k{i}": bytes([i + 2]) * 7000 for i in range(8)}
    assert sweep(base, [vars_commit(big), vars_commit({"k1": None})], "reorder", seed=seed * 1000)
