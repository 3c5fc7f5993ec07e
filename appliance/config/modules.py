"""The built-in config modules of the virtual hard-box.

Each `declare(...)` is the whole definition of a module: a later service adds its own module
the same way, next to its code. `needs_reset=True` marks what `config activate` cannot apply
while the box runs (addresses, ports): those take effect after `config write` and `reset`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from appliance.config.schema import Arg, Module, Sub, declare
from appliance.config.types import (
    TIME_ZONE,
    Choice,
    Flag,
    Host,
    Int,
    IPv4,
    Netmask,
    Password,
    Text,
    Url,
    password_user,
)

PORT = Int(1, 65535)
LISTEN_PORT = Int(0, 65535)  # 0: that listener is off


def _check_route(v: Mapping[str, Any]) -> str | None:
    net = ipaddress.IPv4Address(v["dest"])
    mask = ipaddress.IPv4Address(v["mask"])
    if int(net) & ~int(mask) & 0xFFFFFFFF:
        fixed = ipaddress.IPv4Address(int(net) & int(mask))
        return f"/dest {net} has bits outside /mask {mask}: use /dest {fixed}"
    return None


declare(
    Module(
        "IP0",
        "IP stack: interfaces and static routes",
        subs=(
            Sub(
                "ETH",
                "Ethernet interface",
                fixed=(0, 1),
                args=(
                    Arg("addr", IPv4(), "0.0.0.0", "static IPv4 address", needs_reset=True),
                    Arg("mask", Netmask(), "0.0.0.0", "netmask", needs_reset=True),
                    Arg("mtu", Int(576, 1500), 1500, "maximum packet size", needs_reset=True),
                ),
            ),
            Sub(
                "RT",
                "static route (/dest 0.0.0.0 /mask 0.0.0.0 is the default route)",
                max_count=16,
                check=_check_route,
                args=(
                    Arg("dest", IPv4(), "0.0.0.0", "destination network", needs_reset=True),
                    Arg("mask", Netmask(), "0.0.0.0", "destination netmask", needs_reset=True),
                    Arg(
                        "gateway",
                        IPv4(),
                        "0.0.0.0",
                        "next hop",
                        needs_reset=True,
                        required=True,
                    ),
                ),
            ),
        ),
        order=10,
    )
)

# The box as it leaves the factory (GNS3's usage notes for the real IPVA): ETH0 a DHCP client
# (DHCP0's defaults; services.network falls back to 192.168.0.1/24 when no server answers),
# ETH1 static 192.168.1.1/24. A box with no saved config starts from this; a saved config
# (even one without ETH1) replaces it whole.
FACTORY_OBJECTS: Mapping[tuple[str, str], Mapping[str, Any]] = {
    ("IP0", "ETH1"): {"addr": "192.168.1.1", "mask": "255.255.255.0"},
}

declare(
    Module(
        "DHCP0",
        "DHCP client (the box comes preconfigured as a DHCP client)",
        args=(
            Arg(
                "mode",
                Choice(("client", "off")),
                "client",
                "client: address from DHCP; off: the static IP0 config",
                needs_reset=True,
            ),
            Arg("interface", Choice(("ETH0", "ETH1")), "ETH0", "interface", needs_reset=True),
        ),
        order=20,
    )
)

declare(
    Module(
        "DNS0",
        "name servers",
        args=(
            Arg("server1", IPv4(), "0.0.0.0", "primary DNS server"),
            Arg("server2", IPv4(), "0.0.0.0", "secondary DNS server"),
            Arg(
                "domain",
                Text(253, r"[A-Za-z0-9.-]*", "a domain name"),
                "",
                "DNS search domain",
            ),
        ),
        order=30,
    )
)

declare(
    Module(
        "NTP0",
        "time: NTP servers and time zone",
        args=(
            Arg("server1", Host(), "", "NTP server"),
            Arg("server2", Host(), "", "second NTP server"),
            Arg("interval", Int(1, 1440), 60, "poll interval in minutes"),
            Arg("tz", TIME_ZONE, "UTC0", "time zone (POSIX TZ string)"),
        ),
        order=40,
    )
)

declare(
    Module(
        "HTTP0",
        "HTTP server (admin UI)",
        args=(
            Arg("port", LISTEN_PORT, 80, "HTTP port, 0: no plain HTTP"),
            Arg("https-port", LISTEN_PORT, 443, "HTTPS port, 0: no HTTPS"),
            Arg("https-only", Flag(), False, "redirect HTTP to HTTPS"),
        ),
        check=lambda v: (
            "/port and /https-port must differ"
            if v["port"] == v["https-port"] and v["port"]
            else None
        ),
        order=50,
    )
)

LOG_TYPES = ("off", "tcp", "syslog", "http", "local")


def _check_log(v: Mapping[str, Any]) -> str | None:
    if v["type"] in ("tcp", "syslog", "http") and not v["addr"]:
        return (
            f"/type {v['type']} needs /addr: give both in one line, "
            f"e.g. /type {v['type']} /addr 10.0.0.5"
        )
    return None


def _log_module(n: int, what: str) -> Module:
    return Module(
        f"LOG{n}",
        what,
        args=(
            Arg("type", Choice(LOG_TYPES), "off", "off|tcp|syslog|http|local"),
            Arg("addr", Host(), "", "server address (tcp, syslog, http)"),
            Arg("port", PORT, 514, "server port (tcp, http)"),
            Arg("class", Int(0, 7), 0, "syslog facility local0..local7 (syslog)"),
            Arg("path", Text(128, r"[\x21-\x7e]*", "a URL path"), "", "URL path (http)"),
            Arg("method", Choice(("standard", "post", "get")), "standard", "method (http)"),
            Arg("max-file-size", Int(1, 65536), 1024, "kB per LOG0.n file (local)"),
            Arg("backup-time", Int(0, 8760), 0, "hours until a new LOG0.0 (local; 0: by size)"),
        ),
        check=_check_log,
        order=60 + n,
    )


declare(_log_module(0, "log server"))
declare(_log_module(1, "log server shadow (receives the same records)"))


def _check_admin(v: Mapping[str, Any]) -> str | None:
    hashed_for = password_user(str(v["pwd"])) if v["pwd"] else None
    if hashed_for is not None and hashed_for != v["user"]:
        return (
            f"the stored password belongs to user {hashed_for}: give the password again "
            f"with the new user (config change ADMIN0 /user {v['user']} /pwd <password>)"
        )
    return None


declare(
    Module(
        "ADMIN0",
        "administrator account",
        args=(
            Arg("user", Text(32, r"[A-Za-z0-9._-]+", "a user name"), "admin", "admin user"),
            # kept as its Digest verifier, sealed with this box's key (config.secrets)
            Arg("pwd", Password(), "", "admin password (empty: the factory password ipva)"),
        ),
        check=_check_admin,
        order=80,
    )
)


declare(
    Module(
        "UP1",
        "update server client: polls a script of console commands",
        args=(
            Arg(
                "url",
                Url(),
                "",
                "script URL; ending in / gets update-ipva.htm; #m = MAC, #h = hardware id",
            ),
            Arg("poll", Int(0, 10080), 60, "minutes between polls (0: once after each boot)"),
            Arg("no-dhcp", Flag(), False, "the URL was set by an update server: keep it"),
            Arg(
                "provision",
                Int(0, 10080),
                0,
                "being provisioned (set by mod cmd UP1 provision <min>; 0: not)",
            ),
        ),
        order=85,
    )
)

declare(
    Module(
        "SYS0",
        "system",
        args=(Arg("name", Text(32, r"[A-Za-z0-9._-]*", "a name"), "", "box name (prompt)"),),
        order=90,
    )
)

declare(
    Module(
        "TIME0",
        "timekeeping: what to do when the hardware perf counter is missing or stopped",
        args=(
            Arg(
                "perfcounter",
                Choice(("auto", "strict", "fallback")),
                "auto",
                "strict: stop the boot (as the box); fallback: warn and keep time from the "
                "kernel's clocksource; auto: strict on VMware, fallback elsewhere",
                needs_reset=True,
            ),
        ),
        order=45,
    )
)


def _check_alarm(v: Mapping[str, Any]) -> str | None:
    if v["method"] == "syslog" and v["addr2"] and not v["addr"]:
        return "/addr2 is the second SYSLOG server: give /addr first"
    hashed_for = password_user(str(v["pwd"])) if v["pwd"] else None
    if hashed_for is not None and hashed_for != v["user"]:
        return f"the stored /pwd belongs to user {hashed_for}: give /user and /pwd together"
    return None


CATCH_CODES = Text(23, r"([0-9]{1,5}(,[0-9]{1,5}){0,3})?", "up to 4 event codes like 40,41")

declare(
    Module(
        "ALARM0",
        "alarms and events: forward server, incoming entries, local queues, catch trace",
        args=(
            Arg("addr", Host(), "", "forward server (empty: keep them here only)"),
            Arg("port", LISTEN_PORT, 0, "its port (0: 80, syslog 514)"),
            Arg(
                "method",
                Choice(("standard", "post", "get", "syslog")),
                "standard",
                "standard (to another box) | post | get (to /path) | syslog (XML records)",
            ),
            Arg("path", Text(128, r"[\x21-\x7e]*", "a URL path"), "", "URL path (post, get)"),
            Arg("class", Int(0, 7), 0, "syslog facility local0..local7 (syslog)"),
            Arg("addr2", Host(), "", "second SYSLOG server (syslog)"),
            Arg("user", Text(32, r"[A-Za-z0-9._-]+", "a user name"), "admin", "server login"),
            # the receiver's realm (IPVA-<its salt>) is not known here, so the password is
            # kept as typed, sealed with this box's key (config.secrets); an older value,
            # the receiver's Digest secrets (digest$user[$salt]$…), is still taken
            Arg(
                "pwd",
                Password(keep_clear=True),
                "",
                "password at the server (kept encrypted; empty: none)",
            ),
            Arg("auth", Flag(), False, "incoming alarms/events and log lines need the login"),
            Arg("mem", Int(1, 1000), 100, "memory queue entries"),
            Arg("flash", Int(0, 200), 50, "persistent queue entries (alarms and faults)"),
            Arg("catch", CATCH_CODES, "", "event codes that stop the trace (up to 4)"),
        ),
        check=_check_alarm,
        order=70,
    )
)

EMAIL = Text(128, r"([^\s@]+@[^\s@]+)?", "an e-mail address like ops@example.com")
NAME = Text(64, r"[\x20-\x7e]*", "a name")

declare(
    Module(
        "MAIL0",
        "alarms and faults as e-mail (SMTP; STARTTLS when the server offers it)",
        args=(
            Arg("from", EMAIL, "", "sender address"),
            Arg("from-name", NAME, "", "sender's name"),
            Arg("to", EMAIL, "", "recipient address (empty: no mail)"),
            Arg("to-name", NAME, "", "recipient's name"),
            Arg("server", Host(), "", "SMTP server"),
            Arg("port", PORT, 25, "SMTP port"),
            Arg("user", Text(64, r"[\x21-\x7e]*", "a user name"), "", "SMTP user"),
            # SMTP AUTH needs the password itself: kept as typed, sealed (config.secrets)
            Arg(
                "pwd", Password(keep_clear=True), "", "SMTP password (kept encrypted; empty: none)"
            ),
            Arg("rate", Int(1, 60), 10, "at most this many mails an hour"),
            Arg("tls", Choice(("verify", "any")), "verify", "STARTTLS: check the certificate"),
        ),
        check=lambda v: (
            "/to needs /from and /server too"
            if v["to"] and not (v["from"] and v["server"])
            else None
        ),
        order=72,
    )
)
