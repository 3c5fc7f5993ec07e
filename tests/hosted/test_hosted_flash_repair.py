"""A flash disk that does not mount is repaired from the console (B1)."""

from __future__ import annotations

import io
from pathlib import Path

from appliance.hosted import run_hosted

JUNK_SIZE = 8 << 20  # 128 segments: small, and `reset all` formats the whole disk


def test_junk_flash_is_formatted_by_reset_all_and_keeps_the_config(tmp_path: Path) -> None:
    (tmp_path / "flash.img").write_bytes(b"\x55" * JUNK_SIZE)  # neither blank nor FLASHMAN
    out = io.BytesIO()
    commands = (
        "config change DHCP0 /mode off\n"
        "config write\n"
        "mod cmd FLASHMAN0 reset all\n"
        "config write\n"
        "reset\n"
        "config show\n"
    )
    assert run_hosted(tmp_path, io.BytesIO(commands.encode()), out) == 0
    t = out.getvalue().decode("utf-8")
    lines = t.splitlines()
    # the boot says what is wrong and what to do, as a flash (081) trace line
    mount_failure = [line for line in lines if "holds no FLASHMAN data" in line]
    assert len(mount_failure) == 1
    assert mount_failure[0].startswith("0:0000:081:4 - flash: ")
    assert "mod cmd FLASHMAN0 reset all" in mount_failure[0]
    # before the format config write is refused; after it, it works without a reset
    assert "IPVA> config write\nerror: no flash:" in t
    after_format = t.split("IPVA> mod cmd FLASHMAN0 reset all\n")[1].split("IPVA> ")[0]
    assert after_format.endswith("flash formatted, 128 segments\n")  # after FLASHMAN's trace
    assert "IPVA> config write\nconfig written to flash (1 object)\n" in t
    # the reset mounts the formatted disk and starts with what was written
    assert "config: 1 saved object loaded" in t
    assert t.split("IPVA> config show\n")[1].splitlines()[0] == "config change DHCP0 /mode off"
    assert t.count("holds no FLASHMAN data") == 1  # the second boot mounted it
