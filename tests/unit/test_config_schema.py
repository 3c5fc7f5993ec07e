"""The config model: schema round-trips, every refusal, activation, backup and restore."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.config import (
    MODULES,
    BackupHeader,
    Config,
    ConfigError,
    GrammarError,
    RestoreError,
    activate,
    make_backup,
    parse_backup,
    parse_line,
    quote,
    split_words,
)
from appliance.config.schema import Arg, Module, Sub, declare
from appliance.config.secrets import BoxKey, seal_secrets
from appliance.config.types import Flag, Int, Text

HEADER = BackupHeader("16r1sr1", 1601001, 1601001, "IPVA-hosted")


def objects_of(module: Module) -> list[tuple[str, Sub | None]]:
    out: list[tuple[str, Sub | None]] = [("", None)] if module.args else []
    for sub in module.subs:
        out.append((f"{sub.prefix}{(sub.fixed or (sub.max_count - 1,))[-1]}", sub))
    return out


def required_words(decls: tuple[Arg, ...], skip: str) -> str:
    return "".join(
        f" /{a.name} {quote(a.type.format(a.type.samples()[0]))}"
        for a in decls
        if a.required and a.name != skip
    )


def cases() -> list[tuple[str, str, Arg, object]]:
    out = []
    for module in MODULES.values():
        for obj, sub in objects_of(module):
            for arg in sub.args if sub else module.args:
                for value in arg.type.samples():
                    out.append((module.name, obj, arg, value))
    return out


# what an object needs beside one argument so that its cross-argument check passes
COMPANIONS = {
    ("RT", "dest"): " /mask 255.255.255.255",
    ("LOG0", "type"): " /addr 10.0.0.9",
    ("LOG1", "type"): " /addr 10.0.0.9",
}


def line_for(module: str, obj: str, arg: Arg, value: object) -> str:
    decl = MODULES[module]
    decls = next(s for s in decl.subs if obj.startswith(s.prefix)).args if obj else decl.args
    formatted = arg.type.format(value)
    word = (
        f"/{arg.name}"
        if isinstance(arg.type, Flag) and value
        else f"/{arg.name} {quote(formatted)}"
    )
    extra = COMPANIONS.get((obj.rstrip("0123456789") or module, arg.name), "")
    head = f"config change {module} {obj}".rstrip()
    return f"{head} {word}{required_words(decls, arg.name)}{extra}"


def case_id(x: object) -> str:
    """A test id that is the same in every process (pytest-xdist's workers must collect the
    same ids): a salted password value is random, so its id is its kind."""
    if isinstance(x, Arg):
        return x.name
    return "digest-salted" if str(x).startswith(("digest$", "enc$")) else str(x)


@pytest.mark.parametrize("module,obj,arg,value", cases(), ids=case_id)
def test_every_argument_round_trips_through_show_and_parsing(
    module: str, obj: str, arg: Arg, value: object
) -> None:
    config = parse_line(Config.factory(), line_for(module, obj, arg, value))
    assert config.value(module, arg.name, obj) == value
    again = Config.factory()
    for shown in config.lines():
        again = parse_line(again, shown)
    assert again == config
    if value == arg.default:
        assert arg.name not in config.objects.get((module, obj), {})  # non-defaults only
    else:
        assert f"/{arg.name}" in " ".join(config.lines())


@given(st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40))
def test_quote_round_trips_any_printable_value(value: str) -> None:
    words = split_words("x " + quote(value))
    assert words[1].text == value


def test_seed_lines_and_show_order() -> None:
    c = Config.factory()
    for line in (
        "config change DHCP0 /mode off",
        "config change IP0 RT0 /gateway 192.168.0.1",
        "config change IP0 ETH0 /addr 192.168.0.10 /mask 255.255.255.0",
    ):
        c = parse_line(c, line)
    assert c.lines() == [
        "config change IP0 ETH0 /addr 192.168.0.10 /mask 255.255.255.0",
        "config change IP0 RT0 /gateway 192.168.0.1",
        "config change DHCP0 /mode off",
    ]


def test_change_sets_the_line_and_default_values_vanish() -> None:
    c = parse_line(Config.factory(), "config change IP0 ETH0 /addr 10.0.0.1 /mtu 1400")
    c = parse_line(c, "config change ip0 eth0 /MASK 255.0.0.0 /addr 10.0.0.1")
    # the line is what the last change gave: /mtu, not named again, is back to its default
    assert c.lines() == ["config change IP0 ETH0 /addr 10.0.0.1 /mask 255.0.0.0"]
    c = parse_line(c, "config change IP0 ETH0 /addr 0.0.0.0 /mask 0.0.0.0")
    assert c.lines() == []


def test_add_adds_or_replaces_options_of_an_existing_line() -> None:
    c = parse_line(Config.factory(), "config change IP0 ETH0 /addr 10.0.0.1 /mtu 1400")
    c = parse_line(c, "config add IP0 ETH0 /mask 255.0.0.0 /mtu 1300")
    assert c.lines() == ["config change IP0 ETH0 /addr 10.0.0.1 /mask 255.0.0.0 /mtu 1300"]
    c = parse_line(c, "config add DHCP0 /mode off")
    c = parse_line(c, "config add IP0 RT2 /gateway 10.0.0.9")  # a numbered one by its number
    c = parse_line(c, "config add IP0 RT2 /dest 10.1.0.0 /mask 255.255.0.0")
    assert "config change IP0 RT2 /dest 10.1.0.0 /mask 255.255.0.0 /gateway 10.0.0.9" in c.lines()
    assert "config change DHCP0 /mode off" in c.lines()


def test_rem_removes_the_named_options_only() -> None:
    c = parse_line(Config.factory(), "config change IP0 ETH0 /addr 10.0.0.1 /mtu 1400")
    assert parse_line(c, "config rem IP0 ETH0 /mtu").lines() == [
        "config change IP0 ETH0 /addr 10.0.0.1"
    ]


def test_the_update_servers_first_answer_sets_up1() -> None:
    """innovaphone's update server (update.php rewriteUrl) answers a first poll with these."""
    c = parse_line(Config.factory(), "config change UP1 /url http://10.0.0.5/up/ /poll 60")
    url = (
        "http%3A%2F%2F127.0.0.1%3A8080%2Fupdate.php%3Fpolling%3D5%26phase%3Dupdate"
        "%26type%3D%23t%26sn%3D%23m%26hwid%3D%23h%26ip%3D%23i"
    )
    for line in ("config add UP1 /poll 1", f"config add UP1 /url {url}",
                 "config add UP1 /no-dhcp"):  # fmt: skip
        c = parse_line(c, line)
    plain = "http://127.0.0.1:8080/update.php?polling=5&phase=update&type=#t&sn=#m&hwid=#h&ip=#i"
    assert c.value("UP1", "url") == plain and c.value("UP1", "poll") == 1
    assert c.value("UP1", "no-dhcp") is True
    assert c.lines() == [f"config change UP1 /url {plain} /poll 1 /no-dhcp"]
    # turning fast polling off again
    c = parse_line(parse_line(c, "config add UP1 /provision 5"), "config rem UP1 /provision")
    assert c.value("UP1", "provision") == 0


@pytest.mark.parametrize(
    "typed,arg,value",
    [
        ("SYS0 /name a%2Db", "name", "a-b"),
        ("LOG0 /type http /addr h.example /path %2Flog%2Done", "path", "/log-one"),
        ("LOG0 /type http /addr h.example /path /a%2520b", "path", "/a%20b"),  # a literal %20
        ("LOG0 /type http /addr h.example /path %2Fx%23y%3Az", "path", "/x#y:z"),
    ],
)
def test_values_are_url_decoded_and_read_back_the_same(typed: str, arg: str, value: str) -> None:
    c = parse_line(Config.factory(), f"config change {typed}")
    assert c.value(typed.split()[0], arg) == value
    again = Config.factory()
    for shown in c.lines():
        again = parse_line(again, shown)
    assert again == c
    assert parse_backup(make_backup(c, HEADER)).config == c


def test_add_picks_the_next_free_number_and_rem_removes() -> None:
    c = parse_line(Config.factory(), "config change IP0 RT0 /gateway 10.0.0.1")
    c = parse_line(c, "config add IP0 RT /gateway 10.0.0.2")
    assert "config change IP0 RT1 /gateway 10.0.0.2" in c.lines()
    c = parse_line(c, "config rem IP0 RT0")
    assert c.lines() == ["config change IP0 RT1 /gateway 10.0.0.2"]
    c = parse_line(c, "config add IP0 RT /gateway 10.0.0.3")
    assert c.exists("IP0", "RT0")


def test_rem_resets_arguments_and_whole_modules() -> None:
    c = parse_line(Config.factory(), "config change LOG0 /type syslog /addr 1.2.3.4 /class 5")
    assert parse_line(c, "config rem LOG0 /class").lines() == [
        "config change LOG0 /type syslog /addr 1.2.3.4"
    ]
    assert parse_line(c, "config rem LOG0").lines() == []


def test_flags_values_and_slash_values() -> None:
    c = parse_line(Config.factory(), "config change HTTP0 /https-only /port 8080")
    assert c.value("HTTP0", "https-only") is True
    assert parse_line(c, "config add HTTP0 /https-only off").lines() == [
        "config change HTTP0 /port 8080"
    ]
    c = parse_line(Config.factory(), "config change LOG0 /type http /addr h.example /path /log")
    assert c.value("LOG0", "path") == "/log"


def test_password_is_stored_sealed_and_round_trips() -> None:
    """Typed, a password becomes its Digest verifier, which only the box's key turns into
    something showable (config/secrets.py); the sealed line reads back as it is."""
    c = parse_line(Config.factory(), "config change ADMIN0 /pwd s3cret")
    with pytest.raises(ValueError, match="not sealed"):
        c.lines()  # a path that forgot to seal shows nothing
    key = BoxKey.make()
    sealed, unopened = seal_secrets(c, lambda: key)
    (line,) = sealed.lines()
    assert not unopened and "s3cret" not in line and "digest$" not in line
    assert re.fullmatch(r"config change ADMIN0 /pwd enc\$[0-9a-f]{8}\$[A-Za-z0-9_-]+", line)
    again = parse_line(Config.factory(), line)
    assert again == sealed and seal_secrets(again, lambda: key) == (sealed, [])


BAD = [
    ("config change FOO /x 1", "unknown module 'FOO': modules are IP0"),
    ("config change IP0 /addr 1.2.3.4", "name one of its objects (ETH0, ETH1, RT0..RT15)"),
    ("config change IP0 ETH2 /addr 1.2.3.4", "IP0 has no object 'ETH2': it has ETH0, ETH1"),
    ("config change IP0 RT16 /gateway 1.2.3.4", "no object 'RT16'"),
    ("config change IP0 RT /gateway 1.2.3.4", "give the number of the RT object"),
    ("config change IP0 XY0 /a 1", "IP0 has no object 'XY0'"),
    ("config change IP0 ETH0 /adr 1.2.3.4", "has no argument '/adr': its arguments are /addr"),
    ("config change IP0 ETH0 /addr", "IP0 ETH0 /addr needs a value"),
    ("config change IP0 ETH0 /addr 1.2.3", "not an IPv4 address (like 192.168.0.10): '1.2.3'"),
    ("config change IP0 ETH0 /mask 255.0.255.0", "not a netmask"),
    ("config change IP0 ETH0 /mtu 99999", "99999 is out of range 576..1500"),
    ("config change IP0 ETH0 /mtu x1", "not a number (576..1500): 'x1'"),
    ("config change IP0 ETH0 /addr 1.2.3.4 /addr 1.2.3.5", "/addr given twice"),
    ("config change IP0 ETH0 1.2.3.4", "expected /<arg>, got '1.2.3.4'"),
    ("config change IP0 ETH0 / 1", "'/' without an argument name"),
    ("config change IP0 ETH0", "nothing to change"),
    ("config change DHCP0 /mode maybe", "'maybe' is not one of: client, off"),
    ("config change HTTP0 /https-only perhaps", "'perhaps' is not on or off"),
    ("config change HTTP0 /port 443", "/port and /https-port must differ"),
    ("config change LOG0 /type tcp", "/type tcp needs /addr"),
    ("config change LOG0 /class 8", "8 is out of range 0..7"),
    ("config change NTP0 /tz Mars", "not a POSIX time zone"),
    ("config change NTP0 /server1 -bad-", "not an IPv4 address or host name"),
    ("config change SYS0 /name " + "n" * 40, "too long (40 characters, at most 32)"),
    ("config change ADMIN0 /pwd", "needs a value"),
    ("config change IP0 RT3 /dest 10.0.0.1 /mask 255.0.0.0 /gateway 1.1.1.1", "use /dest 10.0.0.0"),
    ("config add IP0 RT1 /dest 10.0.0.0", "IP0 RT1 needs /gateway"),
    ("config add IP0 ETH0 /adr 1.2.3.4", "has no argument '/adr'"),
    ("config change SYS0 /name a%20b", "'a b' is not a name"),
    ("config rem IP0 RT5", "IP0 RT5 does not exist"),
    ("config rem DHCP0 /mode off", "config rem takes argument names only"),
    ("config change", "config change needs a module"),
    ("config change /addr 1", "expected a module name, got '/addr'"),
    ('config change LOG0 /path "/x', "unterminated quote"),
    ('config change LOG0 /path a"b', "quote inside the word"),
    ('config change LOG0 /path "a"b', "text after closing quote"),
    ("config change LOG0 /path a\x01b", "non-text character '\\x01' in 'a\\x01b'"),
    ("config change LOG0 /path " + "p" * 300, "word too long (300 characters"),
    ("config frob", "expected config change|add|rem"),
]


@pytest.mark.parametrize("line,message", BAD, ids=[b[0][:40] for b in BAD])
def test_refusals_name_the_problem_and_change_nothing(line: str, message: str) -> None:
    before = parse_line(Config.factory(), "config change IP0 RT0 /gateway 10.0.0.1")
    with pytest.raises((ConfigError, GrammarError)) as e:
        parse_line(before, line)
    assert message in str(e.value)
    assert before.lines() == ["config change IP0 RT0 /gateway 10.0.0.1"]


def test_add_when_all_numbers_are_used() -> None:
    c = Config.factory()
    for i in range(16):
        c = parse_line(c, f"config add IP0 RT /gateway 10.0.0.{i + 1}")
    with pytest.raises(ConfigError, match="all 16 IP0 RT objects are in use: config rem one"):
        parse_line(c, "config add IP0 RT /gateway 10.0.1.1")


def test_activate_applies_live_arguments_and_lists_the_rest() -> None:
    running = parse_line(Config.factory(), "config change SYS0 /name pbx")
    running = parse_line(running, "config change IP0 ETH0 /addr 10.0.0.2")
    running = parse_line(running, "config change IP0 RT0 /gateway 10.0.0.1")
    result = activate(running, Config.factory())
    assert result.applied == ["SYS0 /name"]
    assert result.pending == ["IP0 ETH0 /addr", "IP0 RT0 (added)"]
    assert result.active.lines() == ["config change SYS0 /name pbx"]
    assert activate(running, result.active).applied == []


def test_a_module_declares_itself_in_one_place() -> None:
    declare(
        Module(
            "TEST9",
            "test module",
            args=(Arg("level", Int(0, 9), 0, "a level"), Arg("tag", Text(8), "", "a tag")),
            order=999,
        )
    )
    try:
        c = parse_line(Config.factory(), "config change TEST9 /level 3 /tag x")
        assert c.lines()[-1] == "config change TEST9 /level 3 /tag x"
    finally:
        del MODULES["TEST9"]


# --- backup file ----------------------------------------------------------------------


def sample_config() -> Config:
    c = Config.factory()
    for line in (
        "config change IP0 ETH0 /addr 192.168.0.10 /mask 255.255.255.0",
        "config change IP0 RT0 /gateway 192.168.0.1",
        "config change DHCP0 /mode off",
        'config change NTP0 /tz "CET-1CEST,M3.5.0,M10.5.0/3"',
    ):
        c = parse_line(c, line)
    return c


def test_backup_format_and_round_trip() -> None:
    text = make_backup(sample_config(), HEADER)
    first, *rest = text.splitlines()
    assert first.startswith("vars check ")
    assert first.endswith(" # 16r1sr1 IPVA[1601001], Bootcode[1601001], HW[IPVA-hosted]")
    assert rest == sample_config().lines()
    backup = parse_backup(text)
    assert backup.config == sample_config()
    assert backup.header == HEADER


def test_restore_accepts_crlf_comments_and_a_skipped_digest() -> None:
    body = "\n".join(sample_config().lines())
    text = f"vars check - # 16r1sr1 IPVA[1], Bootcode[1], HW[x]\r\n# comment\r\n\r\n{body}"
    assert parse_backup(text.replace("\n", "\r\n")).config == sample_config()


@pytest.mark.parametrize(
    "mutate,line,reason",
    [
        (lambda t: "", 1, "empty file"),
        (lambda t: "hello\n" + t, 1, "not a backup file"),
        (lambda t: t.replace("/mode off", "/mode on"), 1, "digest does not match"),
        (lambda t: t + "config change DHCP0 /mode on\n", 1, "digest does not match"),
        (lambda t: _undigest(t) + "config change DHCP0 /mode on\n", 6, "'on' is not one of"),
        (lambda t: _undigest(t).replace("IP0 RT0", "IP0 RTX"), 3, "no object 'RTX'"),
        (lambda t: _undigest(t) + "reset\n", 6, "not a config line"),
        (lambda t: _undigest(t) + "mod cmd FLASHDIR0 add-item x\n", 6, "mod cmd lines"),
        (lambda t: _undigest(t) + "config change SYS0 /name \u00e4\n", 6, "non-ASCII"),
    ],
)
def test_restore_reports_line_and_reason(mutate, line: int, reason: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(RestoreError) as e:
        parse_backup(mutate(make_backup(sample_config(), HEADER)))
    assert e.value.line == line
    assert reason in str(e.value)
    assert str(e.value).startswith(f"line {line}: ")


def _undigest(text: str) -> str:
    first, rest = text.split("\n", 1)
    return "vars check - #" + first.split("#", 1)[1] + "\n" + rest


# --- a real box's backup ---------------------------------------------------------------

# shaped like an IP811's backup as the update server stores it: the firmware's own checksum
# and header, modules the IPVA lacks, update variables, a FLASHDIR item
REAL_BOX = (
    "vars check 5f2a0c17e3b64d89 # 13r3 sr12 IP811[13.6518], Bootcode[13.A206], Hardware[103]"
    " 1/2 # IP811 #\r\n"
    "config change IP0 ETH0 /addr 172.16.4.20 /mask 255.255.255.0\r\n"
    "config change PBX0 /name 4711 /pwd x\r\n"
    "config change GW1 /name SIP-trunk\r\n"
    "config change UP1 /url http%3A%2F%2F172.16.4.1%2Fupdate.php%3Fsn%3D%23m /poll 15\r\n"
    "vars create UPDATE/CHECK p d41d8cd98f00b204e9800998ecf8427e\r\n"
    "vars create UPDATE/BLOB pb 00ff10\r\n"
    "mod cmd GW1 trace on\r\n"
    "config change DHCP0 /mode off\r\n"
)


def test_a_real_boxs_backup_restores_what_the_ipva_knows_and_lists_the_rest() -> None:
    backup = parse_backup(REAL_BOX)
    assert backup.header.device == "IP811" and backup.header.version.startswith("13r3 sr12")
    assert backup.skipped == [(3, "PBX0"), (4, "GW1"), (8, "GW1")]
    assert backup.config.value("IP0", "addr", "ETH0") == "172.16.4.20"
    assert backup.config.value("UP1", "url") == "http://172.16.4.1/update.php?sn=#m"
    assert backup.config.value("DHCP0", "mode") == "off"
    assert backup.variables == {
        "UPDATE/CHECK": b"d41d8cd98f00b204e9800998ecf8427e",
        "UPDATE/BLOB": b"\x00\xff\x10",
    }


@pytest.mark.parametrize(
    "line,at,reason",
    [
        ("config change IP0 ETH0 /addr 300.1.1.1", 10, "not an IPv4 address"),
        ("vars create UPDATE/X pb 0g", 10, "flag b takes the value in hex"),
        ("vars del UPDATE/CHECK", 10, "vars create lines only"),
        ("vars create CFG:IP0.ETH0 p x", 10, "the box's own keys"),
    ],
)
def test_a_real_error_in_a_real_boxs_backup_refuses_it(line: str, at: int, reason: str) -> None:
    with pytest.raises(RestoreError) as e:
        parse_backup(REAL_BOX + line + "\r\n")
    assert e.value.line == at and reason in str(e.value)


def test_variables_round_trip_through_a_backup() -> None:
    from appliance.config.varlines import create_line

    values = {"UPDATE/PROT": b"1601002", "A/B": b"with blank", "E": b"", "X/Y": b"\x00\x01"}
    lines = [create_line(k, v) for k, v in values.items()]
    assert lines[:2] == [
        "vars create UPDATE/PROT p 1601002",
        "vars create A/B pb 7769746820626c616e6b",
    ]
    assert parse_backup(make_backup(sample_config(), HEADER, lines)).variables == values
