"""The services of the running box, in boot order: the one explicit list.

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
    network      probe: ETH0/ETH1 (NIC unavailable! stops the VM); start: addresses from
                 IP0/DHCP0; mod cmd ETH0, ETH1
    http         start: the web admin on HTTP0's ports (HTTPS with the box's certificate),
                 the factory-password warning, in a thread of its own: the prompt does
                 not wait for it (services/http/__init__.py); activate rebinds;
                 mod cmd HTTP0, CMD0, X509 (requests, signed certificates, alarm 70:
                 services/http/certificates.py)
    counters     start: the CPU and memory sampler (a thread it owns, one sample a
                 minute, in memory); mod cmd LOG0/CNT xml-count (monitoring)
    update       start: a new firmware on trial confirms itself (the box is up now), the
                 UP1 poller; mod cmd UP0, UP1 (services/update/)

Probes run first, in this order, before the disks are opened; then the starts, in this
order (the flash before the config it holds, the config before what reads it; logging
before the crash report it sends; the network after them, then the web admin, which
shows the addresses, then the update service, which confirms a new firmware once all
that is up; the web admin's own start is not waited for, as a web admin that fails has
never stopped the boot: the console works without it).
A new service is one more entry here; see appliance/service.py.
"""

from __future__ import annotations

from appliance.service import ActingRunner, CommandRunner, Service
from appliance.services.alarms.service import AlarmService
from appliance.services.cf import CfService
from appliance.services.config import ConfigService
from appliance.services.counters import CountersService
from appliance.services.dump import CrashDumpService
from appliance.services.flash import FlashService, Mount, mount_real_flash
from appliance.services.hardware import HardwareService
from appliance.services.http import HttpService
from appliance.services.logtargets.service import LoggingService
from appliance.services.network import NetworkService
from appliance.services.system import SystemService
from appliance.services.timekeeping import TimekeepingService
from appliance.services.trace import TraceService
from appliance.services.update.service import UpdateService

UPDATE_SCRIPT = "UP1 update script"  # who the update server's script lines are, in the log


def boot_services(
    mount: Mount = mount_real_flash, runner: CommandRunner | None = None
) -> list[Service]:
    """Fresh service instances for one boot (a restart builds new ones). `runner` runs
    console lines for services that take them from outside (the runtime: the web
    admin's `!` URLs, the update server's scripts; None: those serve nothing)."""
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
        HttpService(runner, cf.volume),
        CountersService(),
        UpdateService(ActingRunner(runner, UPDATE_SCRIPT) if runner is not None else None),
    ]


__all__ = ["Mount", "Service", "boot_services", "mount_real_flash"]
