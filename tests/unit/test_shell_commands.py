"""The interpreter on a box with in-memory disks: commands, refusals, persistence rules."""

from __future__ import annotations

from typing import Any

import pytest

from appliance import modcmd
from appliance.box import Box, BoxError
from appliance.flash import FlashFullError, mount_flash
from appliance.formats.crashdump import Condition, DumpKind, read_dump
from appliance.hal.block import MemoryBlockDevice
from appliance.hal.memory import MemoryInfo
from appliance.hal.types import DiskRole
from appliance.service import BaseService, Service
from appliance.services import boot_services
from appliance.services.dump import CrashDumpService
from appliance.shell.interpreter import Shell
from appliance.trace import TraceBuffer


def counting(vars: Any) -> None:
    """Count VARS commits: `config write` must be exactly one."""
    real = vars.commit

    def commit(changes: Any) -> None:
        real(changes)
        vars.commits += 1

    vars.commit = commit


class FakePlatform:
    name = "test"
    hw_id = "IPVA-test"
    bootcode_build = 1601001

    def memory_info(self) -> MemoryInfo:
        return MemoryInfo(64946176)


def make_box(flash: Any = "new", services: list[Service] | None = None) -> Box:
    disks = {role: MemoryBlockDevice(1 << 16) for role in DiskRole}
    disks[DiskRole.FLASH] = MemoryBlockDevice(4 << 20)
    if flash == "new":
        flash = mount_flash(disks[DiskRole.FLASH], ram_bytes=64 << 20, trace=lambda s: None)
        flash.vars.commits = 0  # counted by the tests, see counting()
        counting(flash.vars)
    services = boot_services() if services is None else services
    box = Box(FakePlatform(), disks, flash, TraceBuffer(), services=services)  # type: ignore[arg-type]
    box.load_saved()
    return box


def restart(box: Box) -> Box:
    """What the runtime does on reset: a new box on the same disks, flash mounted again."""
    flash = mount_flash(box.disks[DiskRole.FLASH], ram_bytes=64 << 20, trace=lambda s: None)
    new = Box(box.platform, box.disks, flash, TraceBuffer(), services=box.services)
    new.load_saved()
    return new


SEED = [
    "config change IP0 ETH0 /addr 192.168.0.10 /mask 255.255.255.0",
    "config change IP0 RT0 /gateway 192.168.0.1",
    "config change DHCP0 /mode off",
]


def test_seed_sequence_then_reset_keeps_what_was_written() -> None:
    box = make_box()
    sh = Shell(box)
    for line in SEED:
        assert sh.execute(line) == ""
    assert sh.execute("config write") == "config written to flash (3 objects)"
    assert box.flash.vars.commits == 1  # one atomic commit
    assert sorted(box.flash.vars.keys()) == ["CFG:DHCP0", "CFG:IP0.ETH0", "CFG:IP0.RT0"]
    assert sh.execute("reset").startswith("reset: restarting with the saved configuration")
    assert box.restart_request == "reset"
    after = restart(box)
    assert Shell(after).execute("config show").splitlines() == SEED


def test_unwritten_changes_are_lost_written_ones_stay() -> None:
    box = make_box()
    sh = Shell(box)
    sh.execute("config change DHCP0 /mode off")
    sh.execute("config write")
    sh.execute("config change SYS0 /name lost")
    sh.execute("config rem DHCP0")
    assert "(2 unwritten changes discarded)" in sh.execute("reset")
    assert Shell(restart(box)).execute("config show") == "config change DHCP0 /mode off"


def test_config_write_deletes_keys_of_removed_objects() -> None:
    box = make_box()
    sh = Shell(box)
    sh.execute("config change IP0 RT0 /gateway 1.1.1.1")
    sh.execute("config write")
    sh.execute("config rem IP0 RT0")
    sh.execute("config write")
    assert box.flash.vars.keys() == []


def test_write_failure_keeps_the_saved_config() -> None:
    box = make_box()
    sh = Shell(box)
    sh.execute("config change DHCP0 /mode off")
    sh.execute("config write")

    def full(changes: Any) -> None:
        raise FlashFullError("flash full")

    box.flash.vars.commit = full
    sh.execute("config change DHCP0 /mode client")
    out = sh.execute("config write")
    assert out == "error: config write failed, saved config unchanged: flash full"
    assert box.saved.lines() == ["config change DHCP0 /mode off"]


def test_write_without_flash_says_what_to_do() -> None:
    sh = Shell(make_box(flash=None))
    assert sh.execute("config write").startswith("error: no flash: the flash disk (IDE 1:0)")


def test_show_changed_active_saved() -> None:
    sh = Shell(make_box())
    sh.execute("config change SYS0 /name a1")
    assert sh.execute("config show") == "config change SYS0 /name a1"
    assert sh.execute("config show active") == ""
    assert sh.execute("config show saved") == ""
    assert sh.execute("config activate") == "activated: SYS0 /name"
    assert sh.prompt == "a1> "
    assert sh.execute("config activate") == "nothing to activate"
    assert sh.execute("config show bogus").startswith("error: config show takes changed")


def test_bang_prefix_help_and_version() -> None:
    sh = Shell(make_box())
    assert sh.execute("!version") == sh.execute("version")
    assert sh.execute("version").startswith("16r1sr1 IPVA[")
    assert "Avoid it" in sh.execute("help") and "reset" in sh.execute("?")
    assert "saved     config write" in sh.execute("help config")
    assert "/gateway" in sh.execute("help IP0")
    assert "mod cmd CFG0 backup" in sh.execute("help mod")
    assert sh.execute("!") == "" and sh.execute("   ") == ""


def test_reboot_leaves_a_crash_dump() -> None:
    dump_service = CrashDumpService()
    box = make_box(services=[dump_service])
    dump_service.start(box)
    try:
        out = Shell(box).execute("!reboot")
    finally:
        dump_service.stop()
    assert "forced watchdog trap" in out and "use reset" in out
    assert box.restart_request == "reboot"
    reading = read_dump(box.disks[DiskRole.DUMP])
    assert reading.condition is Condition.VALID and reading.dump is not None
    assert reading.dump.reason == "watchdog trap (reboot command)"
    assert reading.dump.kind is DumpKind.REBOOT and not reading.dump.reported
    # the console thread's stack: reboot was typed there
    assert any(f.function == "execute" for t in reading.dump.threads for f in t.frames)


def test_mod_cmd_dump_show_and_clear() -> None:
    dump_service = CrashDumpService()
    box = make_box(services=[dump_service])
    dump_service.start(box)
    sh = Shell(box)
    try:
        assert sh.execute("mod cmd DUMP show") == "no crash dump (blank dump disk)"
        sh.execute("reboot")
        shown = sh.execute("mod cmd DUMP show")
        assert shown.startswith("crash: watchdog trap (reboot command)\nkind: reboot")
        box.disks[DiskRole.DUMP].write(20, b"\xff")
        assert sh.execute("mod cmd DUMP show").startswith("corrupt crash dump: header checksum")
        assert sh.execute("mod cmd DUMP clear") == "crash dump cleared"
        assert read_dump(box.disks[DiskRole.DUMP]).condition is Condition.NONE
        assert sh.execute("mod cmd DUMP trap").startswith("error: mod cmd DUMP trap thread|signal")
    finally:
        dump_service.stop()


class EchoService(BaseService):
    name = "echo"

    def commands(self) -> list[modcmd.Command]:
        return [modcmd.Command("TEST0", "echo", "echo args", self.echo)]

    def echo(self, box: Box, args: list[str]) -> str:
        if args == ["fail"]:
            raise modcmd.ModCmdError("refused: say something else")
        if args == ["crash"]:
            raise RuntimeError("boom")
        if args == ["disk"]:
            raise OSError(5, "Input/output error")
        return " ".join(args)


def test_mod_cmd_dispatch_and_errors() -> None:
    sh = Shell(make_box(services=[*boot_services(), EchoService()]))
    assert sh.execute("mod cmd TEST0 echo a b") == "a b"
    assert sh.execute("!mod cmd test0 ECHO x") == "x"
    assert sh.execute("mod cmd TEST0 echo fail") == "error: refused: say something else"
    assert sh.execute("mod cmd TEST0 echo disk") == (
        "error: mod cmd TEST0 echo failed: OSError: [Errno 5] Input/output error"
    )
    # a programming error is not passed off as the command's refusal: it is an internal
    # error, and the trace says where it happened
    assert sh.execute("mod cmd TEST0 echo crash").startswith(
        "error: internal error RuntimeError: boom (see the trace"
    )
    assert "shell: internal error in 'mod cmd TEST0 echo crash': RuntimeError: boom at " in (
        sh.box.trace.text()
    )
    assert sh.execute("mod cmd TEST0 nope").startswith(
        "error: TEST0 has no command 'nope': its commands are echo"
    )
    assert sh.execute("mod cmd NOPE0 x").startswith("error: no module 'NOPE0' has commands: try ")
    assert sh.execute("mod cmd TEST0") == "error: TEST0 commands: echo"
    assert sh.execute("mod cmd").startswith("error: mod cmd needs a module")
    assert sh.execute("mod foo").startswith("error: usage: mod cmd <MODULE> <cmd>")


@pytest.mark.parametrize(
    "line,message",
    [
        ("frobnicate", "error: unknown command 'frobnicate': type help for the list"),
        ('"config" show', "error: unknown command 'config'"),
        ("config", "error: config needs a verb"),
        ("config zap", "error: unknown config verb 'zap'"),
        ("config write now", "error: config write takes no arguments, got 'now'"),
        ("config activate x", "error: config activate takes no arguments"),
        ("reset now", "error: reset takes no arguments, got 'now'"),
        ("reboot x", "error: reboot takes no arguments"),
        ("help zzz", "error: no help for 'zzz'"),
        ("config change IP0 ETH0 /addr 300.1.1.1", "error: IP0 ETH0 /addr: not an IPv4 address"),
        ("ver\x00sion", "error: non-text character '\\x00' in 'ver\\x00sion'"),
        ("config \udcff", "error: non-text character '\\xff'"),
        ("mod cmd CFG0 factory-reset", "error: this erases the saved configuration: confirm"),
    ],
)
def test_every_refusal_is_one_error_line(line: str, message: str) -> None:
    box = make_box()
    out = Shell(box).execute(line)
    assert out.startswith(message)
    assert "\n" not in out
    assert box.running == box.saved and box.restart_request is None


def test_overlong_refusal_names_the_start() -> None:
    out = Shell(make_box()).refuse_overlong("config change " + "x" * 2000)
    assert out.startswith("error: input too long") and "'config change xxxxxxxxxx…'" in out


def test_internal_errors_do_not_escape(monkeypatch: pytest.MonkeyPatch) -> None:
    box = make_box()
    monkeypatch.setattr(box, "activate", lambda: 1 / 0)
    out = Shell(box).execute("config activate")
    assert out.startswith("error: internal error ZeroDivisionError")
    assert "ZeroDivisionError: division by zero at test_shell_commands.py:" in box.trace.text()


def test_backup_factory_reset_restore() -> None:
    box = make_box()
    sh = Shell(box)
    for line in [*SEED, "config change LOG0 /type syslog /addr 10.0.0.5 /class 3"]:
        sh.execute(line)
    sh.execute("config write")
    shown = sh.execute("config show")
    backup = sh.execute("mod cmd CFG0 backup") + "\n"
    assert sh.execute("mod cmd CFG0 factory-reset yes").startswith("saved configuration erased")
    assert Shell(restart(box)).execute("config show") == ""
    box.restore_text(backup)
    assert Shell(restart(box)).execute("config show") == shown


def test_restore_of_a_bad_file_changes_nothing() -> None:
    from appliance.config import RestoreError

    box = make_box()
    sh = Shell(box)
    sh.execute("config change DHCP0 /mode off")
    sh.execute("config write")
    commits = box.flash.vars.commits
    bad = "vars check - # 16r1sr1 IPVA[1], Bootcode[1], HW[x]\nconfig change SYS0 /name ok\nbad\n"
    with pytest.raises(RestoreError, match="^line 3: not a config line"):
        box.restore_text(bad)
    assert box.flash.vars.commits == commits
    assert Shell(restart(box)).execute("config show") == "config change DHCP0 /mode off"


RESTORE_WITH_ITEMS = (
    "vars check - # 16r1sr1 IPVA[1], Bootcode[1], HW[x]\n"
    "config change SYS0 /name r1\n"
    "mod cmd FLASHDIR0 add-item 7 cn=alice\n"
    "\n"
    "mod cmd FLASHDIR0 add-item 8 cn=bob\n"
    "mod cmd FLASHDIR0 add-item 9 cn=carol\n"
)


def test_restore_that_fails_on_an_item_says_what_is_stored() -> None:
    from appliance.box import PartialRestoreError
    from appliance.config import RestoreError

    box = make_box()
    real_put = box.flash.flashdir.put

    def put(item_id: int, attrs: str) -> None:
        if item_id == 8:
            raise FlashFullError("flash full: LDAP")
        real_put(item_id, attrs)

    box.flash.flashdir.put = put
    with pytest.raises(PartialRestoreError) as e:
        box.restore_text(RESTORE_WITH_ITEMS)
    assert str(e.value) == (
        "config restored; FLASHDIR items from line 5 on not written: flash full: LDAP"
    )
    assert e.value.line == 5 and not isinstance(e.value, RestoreError)  # something changed
    after = restart(box)
    assert after.saved.lines() == ["config change SYS0 /name r1"]
    assert list(after.flash.flashdir.items()) == [(7, "cn=alice")]


def test_restore_whose_config_commit_fails_writes_no_item() -> None:
    box = make_box()

    def full(changes: Any) -> None:
        raise FlashFullError("flash full")

    box.flash.vars.commit = full
    with pytest.raises(BoxError, match="^config write failed, saved config unchanged: flash"):
        box.restore_text(RESTORE_WITH_ITEMS)
    assert len(box.flash.flashdir) == 0


def test_restore_with_items_but_no_flash_names_the_first_item_line() -> None:
    from appliance.config import RestoreError

    with pytest.raises(RestoreError, match="^line 3: FLASHDIR items need the flash"):
        make_box(flash=None).restore_text(RESTORE_WITH_ITEMS)
