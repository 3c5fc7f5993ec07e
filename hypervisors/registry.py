"""Packaging targets register here; the build asks for them by name.

Adding a target touches one place: its own package, which calls `register()` on import,
plus its name in TARGET_MODULES.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from firmware.settings import BuildSettings

TARGET_MODULES = {
    "vmware": "hypervisors.vmware",
    "proxmox": "hypervisors.proxmox",
    "hyperv": "hypervisors.hyperv",
    "libvirt": "hypervisors.libvirt",
    "gns3": "hypervisors.gns3",
}


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    # make(settings, disks) → the artifacts written under settings.out_dir;
    # disks maps role name ("boot", "cf", "flash", "dump") → raw image path
    make: Callable[[BuildSettings, dict[str, Path]], list[Path]]


_TARGETS: dict[str, Target] = {}


def register(target: Target) -> Target:
    _TARGETS[target.name] = target
    return target


def get_target(name: str) -> Target:
    if name not in _TARGETS:
        importlib.import_module(TARGET_MODULES[name])
    return _TARGETS[name]
