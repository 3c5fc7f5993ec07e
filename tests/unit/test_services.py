"""The service layer: the explicit boot list, config ownership, the command table, the trace
ring buffer, the event hook, activation asking the services, XML escaping, the bootcode build."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from test_shell_commands import make_box  # noqa: I001  (same directory)

from appliance import xmltext
from appliance.box import FACTORY_PASSWORD, Box
from appliance.config import MODULES, Activation, parse_op, split_words
from appliance.events import ConfigActivated, ConfigChanged, Event, Events, Traced
from appliance.hal import aes
from appliance.hal.cpu import CpuInfo
from appliance.hal.vm import read_bootcode_build
from appliance.modcmd import Command, CommandTable
from appliance.service import BaseService, Service
from appliance.services import boot_services
from appliance.services.hardware import cpu_info
from appliance.trace import Tag, TraceBuffer
from appliance.version import BUILD


def test_the_boot_list_is_explicit_and_ordered() -> None:
    names = [s.name for s in boot_services()]
    assert names == [
        "trace", "hardware", "flash", "system", "config", "cf", "logging", "crash-dump",
        "timekeeping", "network", "http", "update",
    ]  # fmt: skip
    assert boot_services()[2] is not boot_services()[2]  # fresh instances per boot


def test_each_config_module_is_declared_once_and_owned_by_at_most_one_service() -> None:
    owned = [m for s in boot_services() for m in s.config_modules]
    assert len(owned) == len(set(owned))
    assert set(owned) <= set(MODULES)
    # the modules of the services still to come (NTP) are unowned for now
    assert set(MODULES) - set(owned) == {"NTP0"}


def test_a_module_command_declared_twice_is_refused() -> None:
    def run(box: Box, args: list[str]) -> str:
        return ""

    with pytest.raises(ValueError, match="mod cmd x0 A declared twice"):
        CommandTable([Command("X0", "a", "", run), Command("x0", "A", "", run)])


def test_trace_buffer_is_a_bounded_ring_in_the_box_format() -> None:
    mirrored: list[str] = []
    events = Events()
    seen: list[Event] = []
    events.subscribe(seen.append)
    trace = TraceBuffer(mirrored.append, size=3, events=events)
    for i in range(5):
        trace(f"line {i}")
    trace("start flashdir FLASHDIR0", Tag.FLASH)
    assert trace.lines() == [
        "0:0000:030:4 - line 3",
        "0:0000:030:4 - line 4",
        "0:0000:081:4 - start flashdir FLASHDIR0",
    ]
    assert len(mirrored) == 6 and mirrored[-1] == "0:0000:081:4 - start flashdir FLASHDIR0"
    assert seen[-1] == Traced("0:0000:081:4 - start flashdir FLASHDIR0")
    assert trace.lines(1) == trace.lines()[-1:] and trace.lines(0) == []
    assert trace.text(2) == "0:0000:030:4 - line 4\n0:0000:081:4 - start flashdir FLASHDIR0\n"
    assert trace.clear() == 3 and trace.lines() == []


def test_a_failing_subscriber_is_reported_once_and_the_others_still_hear() -> None:
    events = Events()
    errors: list[str] = []
    events.on_error = errors.append
    heard: list[Event] = []

    def broken(event: Event) -> None:
        raise RuntimeError("no")

    events.subscribe(broken)
    unsubscribe = events.subscribe(heard.append)
    events.emit(ConfigChanged("a"))
    events.emit(ConfigChanged("b"))
    assert heard == [ConfigChanged("a"), ConfigChanged("b")]
    assert errors == ["event subscriber failed: RuntimeError: no"]
    unsubscribe()
    events.emit(ConfigChanged("c"))
    assert len(heard) == 2


class NeedsReset(BaseService):
    name = "needs-reset"
    config_modules = ("HTTP0",)

    def __init__(self) -> None:
        self.asked: list[Activation] = []

    def apply(self, box: Box, activation: Activation) -> list[str]:
        self.asked.append(activation)
        return ["HTTP0 /tls"]


def test_config_activate_asks_every_service_and_keeps_what_needs_a_reset() -> None:
    extra = NeedsReset()
    services: list[Service] = [*boot_services(), extra]
    box = make_box(services=services)
    seen: list[Event] = []
    box.events.subscribe(seen.append)
    box.change(parse_op("change", split_words("IP0 ETH0 /addr 192.168.0.10")))
    result = box.activate()
    assert len(extra.asked) == 1
    assert result.pending == ["IP0 ETH0 /addr", "HTTP0 /tls"]
    assert box.reset_required == ["IP0 ETH0 /addr", "HTTP0 /tls"]
    assert isinstance(seen[0], ConfigChanged)
    assert seen[1] == ConfigActivated((), ("IP0 ETH0 /addr", "HTTP0 /tls"))
    box.activate()  # asked again: the state is not doubled
    assert box.reset_required == ["IP0 ETH0 /addr", "HTTP0 /tls"]


def test_admin_password_check() -> None:
    box = make_box()
    assert box.check_admin("admin", FACTORY_PASSWORD)
    assert not box.check_admin("admin", "wrong") and not box.check_admin("root", FACTORY_PASSWORD)
    box.change(parse_op("change", split_words("ADMIN0 /pwd s3cret!")))
    box.activate()
    assert box.check_admin("admin", "s3cret!") and not box.check_admin("admin", FACTORY_PASSWORD)
    assert "s3cret" not in str(box.active.value("ADMIN0", "pwd"))


def test_xml_answers_escape_what_they_carry() -> None:
    nasty = 'Brand "X" <fast> & co\n'
    text = cpu_info(CpuInfo(vendor="V&V", brand=nasty), aes.PureAes(), 1)
    element = ET.fromstring(text).find("cpu")
    assert element is not None
    assert element.get("brand") == nasty and element.get("vendor") == "V&V"
    assert xmltext.element("eth", {"a": "1"}) == '<eth a="1"/>'  # the box's own shape
    assert xmltext.info("x", {"q": '"'}) == '<info><x q="&quot;"/></info>'
    # everything an attribute in double quotes needs, and nothing more (as saxutils did)
    assert xmltext.attr("a<b>&c\"d'e\nf\rg\th") == "a&lt;b&gt;&amp;c&quot;d'e&#10;f&#13;g&#9;h"


def test_the_boot_imports_no_http_client_stack() -> None:
    """urllib.request, http.client, email and ssl cost a third of a second of the boot
    under emulation: only an update, an HTTP log target and the web admin (in its own
    thread) import them. A fresh interpreter, as the box's."""
    code = (
        "import sys, appliance.boot; "
        "print(sorted(m for m in ('urllib.request', 'http.client', 'email.parser', 'ssl', "
        "'xml.sax.saxutils', 'tempfile', 'cheroot', 'werkzeug', 'jinja2') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


@pytest.mark.parametrize(
    ("content", "build"),
    [
        ("16r1sr1 build 1601077\n", 1601077),
        ("16r1sr1 build\n", BUILD),
        ("garbage", BUILD),
        (None, BUILD),  # a bootcode older than the file
    ],
)
def test_the_vm_reads_the_bootcode_build_from_the_initramfs(
    tmp_path: Path, content: str | None, build: int
) -> None:
    path = tmp_path / "bootcode-version"
    if content is not None:
        path.write_text(content)
    assert read_bootcode_build(path) == build
