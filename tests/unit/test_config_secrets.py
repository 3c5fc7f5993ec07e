"""Secrets sealed with the box's own key (issue 25): the cipher, and the box's use of it."""

from __future__ import annotations

import pytest
from flashdev import MODES, CutDevice, PowerCut
from test_shell_commands import FakePlatform, make_box, restart  # noqa: I001  (same directory)

from appliance.box import Box, BoxError
from appliance.config import ConfigError, parse_op, split_words
from appliance.config.secrets import KEY_VAR, BoxKey, SealError
from appliance.config.types import digest_secret
from appliance.flash import mount_flash
from appliance.hal.block import MemoryBlockDevice
from appliance.hal.types import DiskRole
from appliance.trace import TraceBuffer

VERIFIER = "digest$admin$0123456789ab$" + "1" * 32 + "$" + "2" * 64


def change(box: Box, line: str) -> str:
    words = split_words(line)
    return box.change(parse_op(words[1].text, words[2:]))


def pwd_line(box: Box, which: str = "running") -> str:
    lines = getattr(box, which).lines()
    return next(line for line in lines if line.startswith("config change ADMIN0"))


def test_a_sealed_value_opens_with_its_key_and_context_only() -> None:
    key, other = BoxKey.make(), BoxKey.make()
    token = key.seal(VERIFIER, "ADMIN0/pwd")
    assert VERIFIER not in token and "digest" not in token and token.startswith("enc$")
    assert key.open(token, "ADMIN0/pwd") == VERIFIER
    assert key.seal(VERIFIER, "ADMIN0/pwd") != token  # a new nonce each time
    with pytest.raises(SealError, match="encrypted by another box") as foreign:
        other.open(token, "ADMIN0/pwd")
    assert foreign.value.foreign and key.id in str(foreign.value)
    with pytest.raises(SealError, match="not for ALARM0/pwd") as moved:
        key.open(token, "ALARM0/pwd")  # one argument's value pasted into another's
    assert not moved.value.foreign
    body = token.rsplit("$", 1)[1]
    flipped = token[: -len(body)] + ("B" if body[0] == "A" else "A") + body[1:]
    with pytest.raises(SealError, match="damaged"):
        key.open(flipped, "ADMIN0/pwd")
    assert key.raw.hex() not in repr(key)


def test_a_typed_password_is_sealed_and_the_key_is_stored_at_first_need() -> None:
    box = make_box()
    change(box, "config change SYS0 /name office")
    assert box.get_var(KEY_VAR) is None  # no secret yet: no key
    change(box, "config change ADMIN0 /pwd S3cret-pw")
    # stored before anything sealed with it can be shown or written
    assert BoxKey.from_var(box.get_var(KEY_VAR)) is not None
    line = pwd_line(box)
    assert "S3cret-pw" not in line and "digest$" not in line and "/pwd enc$" in line
    box.activate()
    assert box.check_admin("admin", "S3cret-pw") and not box.check_admin("admin", "ipva")
    stored = box.secret(box.active, "ADMIN0", "pwd")
    assert stored is not None and stored.startswith("digest$admin$")


def test_a_shown_line_typed_back_works_here_and_is_refused_elsewhere() -> None:
    box = make_box()
    change(box, "config change ADMIN0 /pwd S3cret-pw")
    line = pwd_line(box)
    change(box, "config change ADMIN0 /pwd Other-pw1")
    change(box, line)  # a `config show` line copied back: the same password again
    box.activate()
    assert box.check_admin("admin", "S3cret-pw")
    other = make_box()
    with pytest.raises(ConfigError, match="encrypted by another box") as refused:
        change(other, line)
    assert "config add ADMIN0 /pwd <password>" in str(refused.value)
    assert other.check_admin("admin", "ipva")  # unchanged


def test_a_kept_password_still_belongs_to_its_user() -> None:
    box = make_box()
    change(box, "config change ADMIN0 /pwd S3cret-pw")
    with pytest.raises(ConfigError, match="give the password again"):
        change(box, "config add ADMIN0 /user root")


def test_restore_on_the_same_box_keeps_the_password_on_another_keeps_its_own() -> None:
    a, b = make_box(), make_box()
    for line in ("config change ADMIN0 /pwd A-secret1", "config change SYS0 /name from-a"):
        change(a, line)
    a.write()
    backup = a.backup_text()
    assert "A-secret1" not in backup and "digest$" not in backup and KEY_VAR not in backup
    change(a, "config change ADMIN0 /pwd Changed-1")
    a.write()
    assert a.restore_text(backup).notes == []
    assert restart(a).check_admin("admin", "A-secret1")

    change(b, "config change ADMIN0 /pwd B-secret1")
    b.write()
    restored = b.restore_text(backup)
    (note,) = restored.notes
    assert note.startswith("ADMIN0 /pwd not restored: encrypted by another box")
    assert "this box's own was kept" in note and "config add ADMIN0 /pwd <password>" in note
    b = restart(b)
    assert b.active.value("SYS0", "name") == "from-a"  # the rest of the backup is there
    assert b.check_admin("admin", "B-secret1") and not b.check_admin("admin", "A-secret1")


def test_alarm_forward_password_is_sealed_and_opens_as_typed() -> None:
    box = make_box()
    change(box, "config change ALARM0 /addr 10.0.0.9 /pwd Recv-pw1")
    line = next(x for x in box.running.lines() if x.startswith("config change ALARM0"))
    assert "Recv-pw1" not in line and "/pwd enc$" in line
    assert box.secret(box.running, "ALARM0", "pwd") == "clear$Recv-pw1"


def test_an_older_unsealed_verifier_in_vars_is_sealed_at_load() -> None:
    """A flash written by a firmware before sealing holds digest$…: it still logs in, and
    nothing shows it."""
    box = make_box()
    md5, sha = (digest_secret("admin", "Old-pw1", a) for a in ("MD5", "SHA-256"))
    assert box.flash is not None
    box.flash.vars.commit(
        {"CFG:ADMIN0": f"config change ADMIN0 /pwd digest$admin${md5}${sha}".encode()}
    )
    box = restart(box)
    assert box.check_admin("admin", "Old-pw1")
    assert "/pwd enc$" in pwd_line(box, "saved") and md5 not in box.backup_text()
    # stored again sealed, after the key: the flash no longer holds it open, and the
    # next boot has the same saved config (UP0 scfg's digest does not change)
    assert box.flash is not None
    assert (box.flash.vars.get("CFG:ADMIN0") or b"").decode() == pwd_line(box, "saved")
    again = restart(box)
    assert again.saved == box.saved and again.check_admin("admin", "Old-pw1")


def test_older_secrets_whose_reseal_fails_keep_the_stored_key() -> None:
    """The key lands, storing the objects again sealed does not (flash full …): the box
    goes on with the stored key, and its next config write stores what opens with it."""
    box = make_box()
    md5, sha = (digest_secret("admin", "Old-pw1", a) for a in ("MD5", "SHA-256"))
    assert box.flash is not None
    vars = box.flash.vars
    vars.commit({"CFG:ADMIN0": f"config change ADMIN0 /pwd digest$admin${md5}${sha}".encode()})
    flash = mount_flash(box.disks[DiskRole.FLASH], ram_bytes=64 << 20, trace=lambda s: None)
    real, calls = flash.vars.commit, []

    def commit(changes: dict[str, bytes | None]) -> None:
        calls.append(list(changes))
        if len(calls) > 1:
            raise OSError("flash full")
        real(changes)

    flash.vars.commit = commit  # type: ignore[method-assign]
    again = Box(box.platform, box.disks, flash, TraceBuffer(), services=[])
    again.load_saved()
    assert calls == [[KEY_VAR], ["CFG:ADMIN0"]]
    assert "older secrets stay as they are" in again.trace.text()
    assert again.check_admin("admin", "Old-pw1")
    flash.vars.commit = real  # type: ignore[method-assign]
    again.write()
    assert restart(again).check_admin("admin", "Old-pw1")


def test_factory_reset_drops_the_key_but_the_running_login_goes_on() -> None:
    box = make_box()
    change(box, "config change ADMIN0 /pwd S3cret-pw")
    box.write()
    box.activate()
    backup = box.backup_text()
    box.factory_reset()
    assert box.get_var(KEY_VAR) is None
    assert box.check_admin("admin", "S3cret-pw")  # until the reset
    box = restart(box)
    assert box.check_admin("admin", "ipva")
    (note,) = box.restore_text(backup).notes  # a new box now: its backups' passwords too
    assert "encrypted by another box" in note
    assert restart(box).check_admin("admin", "ipva")


def test_a_key_made_without_a_flash_is_stored_with_the_first_config_that_needs_it() -> None:
    box = make_box()
    flash, box.flash = box.flash, None
    change(box, "config change ADMIN0 /pwd S3cret-pw")  # the key stays in memory
    with pytest.raises(BoxError, match="no flash"):
        box.write()
    box.flash = flash  # formatted meanwhile (mod cmd FLASHMAN0 reset all)
    assert box.get_var(KEY_VAR) is None
    box.write()
    box.activate()
    assert restart(box).check_admin("admin", "S3cret-pw")


@pytest.mark.parametrize("mode", MODES)
def test_a_power_cut_while_the_first_password_is_set_leaves_a_box_that_logs_in(
    mode: str,
) -> None:
    """The key is committed before the config that needs it (or with it): after a cut at
    any write the box logs in with the old password or the new one, and every secret it
    holds opens."""
    blank = MemoryBlockDevice(4 << 20)
    mount_flash(blank, ram_bytes=64 << 20, trace=lambda s: None)
    image = bytes(blank.data)
    done = False
    n = 0
    while not done:
        cut = CutDevice(image, n, mode, seed=n)
        try:
            box = on_flash(cut)
            change(box, "config change ADMIN0 /pwd New-pw12")
            box.write()
            done = True
        except (PowerCut, BoxError):
            pass
        survivor = MemoryBlockDevice(0)
        survivor.data = bytearray(cut.durable if not done else cut.volatile)
        after = on_flash(survivor)
        assert after.check_admin("admin", "ipva") or after.check_admin("admin", "New-pw12"), n
        assert "does not open" not in after.trace.text(), n
        after.backup_text()  # every secret shows sealed
        n += 1
    assert n > 2  # the cuts did fall between the key's commit and the config's


def on_flash(dev: CutDevice | MemoryBlockDevice) -> Box:
    disks = {role: MemoryBlockDevice(1 << 16) for role in DiskRole}
    disks[DiskRole.FLASH] = dev  # type: ignore[assignment]
    flash = mount_flash(dev, ram_bytes=64 << 20, trace=lambda s: None)
    box = Box(FakePlatform(), disks, flash, TraceBuffer(), services=[])  # type: ignore[arg-type]
    box.load_saved()
    return box
