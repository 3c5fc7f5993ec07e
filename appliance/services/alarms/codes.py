"""The box's event codes, decided once: this table (README.md's "Alarms and events" lists it).

A code has a number (what Maintenance/Events shows and ALARM0 /catch takes, in decimal as
the real box stores it), a severity and a text. Severities (services-logging.wiki):

    event   something happened (a boot, a login failure): one entry, nothing to clear
    alarm   a condition that holds until it is cleared (a link down, a lease lost): one
            entry when it is raised, one when it is cleared; raised and not cleared yet
            is an *active* alarm (box_info.xml `alarms=`, General/Info)
    fault   something went wrong and is over (a crash, a failed update): one entry

A leaf module: the decoder of forwarded entries and the web page read it without the rest.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Severity(enum.StrEnum):
    EVENT = "event"
    ALARM = "alarm"
    FAULT = "fault"


@dataclass(frozen=True)
class Code:
    """One event code: its number, name, severity and meaning."""

    number: int
    name: str  # short, for XML and scripts
    severity: Severity
    text: str  # what it means, for the table and help


BOOT = Code(1, "boot", Severity.EVENT, "the box started (its version)")
RESET = Code(2, "reset", Severity.EVENT, "reset asked for (by whom)")
REBOOT = Code(3, "reboot", Severity.FAULT, "reboot: a forced watchdog trap (by whom)")
CRASH = Code(4, "crash", Severity.FAULT, "the boot found the crash dump of the previous run")
CONFIG_WRITTEN = Code(5, "config-write", Severity.EVENT, "the saved configuration changed")
FLASH_DAMAGE = Code(10, "flash-damage", Severity.FAULT, "the flash mount found damage")
UPDATE_DONE = Code(20, "update-done", Severity.EVENT, "a new firmware started and confirmed")
UPDATE_FAILED = Code(21, "update-failed", Severity.FAULT, "a firmware update failed")
UPDATE_FALLBACK = Code(
    22, "update-fallback", Severity.FAULT, "a new firmware did not start: the old one runs"
)
LOGIN_FAILED = Code(30, "login-failed", Severity.EVENT, "a failed web admin login")
LOGIN_LOCKOUT = Code(31, "login-lockout", Severity.ALARM, "a client refused after failed logins")
LINK_DOWN = Code(40, "link-down", Severity.ALARM, "an Ethernet port lost its link")
DHCP_LOST = Code(41, "dhcp-lost", Severity.ALARM, "the DHCP lease was lost: no address")
DHCP_FALLBACK = Code(42, "dhcp-fallback", Severity.ALARM, "no DHCP server: a fallback address")
CF_UNMOUNTED = Code(50, "cf-unmounted", Severity.ALARM, "the CF card is not mounted")
CF_FULL = Code(51, "cf-full", Severity.ALARM, "the CF card is full: log files are not written")
LOG_UNREACHABLE = Code(60, "log-unreachable", Severity.ALARM, "a log target does not take records")
FORWARD_UNREACHABLE = Code(
    61, "forward-unreachable", Severity.ALARM, "the alarm forward server does not take entries"
)
CERT_EXPIRY = Code(70, "cert-expiry", Severity.ALARM, "the HTTPS certificate expires in < 30 days")
TEST = Code(99, "test", Severity.FAULT, "mod cmd ALARM0 test: try the forward server and mail")

CODES: tuple[Code, ...] = (
    BOOT, RESET, REBOOT, CRASH, CONFIG_WRITTEN, FLASH_DAMAGE, UPDATE_DONE, UPDATE_FAILED,
    UPDATE_FALLBACK, LOGIN_FAILED, LOGIN_LOCKOUT, LINK_DOWN, DHCP_LOST, DHCP_FALLBACK,
    CF_UNMOUNTED, CF_FULL, LOG_UNREACHABLE, FORWARD_UNREACHABLE, CERT_EXPIRY, TEST,
)  # fmt: skip
BY_NUMBER = {c.number: c for c in CODES}
BY_NAME = {c.name: c for c in CODES}
assert len(BY_NUMBER) == len(CODES) and len(BY_NAME) == len(CODES), "a code taken twice"
