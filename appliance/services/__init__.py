"""The services of the running box, in boot order: the one explicit list.

    trace        mod cmd TRACE show|clear on the trace ring buffer (services/trace.py)
    hardware     probe: CPU and memory lines; mod cmd CPU, MEM, CF0
    flash        start: mounts the flash into box.flash; mod cmd FLASHMAN0, FLASHDIR0
    system       start: the version line (SYS0)
    crash-report start: a crash record left by reboot/a crash, shown once
    config       start: loads the saved config; mod cmd CFG0 (ADMIN0)
    timekeeping  start: the box's clock (TIME0); mod cmd TIME0
    network      probe: ETH0/ETH1 (NIC unavailable! stops the VM); start: addresses from
                 IP0/DHCP0; mod cmd ETH0, ETH1
    update       start: a new firmware on trial confirms itself (the box is up now), the
                 UP1 poller; mod cmd UP0, UP1 (services/update/)

Probes run first, in this order, before the disks are opened; then the starts, in this
order (the flash before the config it holds, the config before what reads it; the
network last, as its addresses are the last boot-trace lines). A new service
(HTTP, update, logging, crash dump) is one more entry here; see appliance/service.py.
"""

from __future__ import annotations

from appliance.service import CommandRunner, Service
from appliance.services.config import ConfigService
from appliance.services.crashreport import CrashReportService
from appliance.services.flash import FlashService, Mount, mount_real_flash
from appliance.services.hardware import HardwareService
from appliance.services.network import NetworkService
from appliance.services.system import SystemService
from appliance.services.timekeeping import TimekeepingService
from appliance.services.trace import TraceService
from appliance.services.update.service import UpdateService


def boot_services(
    mount: Mount = mount_real_flash, runner: CommandRunner | None = None
) -> list[Service]:
    """Fresh service instances for one boot (a restart builds new ones). `runner` runs
    console lines for services that take them from outside (the runtime)."""
    return [
        TraceService(),
        HardwareService(),
        FlashService(mount),
        SystemService(),
        CrashReportService(),
        ConfigService(),
        TimekeepingService(),
        NetworkService(),
        UpdateService(runner),
    ]


__all__ = ["Mount", "Service", "boot_services", "mount_real_flash"]
