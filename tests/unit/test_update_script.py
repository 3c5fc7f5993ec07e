"""The update-server client's pure rules: script URL, allowed hours, finals, script runs."""

from __future__ import annotations

import pytest

from appliance.services.update.script import (
    Final,
    Identity,
    Prot,
    Scfg,
    ScriptError,
    firmware_url,
    may_poll,
    parse_final,
    parse_hours,
    parse_prot,
    parse_scfg,
    run_script,
    script_url,
)

MAC = "00:90:33:12:34:56"


@pytest.mark.parametrize(
    ("url", "want"),
    [
        ("http://10.0.2.2:8000/up/", "http://10.0.2.2:8000/up/update-ipva.htm"),
        ("http://srv/up/#m.htm", "http://srv/up/009033123456.htm"),
        ("https://srv/cfg?hw=#h&sn=#m", "https://srv/cfg?hw=IPVA-vm&sn=009033123456"),
        ("http://srv/#h/", "http://srv/IPVA-vm/update-ipva.htm"),
    ],
)
def test_script_url(url: str, want: str) -> None:
    assert script_url(url, Identity("IPVA", MAC, "IPVA-vm")) == want


def test_the_update_servers_url_is_filled_and_the_state_appended() -> None:
    """update.php's rewritten URL; PROT/CHECK are the args config.xml lists without value."""
    url = "http://127.0.0.1:8080/update.php?polling=5&phase=update&type=#t&sn=#m&hwid=#h&ip=#i"
    me = Identity("IPVA", MAC, "IPVA vm", "10.0.2.15")
    assert script_url(url, me, {"PROT": "1601001", "CHECK": "d41d"}) == (
        "http://127.0.0.1:8080/update.php?polling=5&phase=update&type=ipva&sn=009033123456"
        "&hwid=IPVA%20vm&ip=10.0.2.15&PROT=1601001&CHECK=d41d"
    )
    assert script_url("http://s/u.htm", me, {"PROT": "1"}) == "http://s/u.htm?PROT=1"


def test_prot_and_scfg_arguments() -> None:
    assert parse_prot(["http://s/fw/1601002/", "ser", "1601002"]) == Prot(
        "http://s/fw/1601002/", Final.SER, "1601002"
    )
    assert parse_prot(["http://s/ipva.bin", "ireset", "04-56"]) == Prot(
        "http://s/ipva.bin", Final.IRESET, "04-56"
    )
    assert parse_prot(["http://s/ipva.bin"]) == Prot("http://s/ipva.bin", Final.SER, None)
    assert firmware_url("http://s/fw/1601002/", "IPVA") == "http://s/fw/1601002/ipva.bin"
    for bad in ([], ["u", "ser"], ["u", "later", "1"], ["u", "reset", "1", "x"]):
        with pytest.raises(ScriptError):
            parse_prot(bad)
    assert parse_scfg(["http://s/update.php?mode=backup&hwid=#h&sn=#m"]) == Scfg(
        "http://s/update.php?mode=backup&hwid=#h&sn=#m", None, None
    )
    assert parse_scfg(["http://s/u?mode=vardump", "ser", "nop", "/always", "vars%20read%20V"]) == (
        Scfg("http://s/u?mode=vardump", "nop", "vars read V")
    )
    for bad in ([], ["u", "ser"], ["u", "/always"], ["u", "x"]):
        with pytest.raises(ScriptError):
            parse_scfg(bad)


def test_hours() -> None:
    allowed = parse_hours("12,22,23,0,1")
    assert allowed == {0, 1, 12, 22, 23}
    assert may_poll(23, allowed) and not may_poll(13, allowed) and may_poll(13, None)
    for bad in ("24", "1,x", "", "-1"):
        with pytest.raises(ScriptError, match="hour|at least one"):
            parse_hours(bad)


def test_finals() -> None:
    assert parse_final("IRESETN") is Final.IRESETN
    with pytest.raises(ScriptError, match="unknown final 'now': one of reset|ireset"):
        parse_final("now")
    assert Final.RESET.restarts(changed=False) and Final.RESET.restarts(changed=True)
    assert not Final.RESETN.restarts(changed=False) and Final.IRESETN.restarts(changed=True)
    assert Final.IRESET.when_idle and not Final.RESETN.when_idle
    assert not Final.SER.restarts(changed=True)


def test_script_runs_every_line_through_the_interpreter() -> None:
    seen: list[str] = []

    def execute(line: str) -> str:
        seen.append(line)
        return "error: no such module" if "BOGUS" in line else ""

    script = [
        "# fleet config, version 3",
        "mod cmd UP1 check ireset 3",
        "",
        "config change SYS0 /name branch-7",
        "mod cmd BOGUS x",
        "config write",
    ]
    run = run_script(script, execute, done_serial="2")
    assert seen == ["config change SYS0 /name branch-7", "mod cmd BOGUS x", "config write"]
    assert run.check == (Final.IRESET, "3") and run.skipped_at is None
    assert run.errors == [("mod cmd BOGUS x", "error: no such module")]


def test_script_with_a_done_serial_stops_at_the_check() -> None:
    seen: list[str] = []
    script = ["config change SYS0 /name a", "mod cmd UP1 check reset 3", "config write"]
    run = run_script(script, lambda line: seen.append(line) or "", done_serial="3")
    assert seen == ["config change SYS0 /name a"]  # lines before the check still run
    assert run.skipped_at == 2 and run.check is None


def test_a_malformed_check_line_is_an_error_not_a_crash() -> None:
    run = run_script(["mod cmd UP1 check reset", "mod cmd UP1 check soon 4"], lambda _l: "", None)
    assert [a for _l, a in run.lines] == [
        "error: mod cmd UP1 check <final> <serial>: two arguments",
        "error: unknown final 'soon': one of reset|ireset|resetn|iresetn|ser",
    ]
