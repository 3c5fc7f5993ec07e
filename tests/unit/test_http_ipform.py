"""Configuration/IP's form against the config model (appliance/services/http/ipform.py)."""

from __future__ import annotations

from appliance.config import Config, apply_op, parse_line
from appliance.services.http.ipform import default_route, ip_changes, ip_values


def config(*lines: str) -> Config:
    c = Config.factory()
    for line in lines:
        c = parse_line(c, line)
    return c


def test_the_form_shows_the_model_s_values_not_show_text() -> None:
    c = config(
        "config change IP0 ETH1 /addr 10.1.1.1 /mask 255.255.0.0",
        "config change IP0 RT3 /gateway 10.1.0.1",  # the default route, whatever its number
        "config change IP0 RT0 /dest 172.16.0.0 /mask 255.240.0.0 /gateway 10.1.0.2",
        "config change DHCP0 /interface ETH1",
        "config change DNS0 /server2 9.9.9.9",
    )
    v = ip_values(c)
    assert (v["eth1_addr"], v["eth1_mask"], v["eth0_addr"]) == ("10.1.1.1", "255.255.0.0", "")
    assert v["gateway"] == "10.1.0.1" and default_route(c) == "RT3"
    assert (v["dhcp"], v["dhcp_if"], v["dns1"], v["dns2"]) == ("client", "ETH1", "", "9.9.9.9")


def test_a_form_becomes_requests_that_round_trip() -> None:
    c = config("config change IP0 RT3 /gateway 10.1.0.1", "config change DNS0 /server1 1.1.1.1")
    form = {
        "dhcp": "off", "dhcp_if": "ETH0", "eth0_addr": "192.168.0.10",
        "eth0_mask": "255.255.255.0", "gateway": "192.168.0.1", "dns1": "", "dns2": "",
    }  # fmt: skip
    ops, errors = ip_changes(c, form)
    assert errors == []
    for op in ops:
        c, _ = apply_op(c, op)
    v = ip_values(c)
    assert (v["eth0_addr"], v["gateway"], v["dhcp"], v["dns1"]) == (
        "192.168.0.10", "192.168.0.1", "off", "",
    )  # fmt: skip
    assert default_route(c) == "RT3"  # the existing default route changed, no second one
    # an emptied field removes what was set
    ops, _ = ip_changes(c, {**form, "eth0_addr": "", "eth0_mask": "", "gateway": ""})
    for op in ops:
        c, _ = apply_op(c, op)
    assert ip_values(c)["eth0_addr"] == "" and default_route(c) is None


def test_a_bad_field_gives_no_requests_at_all() -> None:
    ops, errors = ip_changes(Config.factory(), {"eth0_addr": "10.0.0.300", "eth0_mask": ""})
    assert ops == []
    assert any("not an IPv4 address" in e for e in errors)
