"""The services that start after the prompt (appliance/services/__init__.py has the whole
list and why): this module imports them, so importing it is what the prompt no longer
waits for."""

from __future__ import annotations

from collections.abc import Callable

from appliance.hal.cf import CfVolume
from appliance.service import ActingRunner, CommandRunner, Service
from appliance.services.counters import CountersService
from appliance.services.http import HttpService
from appliance.services.update.service import UpdateService

UPDATE_SCRIPT = "UP1 update script"  # who the update server's script lines are, in the log


def services_after_prompt(
    volume: Callable[[], CfVolume | None], runner: CommandRunner | None
) -> list[Service]:
    """Fresh instances for one boot, in boot order; `volume`: the mounted CF card, if any
    (the cf service's)."""
    return [
        HttpService(runner, volume),
        CountersService(),
        UpdateService(ActingRunner(runner, UPDATE_SCRIPT) if runner is not None else None),
    ]
