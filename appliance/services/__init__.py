"""The services of the running box, in boot order: the one explicit list, in two parts.

What the prompt needs starts before it (`prompt_services`):

    trace        mod cmd TRACE show|clear on the trace ring buffer (services/trace.py)
    hardware     probe: CPU and memory lines; mod cmd CPU, MEM, CF0
    flash        start: mounts the flash into box.flash; mod cmd FLASHMAN0, FLASHDIR0
    system       start: the version line (SYS0)
    config       start: loads the saved config; mod cmd CFG0 (ADMIN0)
    cf           start: mounts the CF card if it holds a FAT; mod cmd CF0
    logging      start: LOG0/LOG1 targets from the config, fed by the box's events;
                 mod cmd LOG0, LOG1
    alarms       start: the alarm and event queues (ALARM0 /mem, /flash), the forward
                 server, the mailer (MAIL0), fed by the box's events; mod cmd ALARM0
                 (services/alarms/)
    crash-dump   start: a dump left by reboot/a crash, shown once (logged); arms the
                 crash watch; mod cmd DUMP
    timekeeping  start: the box's clock (TIME0); mod cmd TIME0
    network      probe: ETH0/ETH1 (NIC unavailable! stops the VM); start: static addresses
                 from IP0, the DHCP client started (DHCP0), not waited for: its lease's
                 line comes after the prompt; mod cmd ETH0, ETH1

The rest comes after it (`after_prompt_services`, services/afterprompt.py): its modules
are imported only then, so that a cold boot's prompt does not wait for their imports
(seconds under emulation):

    http         start: the web admin on HTTP0's ports (HTTPS with the box's certificate),
                 the factory-password warning, in a thread of its own
                 (services/http/__init__.py); activate rebinds; mod cmd HTTP0, CMD0, X509
                 (requests, signed certificates, alarm 70: services/http/certificates.py)
    counters     start: the CPU and memory sampler (a thread it owns, one sample a
                 minute, in memory); mod cmd LOG0/CNT xml-count (monitoring)
    update       start: a new firmware on trial confirms itself (the box is up now), the
                 UP1 poller; mod cmd UP0, UP1 (services/update/)

Probes run first, in this order, before the disks are opened; then the starts, in this
order (the flash before the config it holds, the config before what reads it; logging
before the crash report it sends; the network after them, then the web admin, which
shows the addresses (it listens once the first DHCP lease or fallback is in), then the
update service, which confirms a new firmware once all that is up). The runtime
(boot.Runtime) starts the second part right after the prompt or, with everything at once,
at the end of the boot; a console line that needs one of
its services (`mod cmd` of a module not up yet, `help mod`, `version`) brings it up
first. The web admin's own start is not waited for either way, as a web admin that
fails has never stopped the boot: the console works without it.
A new service is one more entry in one of the two lists; see appliance/service.py.
"""

from __future__ import annotations

from collections.abc import Sequence

from appliance.service import CommandRunner, Service
from appliance.services.alarms.service import AlarmService
from appliance.services.cf import CfService
from appliance.services.config import ConfigService
from appliance.services.dump import CrashDumpService
from appliance.services.flash import FlashService, Mount, mount_real_flash
from appliance.services.hardware import HardwareService
from appliance.services.logtargets.service import LoggingService
from appliance.services.network import NetworkService
from appliance.services.system import SystemService
from appliance.services.timekeeping import TimekeepingService
from appliance.services.trace import TraceService


def prompt_services(mount: Mount = mount_real_flash) -> list[Service]:
    """Fresh instances of the services the prompt needs, for one boot, in boot order."""
    cf = CfService()
    return [
        TraceService(),
        HardwareService(),
        FlashService(mount),
        SystemService(),
        ConfigService(),
        cf,
        LoggingService(cf.volume),
        AlarmService(cf.volume),
        CrashDumpService(),
        TimekeepingService(),
        NetworkService(),
    ]


def after_prompt_services(
    before: Sequence[Service], runner: CommandRunner | None = None
) -> list[Service]:
    """Fresh instances of the services that start after the prompt, in boot order; their
    modules are imported here (the first call). `before`: this boot's prompt_services
    (the CF card they share)."""
    from appliance.services.afterprompt import services_after_prompt

    cf = next(s for s in before if isinstance(s, CfService))
    return services_after_prompt(cf.volume, runner)


def boot_services(
    mount: Mount = mount_real_flash, runner: CommandRunner | None = None
) -> list[Service]:
    """Fresh instances of every service for one boot (a restart builds new ones), in boot
    order. `runner` runs console lines for services that take them from outside (the
    runtime: the web admin's `!` URLs, the update server's scripts; None: those serve
    nothing)."""
    before = prompt_services(mount)
    return [*before, *after_prompt_services(before, runner)]


__all__ = [
    "Mount",
    "Service",
    "after_prompt_services",
    "boot_services",
    "mount_real_flash",
    "prompt_services",
]
