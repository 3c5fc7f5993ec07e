"""Configuration/IP: the form's fields from the config model, and a submitted form as config
requests.

The page reads the running config's values (`Config.value`), not `config show` text, and a
submitted form becomes one list of `config change|add|rem` requests (`Op`s) that the box applies
as one job on its owner (`AdminBox.apply_changes`): checked together on a copy of the running
config, all taken or none, then activated, with no other line in between.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

from appliance.config import Config, Op, parse_op, split_words

PORTS = ("ETH0", "ETH1")
NO_ADDR = "0.0.0.0"  # the schema's "not set" for an address


def _addr(config: Config, module: str, arg: str, sub: str = "") -> str:
    value = str(config.value(module, arg, sub))
    return "" if value == NO_ADDR else value


def default_route(config: Config) -> str | None:
    """The sub (RT0 …) of the default route (/dest 0.0.0.0 /mask 0.0.0.0), if there is one."""
    for module, sub in sorted(config.objects):
        if module == "IP0" and sub.startswith("RT") and not _addr(config, "IP0", "dest", sub):
            if not _addr(config, "IP0", "mask", sub):
                return sub
    return None


def ip_values(config: Config) -> dict[str, str]:
    """The form's fields: what the box runs with after the next activate (empty: not set)."""
    values = {
        "dhcp": str(config.value("DHCP0", "mode")),
        "dhcp_if": str(config.value("DHCP0", "interface")),
        "dns1": _addr(config, "DNS0", "server1"),
        "dns2": _addr(config, "DNS0", "server2"),
    }
    for port in PORTS:
        values[f"{port.lower()}_addr"] = _addr(config, "IP0", "addr", port)
        values[f"{port.lower()}_mask"] = _addr(config, "IP0", "mask", port)
    route = default_route(config)
    values["gateway"] = _addr(config, "IP0", "gateway", route) if route else ""
    return values


def _op(verb: str, words: str) -> Op:
    # the form's values are checked IPv4 addresses and fixed choices: nothing to quote
    return parse_op(verb, split_words(words))


def ip_changes(config: Config, form: Mapping[str, str]) -> tuple[list[Op], list[str]]:
    """The requests a submitted form stands for against `config`, or what is wrong with it."""
    now = ip_values(config)
    ops: list[Op] = []
    errors: list[str] = []

    def field(name: str, what: str) -> str:
        value = form.get(name, "").strip()
        if value:
            try:
                ipaddress.IPv4Address(value)
            except ValueError:
                errors.append(f"{what}: {value!r} is not an IPv4 address like 192.168.0.10")
        return value

    dhcp = form.get("dhcp", "client")
    if dhcp not in ("client", "off"):
        errors.append("DHCP: choose client or off")
    dhcp_if = form.get("dhcp_if", "ETH0")
    if dhcp_if not in PORTS:
        errors.append("DHCP interface: ETH0 or ETH1")
    for port in PORTS:
        addr = field(f"{port.lower()}_addr", f"{port} address")
        mask = field(f"{port.lower()}_mask", f"{port} mask")
        if addr and not mask:
            errors.append(f"{port}: give a mask with the address (e.g. 255.255.255.0)")
        if addr and mask:
            # add: the port's other arguments (/mtu) stay as they are
            ops.append(_op("add", f"IP0 {port} /addr {addr} /mask {mask}"))
        elif not addr and (now[f"{port.lower()}_addr"] or now[f"{port.lower()}_mask"]):
            ops.append(_op("rem", f"IP0 {port} /addr /mask"))
    gateway = field("gateway", "Gateway")
    route = default_route(config)
    if gateway:
        sub = route or "RT0"
        ops.append(_op("change", f"IP0 {sub} /dest 0.0.0.0 /mask 0.0.0.0 /gateway {gateway}"))
    elif route:
        ops.append(_op("rem", f"IP0 {route}"))
    dns = [field("dns1", "DNS server 1"), field("dns2", "DNS server 2")]
    if any(dns) or now["dns1"] or now["dns2"]:
        ops.append(_op("add", f"DNS0 /server1 {dns[0] or NO_ADDR} /server2 {dns[1] or NO_ADDR}"))
    if dhcp == "off":
        ops.append(_op("change", "DHCP0 /mode off"))
    elif dhcp_if in PORTS:
        ops.append(_op("change", f"DHCP0 /mode client /interface {dhcp_if}"))
    return (ops, errors) if not errors else ([], errors)
