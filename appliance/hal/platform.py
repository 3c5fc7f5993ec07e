"""The Platform interface: everything the boot and the services ask of the (virtual) hardware.

Two implementations, each in its own module: hal.vm.VmPlatform (inside our guest, real
devices under Debian's kernel) and hal.hosted.HostedPlatform (on the host, image files).
`detect_platform()` is the one place that decides which runs. A capability a platform lacks
is still declared: it answers with an empty list (NICs, disk lines), None (clock) or raises
hal.types.Unavailable with a message for the console (compact_flash, DHCP) — never sniffed for.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from appliance.hal.types import Console, DiskRole, MemoryInfo, RestartKind

if TYPE_CHECKING:  # for the interface only: detect_platform() is the process's first import
    from appliance.formats.signify import Keyring
    from appliance.hal.block import BlockDevice
    from appliance.hal.bootfiles import BootFiles
    from appliance.hal.cf import CfBackend
    from appliance.hal.cpu import CpuInfo
    from appliance.hal.nics import PciNic, Port
    from appliance.hal.timekeeping import Policy, Timekeeping


class Platform(Protocol):
    @property
    def name(self) -> str: ...  # "vm" or "hosted"

    @property
    def hw_id(self) -> str: ...  # HW[…] in the version line and the backup header

    @property
    def bootcode_build(self) -> int: ...  # Bootcode[…]: the bootcode that started the runtime

    @property
    def needs_nic(self) -> bool: ...  # True: no supported NIC stops the boot (NIC unavailable!)

    @property
    def newline(self) -> bytes: ...  # ends a console line: b"\r\n"; b"\n" to a pipe

    @property
    def ctrl_d_ends(self) -> bool: ...  # Ctrl-D on an empty line ends a session (host tty)

    @property
    def prompt_first(self) -> bool: ...  # the services the prompt does not need start after it

    # --- CPU and memory
    def cpu(self) -> CpuInfo: ...

    def cpu_lines(self) -> list[str]: ...  # boot-trace warnings after the brand (vCPUs)

    def memory_info(self) -> MemoryInfo: ...  # the boot trace's mem(…), FLASHDIR sizing

    def memory_free(self) -> int | None: ...  # bytes the box could still use now (None: unknown)

    # --- disks
    def open_disks(self) -> dict[DiskRole, BlockDevice]: ...  # HaltError if one is missing

    def disk_lines(self) -> list[str]: ...  # boot-trace lines: where each disk was found

    def compact_flash(self, dev: BlockDevice) -> CfBackend: ...  # Unavailable: no CF here

    # --- NICs: ETH0/ETH1 in PCI order; [] where there are none
    def pci_nics(self) -> list[PciNic]: ...

    # where the web admin listens for HTTP0's port (`https`: /https-port); None: not at all
    def http_listen(self, port: int, https: bool) -> tuple[str, int] | None: ...

    def ports(self) -> list[Port]: ...

    # starts the client, does not wait (the lease comes in dhcp_lease); `fallback` (e.g.
    # 192.168.0.1/24): the address the port takes when no DHCP server answers, until one
    # does (its lease then says fallback=yes)
    def start_dhcp(self, ifname: str, fallback: str | None) -> None: ...

    def dhcp_lease(self, ifname: str) -> dict[str, str] | None: ...

    def renew_dhcp(self, ifname: str) -> dict[str, str] | None: ...  # now; the new lease

    # raises NicConfigError (ip's message) when the kernel refuses a step
    def set_static(
        self, ifname: str, addr: str | None, prefix: int, gateway: str | None
    ) -> None: ...

    def link_up(self, ifname: str) -> bool: ...  # carrier on the interface

    # --- clock: the box's timekeeping (TIME0), or None where the host's clock is used
    def begin_clock(self) -> None: ...  # start measuring the counter (start_clock waits)

    def start_clock(self, policy: Policy, trace: Callable[[str], None]) -> Timekeeping | None: ...

    # --- firmware slots (the update service): the boot partition's files, and which slot
    # (0 = IPVA.BIN, 1 = IPVA2.BIN) the bootcode started this time
    def boot_files(self) -> BootFiles: ...
    def running_slot(self) -> int: ...

    # the bootcode's line when it started another slot than the record chose ("firmware B
    # (IPVA2.BIN 16r1sr2) did not start (…): starting A (IPVA.BIN 16r1sr1)"), else ""
    def boot_note(self) -> str: ...

    # the public keys an image must be signed with to be installed: the bootcode's keyring
    # (it boots only what they signed); SignifyError if a key file there is unreadable
    def keyring(self) -> Keyring: ...

    # --- life cycle
    def restart(self, kind: RestartKind) -> None: ...  # the VM reboots and never returns

    def halt(self) -> None: ...  # after a fatal boot message; the VM stays there for good

    def consoles(self) -> list[Console]: ...

    # while the consoles are served (hosted on a terminal: raw mode, always restored)
    def attached(self) -> AbstractContextManager[None]: ...


def detect_platform() -> Platform:
    """Inside our guest the bootcode sets IPVA_PLATFORM=vm; anything else is hosted."""
    if os.environ.get("IPVA_PLATFORM") == "vm":
        from appliance.hal.vm import VmPlatform  # reads the guest's devices when used

        return VmPlatform()
    from appliance.hal.hosted import HostedPlatform

    return HostedPlatform(Path(os.environ.get("IPVA_HOSTED_DIR", ".ipva-hosted")))
