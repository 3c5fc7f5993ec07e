"""QEMU harness: boot IPVA images headless with a hypervisor's virtual hardware.

launcher.QemuLauncher owns the process; machine.Machine is the test API; profiles holds the
virtual hardware of each hypervisor; pytest_plugin exposes it all as fixtures.
"""

from hypervisors.qemu.errors import (
    AbnormalShutdown,
    GuestHalted,
    LaunchError,
    MachineDied,
    QemuError,
    QmpConnectError,
    QmpError,
    QmpExecuteError,
    QmpTimeoutError,
    WaitTimeout,
)
from hypervisors.qemu.machine import DEFAULT_PROMPT, Machine
from hypervisors.qemu.profiles import PROFILES, Profile, dist_disks, get_profile
from hypervisors.qemu.timeouts import retry

__all__ = [
    "DEFAULT_PROMPT",
    "PROFILES",
    "AbnormalShutdown",
    "GuestHalted",
    "LaunchError",
    "Machine",
    "MachineDied",
    "Profile",
    "QemuError",
    "QmpConnectError",
    "QmpError",
    "QmpExecuteError",
    "QmpTimeoutError",
    "WaitTimeout",
    "dist_disks",
    "get_profile",
    "retry",
]
