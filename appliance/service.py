"""The Service protocol: one part of the running box (flash, network, timekeeping, …).

The boot (appliance/boot.py) runs an explicit, ordered list of services (appliance/services/
__init__.py: `boot_services()`); nothing registers itself by being imported. A service:

    name: str                          "flash", "network" … (unique)
    config_modules: tuple[str, ...]    the config modules it owns ("IP0", "DHCP0"); each is
                                       declared once in the schema (appliance/config), and
                                       no two services own the same one
    commands() -> list[Command]        its `mod cmd` commands (appliance/modcmd.py)
    probe(platform, trace)             before the disks are opened: hardware checks and their
                                       boot-trace lines; may raise HaltError to stop the boot
    start(box)                         the box exists (disks, trace, saved config as far as
                                       loaded by earlier services): bring the service up;
                                       slow work the prompt need not wait for may go on
                                       in a thread of the service's own (the web admin's),
                                       which stop() ends
    apply(box, activation) -> list[str]
                                       `config activate` moved these changes to the active
                                       config: apply what this service can apply live and
                                       return the labels (as in Activation.pending, e.g.
                                       "IP0 ETH0 /addr") that need a reset
    stop()                             the box is going down (reset, reboot, end): stop and
                                       join its threads (bounded, a thread that does not
                                       end is traced), let go of resources; must not
                                       raise. The box's owner is closed by then: a thread
                                       of the service that calls box.owner gets
                                       BoxRestarting and ends

Probes run in list order, then starts in list order; stops run in reverse order. BaseService
gives the do-nothing defaults, so a service defines only what it has.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from appliance.events import acting

if TYPE_CHECKING:
    from appliance.box import Box
    from appliance.config import Activation
    from appliance.hal.platform import Platform
    from appliance.modcmd import Command
    from appliance.trace import TraceFn


class Service(Protocol):
    name: str
    config_modules: tuple[str, ...]

    def commands(self) -> list[Command]: ...

    def probe(self, platform: Platform, trace: TraceFn) -> None: ...

    def start(self, box: Box) -> None: ...

    def apply(self, box: Box, activation: Activation) -> list[str]: ...

    def stop(self) -> None: ...


class CommandRunner(Protocol):
    """Runs console lines for a service, as typed on the console: a job on the box's owner
    thread, the same interpreter (the web admin's `!` URLs, the update server's scripts).

    `execute` does not wait through a restart: it raises BoxRestarting once the box the
    service belongs to goes down (the restart joins service threads; boot.BoxRunner)."""

    def execute(self, line: str) -> str: ...

    def idle_for(self) -> float: ...  # seconds since the last console/web/script line


class ActingRunner:
    """A CommandRunner whose lines are `who`'s (the update script's: `UP1 update script`),
    so the log says who changed the config (appliance.events.acting)."""

    def __init__(self, runner: CommandRunner, who: str) -> None:
        self.runner = runner
        self.who = who

    def execute(self, line: str) -> str:
        with acting(self.who):
            return self.runner.execute(line)

    def idle_for(self) -> float:
        return self.runner.idle_for()


class BaseService:
    """Do-nothing defaults of every Service method."""

    name: str = ""
    config_modules: tuple[str, ...] = ()

    def commands(self) -> list[Command]:
        return []

    def probe(self, platform: Platform, trace: TraceFn) -> None:
        pass

    def start(self, box: Box) -> None:
        pass

    def apply(self, box: Box, activation: Activation) -> list[str]:
        return []

    def stop(self) -> None:
        pass
