"""Hosted-runtime fixtures: the flash mount (the real FLASHMAN once it is in the tree)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest

from appliance.hal.block import BlockDevice


def _have_real_flash() -> bool:
    try:
        from appliance.flash import mount_flash  # noqa: F401
    except ImportError:
        return False
    return True


class FakeVars:
    """Stand-in for FLASHMAN's VARS until appliance.flash lands: JSON at the disk's start."""

    def __init__(self, dev: BlockDevice) -> None:
        self.dev = dev
        self.commits = 0
        n = int.from_bytes(dev.read(0, 4), "little")
        self.data: dict[str, bytes] = (
            {k: bytes.fromhex(v) for k, v in json.loads(dev.read(4, n)).items()} if n else {}
        )

    def get(self, key: str) -> bytes | None:
        return self.data.get(key)

    def keys(self) -> list[str]:
        return list(self.data)

    def items(self) -> list[tuple[str, bytes]]:
        return list(self.data.items())

    def commit(self, changes: Mapping[str, bytes | None]) -> None:
        new = dict(self.data)
        for k, v in changes.items():
            if v is None:
                new.pop(k, None)
            else:
                new[k] = v
        raw = json.dumps({k: v.hex() for k, v in new.items()}).encode()
        self.dev.write(0, len(raw).to_bytes(4, "little") + raw)
        self.data = new
        self.commits += 1

    def reset(self) -> None:
        self.commit({k: None for k in self.data})


class FakeFlash:
    def __init__(self, dev: BlockDevice) -> None:
        self.vars = FakeVars(dev)


def fake_mount(dev: BlockDevice, ram_bytes: int, trace: Any) -> FakeFlash:
    return FakeFlash(dev)


@pytest.fixture
def mount() -> Any:
    """None (the runtime mounts the real flash) if FLASHMAN exists, else the fake."""
    return None if _have_real_flash() else fake_mount
