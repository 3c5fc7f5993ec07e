"""The system service (SYS0): the box's identity line in the boot trace,
`IPVA 16r1sr1 IPVA[1601001], Bootcode[1601001], HW[IPVA-vm]` (Box.version_line()).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from appliance.service import BaseService
from appliance.version import PRODUCT

if TYPE_CHECKING:
    from appliance.box import Box


class SystemService(BaseService):
    name = "system"
    config_modules: tuple[str, ...] = ("SYS0",)

    def start(self, box: Box) -> None:
        box.trace(f"{PRODUCT} {box.version_line()}")
