"""FLASHMAN sizes and rules from the seed, VARS/FLASHDIR behaviour, flash full, wrong disk,
and the `mod cmd` handlers."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest
from flashdev import SEG, formatted_image, memdev, mount, state

from appliance.flash import (
    FlashDirError,
    FlashError,
    FlashFullError,
    WrongDiskError,
    mount_flash,
    plan_limits,
)
from appliance.modcmd import CommandTable, ModCmdError
from appliance.services.flash import FlashService

MiB = 1 << 20
SEED_MEM = 64946176  # mem(64946176)=61.93MB from the seed's boot trace

lookup = CommandTable(FlashService().commands()).lookup


def test_ram_rule_reproduces_seed_trace() -> None:
    dev = memdev(bytes(100 * 1000 * 1000))  # the standard 100 MB flash disk
    lines: list[str] = []
    f = mount_flash(dev, ram_bytes=SEED_MEM, trace=lines.append)
    assert "start flashdir FLASHDIR0" in lines
    assert "fdir: segments=901->224(14.0MB)" in lines
    assert lines.index("start flashdir FLASHDIR0") < lines.index("fdir: segments=901->224(14.0MB)")
    assert any("blank" in line for line in lines)
    assert len(f.flashman.segments) == 1024  # 64 MiB of the 100 MB disk


def test_full_flashdir_from_192mb() -> None:
    assert plan_limits(1024, 192 * MiB).ldap_granted == 901
    assert plan_limits(1024, 160 * MiB).ldap_granted < 901
    assert plan_limits(1024, 256 * MiB).ldap_granted == 901
    big = plan_limits(8192, 3072 * MiB)
    assert big.ldap_granted == big.ldap_configured == 8192 - 113 - 10


def test_reset_all_uses_whole_disk_up_to_512mib() -> None:
    dev = memdev(bytes(100 * 1000 * 1000))
    f = mount(dev)
    f.vars.commit({"a": b"1"})
    f.flashman.reset_all()
    assert len(f.flashman.segments) == 100 * 1000 * 1000 // SEG
    assert state(f) == ({}, {})
    assert len(mount(dev).flashman.segments) == 1525
    assert state(mount(dev)) == ({}, {})


def test_info_format() -> None:
    f = mount(memdev(formatted_image(64)))
    f.vars.commit({"x": b"y" * 5000})
    f.flashdir.add_item(101, "(cn=pwtest)(h323=pwtest)(loc=Sindelfingen)(node=root)")
    text = f.flashman.info()
    lines = text.splitlines()
    assert lines[0] == "segments=64, segment-size=0x10000 (64k)"
    pat = (
        r"(LDAP|VARS) - used (\d+)k avail (\d+)k owned (\d+)k \(segments (\d+)\) "
        r"maximum (\d+)k \(segments (\d+), configured (\d+)\)"
    )
    m = [re.fullmatch(pat, line) for line in lines[1:]]
    assert all(m) and [x[1] for x in m] == ["LDAP", "VARS"]  # type: ignore[index]
    ldap = m[0]
    assert (
        ldap[0] == "LDAP - used 1k avail 63k owned 64k (segments 1) "
        "maximum 3008k (segments 47, configured 47)"
    )  # type: ignore[index]
    vars_ = m[1]
    assert vars_[2] == "6" and vars_[8] == "10"  # type: ignore[index]


def test_vars_atomic_commit_and_delete() -> None:
    dev = memdev(formatted_image())
    f = mount(dev)
    f.vars.commit({"a": b"1", "b": b"2", "c": b"3"})
    f.vars.commit({"a": None, "b": b"22", "zzz": b""})
    g = mount(dev)
    assert g.vars.keys() == ["b", "c", "zzz"]
    assert g.vars.get("b") == b"22" and g.vars.get("a") is None and g.vars.get("zzz") == b""
    g.vars.reset()
    assert mount(dev).vars.keys() == []


def test_flashdir_api() -> None:
    dev = memdev(formatted_image())
    f = mount(dev)
    f.flashdir.add_item(101, "(cn=pwtest)(h323=pwtest)(loc=Sindelfingen)(node=root)")
    f.flashdir.add_item(7, "(cn=a)")
    with pytest.raises(FlashDirError):
        f.flashdir.add_item(7, "(cn=again)")
    with pytest.raises(FlashDirError):
        f.flashdir.replace(8, "(cn=none)")
    f.flashdir.replace(7, "(cn=b)")
    assert f.flashdir.delete(8) is False
    g = mount(dev)
    assert list(g.flashdir.items()) == [
        (7, "(cn=b)"),
        (101, "(cn=pwtest)(h323=pwtest)(loc=Sindelfingen)(node=root)"),
    ]
    assert list(g.flashdir.backup_lines())[1] == (
        "mod cmd FLASHDIR0 add-item 101 (cn=pwtest)(h323=pwtest)(loc=Sindelfingen)(node=root)"
    )
    assert g.flashdir.delete(7) is True
    assert mount(dev).flashdir.get(7) is None


def test_vars_full_names_owner_and_loses_nothing() -> None:
    dev = memdev(formatted_image(64))
    f = mount(dev)
    stored = {}
    with pytest.raises(FlashFullError, match=r"^flash full: VARS has \d+ of 10 segments"):
        for i in range(100):
            f.vars.commit({f"k{i}": bytes([i]) * 30000})
            stored[f"k{i}"] = bytes([i]) * 30000
    assert dict(f.vars.items()) == stored
    assert dict(mount(dev).vars.items()) == stored
    # deleting still works on a full store, and frees space
    f.vars.commit({"k0": None, "k1": None})
    f.vars.commit({"new": b"x" * 30000})
    assert mount(dev).vars.get("new") == b"x" * 30000


def test_flashdir_full_when_ram_is_short() -> None:
    dev = memdev(formatted_image(64))
    f = mount_flash(dev, ram_bytes=18 * MiB + 14 * 3 * SEG, trace=lambda _l: None)
    assert f.flashman.owners[2].maximum == 4
    with pytest.raises(FlashFullError, match="flash full: LDAP"):
        for i in range(1000):
            f.flashdir.add_item(i, "(cn=x)" + "y" * 4000)
    n = len(f.flashdir)
    assert len(mount(dev).flashdir) == n > 30


def test_wrong_disk() -> None:
    junk = bytearray(b"\xeb\x3c\x90mkfs.fat" + bytes(range(256)) * (16 * SEG // 256))
    with pytest.raises(WrongDiskError, match="reset all"):
        mount(memdev(junk))
    assert issubclass(WrongDiskError, FlashError)


def test_too_small() -> None:
    with pytest.raises(FlashError, match="too small"):
        mount(memdev(bytes(SEG * 4)))


def _box():  # type: ignore[no-untyped-def]
    return SimpleNamespace(flash=mount(memdev(formatted_image())))


def test_mod_cmds() -> None:
    box = _box()
    add = lookup("FLASHDIR0", "add-item")
    assert add is not None
    add(box, ["101", "(cn=pwtest)(h323=pwtest)(loc=Sindelfingen)(node=root)"])
    add(box, ["102", "(cn=with", "space)"])
    show = lookup("FLASHDIR0", "show")
    assert show(box, ["102"]) == "mod cmd FLASHDIR0 add-item 102 (cn=with space)"  # type: ignore[misc]
    assert len(lookup("FLASHDIR0", "list")(box, []).splitlines()) == 2  # type: ignore[misc]
    lookup("FLASHDIR0", "del-item")(box, ["102"])  # type: ignore[misc]
    with pytest.raises(ModCmdError):
        lookup("FLASHDIR0", "delete")(box, ["102"])  # type: ignore[misc]
    info = lookup("FLASHMAN0", "info")(box, [])  # type: ignore[misc]
    assert info.startswith("segments=16, segment-size=0x10000 (64k)\nLDAP - used 1k")
    box.flash.vars.commit({"a": b"b"})
    reset = lookup("FLASHMAN0", "reset")
    reset(box, ["vars"])  # type: ignore[misc]
    assert box.flash.vars.keys() == []
    reset(box, ["ldap"])  # type: ignore[misc]
    assert len(box.flash.flashdir) == 0
    box.flash.flashdir.add_item(1, "(cn=a)")
    reset(box, ["all"])  # type: ignore[misc]
    assert state(box.flash) == ({}, {})
    with pytest.raises(ModCmdError):
        reset(box, ["nothing"])  # type: ignore[misc]


def test_erase_counts_spread_wear() -> None:
    dev = memdev(formatted_image(32))
    f = mount(dev)
    for i in range(400):
        f.vars.commit({"cfg": bytes([i % 256]) * 20000})
    counts = [s.erase_count for s in mount(dev).flashman.segments]
    assert max(counts) - min(counts) <= 2 and min(counts) >= 3


def test_less_ram_keeps_flashdir_data_but_it_cannot_grow() -> None:
    dev = memdev(formatted_image(64))
    f = mount(dev)
    for i in range(60):
        f.flashdir.add_item(i, "(cn=x)" + "y" * 6000)
    assert len(f.flashman.owners[2].segs) > 4
    lines: list[str] = []
    g = mount_flash(dev, ram_bytes=18 * MiB + 14 * 3 * SEG, trace=lines.append)
    assert "fdir: segments=47->4(0.2MB)" in lines
    assert any("more than granted" in line for line in lines)
    assert len(g.flashdir) == 60
    with pytest.raises(FlashFullError, match="flash full: LDAP"):
        g.flashdir.add_item(1000, "(cn=more)" + "y" * 6000)
    assert len(mount(dev).flashdir) == 60


def test_reset_all_formats_a_wrong_disk() -> None:
    junk = memdev(b"\x55" * (20 * SEG))
    with pytest.raises(WrongDiskError):
        mount(junk)
    traced: list[tuple[str, int]] = []
    box = SimpleNamespace(
        flash=None,
        flash_device=junk,
        ram_bytes=256 * MiB,
        trace=lambda line, tag=30: traced.append((line, tag)),
    )
    out = lookup("FLASHMAN0", "reset")(box, ["all"])  # type: ignore[misc]
    assert out == "flash formatted, 20 segments"
    assert traced and all(tag == 81 for _line, tag in traced)  # FLASHMAN's trace tag
    box.flash.vars.commit({"a": b"1"})
    assert mount(junk).vars.get("a") == b"1"
