"""One alarm/event entry and its XML form: what the queues keep, the page lists, the
forward server sends (one `<event …>text</event>` per request) and the receiver reads.

    <event seq="12" time="1765090000" code="40" name="link-down" severity="alarm"
           state="raised" src="ETH0" host="box-a">ETH0 link down</event>

`state` is raised|cleared for alarms and empty for events and faults; `host` is the box
that raised it (SYS0 /name); `addr` is set by a receiving box: the address it came from.
A leaf module (ElementTree only), so a tool can decode what a box sends.
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace

from appliance.services.alarms.codes import BY_NUMBER, Code, Severity

TAG = "event"
MAX_TEXT = 512  # longer texts are cut: one entry is one short line
STATES = ("raised", "cleared", "")


class EntryError(ValueError):
    """What was received is not an entry (the message says what is wrong)."""


@dataclass(frozen=True)
class Entry:
    """One alarm/event entry (its XML form is in the module's docstring)."""

    seq: int
    time: float
    code: int
    severity: Severity
    state: str  # raised | cleared (alarms), "" (events, faults)
    src: str  # the module it is about: ETH0, HTTP0, UP0, SYS0 …
    text: str
    host: str = ""  # the box that raised it
    addr: str = ""  # a receiving box: the sender's address

    @classmethod
    def of(cls, code: Code, src: str, text: str, *, cleared: bool = False,
           host: str = "", seq: int = 0, at: float | None = None) -> Entry:  # fmt: skip
        state = ("cleared" if cleared else "raised") if code.severity is Severity.ALARM else ""
        return cls(seq, time.time() if at is None else at, code.number, code.severity, state,
                   src, text[:MAX_TEXT], host)  # fmt: skip

    @property
    def name(self) -> str:
        code = BY_NUMBER.get(self.code)
        return code.name if code else f"code-{self.code}"

    @property
    def active(self) -> bool:
        return self.state == "raised"

    def numbered(self, seq: int) -> Entry:
        return replace(self, seq=seq)

    def stamp(self) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(self.time))

    def line(self) -> str:
        """One console line: `12 2026-12-07 05:40:01 alarm raised 40 link-down ETH0: …`."""
        state = f" {self.state}" if self.state else ""
        where = f" from {self.host} ({self.addr})" if self.addr else ""  # a collected one
        return (
            f"{self.seq} {self.stamp()} {self.severity.value}{state} {self.code} {self.name} "
            f"{self.src}: {self.text}{where}"
        )

    def element(self) -> ET.Element:
        e = ET.Element(TAG, {
            "seq": str(self.seq), "time": str(int(self.time)), "code": str(self.code),
            "name": self.name, "severity": self.severity.value, "state": self.state,
            "src": self.src, "host": self.host,
        })  # fmt: skip
        if self.addr:
            e.set("addr", self.addr)
        e.text = self.text
        return e

    def xml(self) -> bytes:
        return ET.tostring(self.element(), encoding="utf-8")


def _int(e: ET.Element, name: str) -> int:
    value = e.get(name, "")
    if not value.isdigit() or len(value) > 12:
        raise EntryError(f"attribute {name}={value!r}: a number is needed")
    return int(value)


def parse_entry(data: bytes) -> Entry:
    """An `<event …>` document as the forward server sends it; EntryError if it is not."""
    try:
        e = ET.fromstring(data)
    except ET.ParseError as exc:
        raise EntryError(f"not XML: {exc}") from exc
    return from_element(e)


def from_element(e: ET.Element) -> Entry:
    if e.tag != TAG:
        raise EntryError(f"<{e.tag}>: an <{TAG}> element is needed")
    try:
        severity = Severity(e.get("severity", ""))
    except ValueError as exc:
        raise EntryError(f"severity={e.get('severity')!r}: event, alarm or fault") from exc
    state = e.get("state", "")
    if state not in STATES:
        raise EntryError(f"state={state!r}: raised, cleared or empty")
    return Entry(
        seq=_int(e, "seq"),
        time=float(_int(e, "time")),
        code=_int(e, "code"),
        severity=severity,
        state=state,
        src=_printable(e.get("src", ""), 32),
        text=_printable(e.text or "", MAX_TEXT),
        host=_printable(e.get("host", ""), 64),
        addr=_printable(e.get("addr", ""), 64),
    )


def _printable(text: str, limit: int) -> str:
    """One printable line (a received entry must not forge lines on a page or the log)."""
    return "".join(c if c.isprintable() else "?" for c in text[:limit])
