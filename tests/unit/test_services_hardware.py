"""`mod cmd CF0 format` erases only when confirmed, as `mod cmd CFG0 factory-reset yes`."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from appliance.hal.block import BlockDevice, MemoryBlockDevice
from appliance.hal.hosted import HostedPlatform
from appliance.hal.types import DiskRole, Unavailable
from appliance.modcmd import CommandTable, ModCmdError
from appliance.services.hardware import HardwareService

lookup = CommandTable(HardwareService().commands()).lookup


class CfPlatform:
    def __init__(self) -> None:
        self.formatted: list[BlockDevice] = []

    def format_cf(self, dev: BlockDevice) -> str:
        self.formatted.append(dev)
        return "CF disk formatted"


def cf_box() -> Any:
    return SimpleNamespace(platform=CfPlatform(), disks={DiskRole.CF: MemoryBlockDevice(4096)})


@pytest.mark.parametrize("args", [[], ["now"], ["yes", "please"], ["YES!"]])
def test_cf_format_without_yes_erases_nothing(args: list[str]) -> None:
    box = cf_box()
    with pytest.raises(ModCmdError, match="confirm with mod cmd CF0 format yes$"):
        lookup("CF0", "format")(box, args)  # type: ignore[misc]
    assert box.platform.formatted == []


def test_cf_format_yes_formats() -> None:
    box = cf_box()
    assert lookup("CF0", "format")(box, ["yes"]) == "CF disk formatted"  # type: ignore[misc]
    assert box.platform.formatted == [box.disks[DiskRole.CF]]


def test_cf_format_on_a_platform_without_cf_says_so() -> None:
    box = SimpleNamespace(platform=object(), disks={})
    with pytest.raises(ModCmdError, match="no compact flash disk"):
        lookup("CF0", "format")(box, ["yes"])  # type: ignore[misc]


def test_cf_format_where_the_platform_cannot_says_its_reason(tmp_path: Path) -> None:
    platform = HostedPlatform(tmp_path)
    box = SimpleNamespace(platform=platform, disks={DiskRole.CF: MemoryBlockDevice(4096)})
    with pytest.raises(ModCmdError, match="^CF0: no compact flash disk to format on this"):
        lookup("CF0", "format")(box, ["yes"])  # type: ignore[misc]
    assert issubclass(Unavailable, Exception)
