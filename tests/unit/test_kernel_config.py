"""The box's kernel configuration: one declaration of the drivers, checked after Kconfig ran."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.hal.nics import SUPPORTED_NICS
from firmware.debs import Deb
from firmware.kernel import (
    DRIVERS,
    build_env,
    check_config,
    config_fragment,
    parse_config,
    payload_compression,
)
from firmware.run import ToolError


def test_every_driver_is_built_in_and_nothing_is_a_module() -> None:
    fragment = parse_config(config_fragment())
    assert all(fragment[d.option] == "y" for d in DRIVERS)
    assert fragment["MODULES"] == "n"


def test_every_supported_nic_has_its_driver_in_the_kernel() -> None:
    # the NIC table and the kernel's driver list are two views of one decision
    built = {d.name for d in DRIVERS}
    assert {m.driver for m in SUPPORTED_NICS.values()} <= built


def test_a_config_with_everything_as_asked_passes() -> None:
    check_config(config_fragment() + "CONFIG_SOMETHING_ELSE=y\n")


def test_a_dropped_driver_fails_the_build_with_its_name() -> None:
    text = config_fragment().replace("CONFIG_PCNET32=y\n", "# CONFIG_PCNET32 is not set\n")
    with pytest.raises(ToolError, match=r"CONFIG_PCNET32=n \(asked y\)"):
        check_config(text)


def test_an_option_kconfig_left_out_counts_as_not_taken() -> None:
    # Kconfig writes nothing at all for a symbol whose menu is off
    text = config_fragment().replace("CONFIG_TULIP=y\n", "")
    with pytest.raises(ToolError, match=r"CONFIG_TULIP=\(absent\)"):
        check_config(text)


def test_a_value_other_than_asked_fails() -> None:
    text = config_fragment().replace("CONFIG_NR_CPUS=8\n", "CONFIG_NR_CPUS=64\n")
    with pytest.raises(ToolError, match=r"CONFIG_NR_CPUS=64 \(asked 8\)"):
        check_config(text)


def test_an_option_asked_off_may_be_absent() -> None:
    check_config(config_fragment().replace("CONFIG_IPV6=n\n", ""))


def test_parse_reads_values_and_unset_lines() -> None:
    text = 'CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C="x y"\n# a comment\n'
    assert parse_config(text) == {"A": "y", "B": "n", "C": '"x y"'}


def test_build_inputs_that_vary_between_machines_are_pinned() -> None:
    assert build_env(1700000000) == build_env(1700000000)
    assert build_env(1700000000)["KBUILD_BUILD_TIMESTAMP"] == "Tue Nov 14 22:13:20 UTC 2023"
    assert {"KBUILD_BUILD_USER", "KBUILD_BUILD_HOST", "KBUILD_BUILD_VERSION"} <= set(build_env(0))


def test_the_cached_source_entry_reads_back_as_written() -> None:
    # the kernel cache's source.json is Deb.manifest_entry(); a warm build reads it back
    deb = Deb("linux-source-6.1", "6.1.192-3", "ab" * 32, Path("/c/linux-source-6.1_all.deb"))
    again = Deb.from_manifest_entry(deb.manifest_entry())
    assert again.manifest_entry() == deb.manifest_entry()


def test_the_kernel_is_zstd_compressed_and_kept_what_the_box_reads() -> None:
    # zstd: 0.6 MB under LZ4 for as good as the same boot time; the options EXPERT would
    # turn off that the runtime reads (/proc/cpuinfo flags, /sys/firmware/memmap, the PM
    # timer as a clocksource, COM1's PNP probe) stay on
    fragment = parse_config(config_fragment())
    kernels = {k for k, v in fragment.items() if k.startswith("KERNEL_") and v == "y"}
    assert kernels == {"KERNEL_ZSTD"}
    assert fragment["EXPERT"] == "y"
    for kept in ("X86_FEATURE_NAMES", "FIRMWARE_MEMMAP", "X86_PM_TIMER", "SERIAL_8250_PNP",
                 "PCI_QUIRKS", "KALLSYMS", "PERF_EVENTS", "DMIID"):  # fmt: skip
        assert fragment[kept] == "y", kept


def _bzimage(payload: bytes, setup_sects: int = 2, offset: int = 0x10) -> bytes:
    head = bytearray((setup_sects + 1) * 512)
    head[0x1F1] = setup_sects
    head[0x248:0x24C] = offset.to_bytes(4, "little")
    return bytes(head) + bytes(offset) + payload


@pytest.mark.parametrize(
    ("magic", "name"),
    [(b"\x28\xb5\x2f\xfd", "ZSTD"), (b"\xfd7zXZ\x00", "XZ"), (b"\x02\x21\x4c\x18", "LZ4"),
     (b"\x1f\x8b\x08", "GZIP"), (b"\x00\x00\x00\x00", "unknown")],
)  # fmt: skip
def test_payload_compression_reads_the_magic_at_the_payload_offset(magic: bytes, name: str) -> None:
    assert payload_compression(_bzimage(magic + bytes(16))) == name
