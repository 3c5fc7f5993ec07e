"""The boot bench's rows for the DHCP lease, which no longer holds the prompt back: its line
is a row of its own, after the prompt (before it in a build from before that)."""

from __future__ import annotations

from bench.boot import PROMPT, RUNTIME_STEPS, Boot, report, runtime_steps

ADDRESS = "0:0000:030:4 - ETH0 IP address 10.0.2.15/24 (dhcp)"


def box_boot(address_at: float) -> Boot:
    lines = [
        (2.0, "IPVA bootcode"),
        (4.0, "0:0000:030:4 - cpu"),
        (4.2, "0:0000:030:4 - ETH0 AMD Am79C970A PCnet-PCI II (1022:2000 at 0000:00:03.0, eth0)"),
        (4.5, "0:0000:030:4 - time: KVM/QEMU"),
        (5.0, PROMPT),
        (address_at, ADDRESS),
    ]
    return Boot(lines=sorted(lines))


def rows(lines: list[str]) -> dict[str, str]:
    """A table's rows: name → median."""
    return {ln[:44].strip(): ln[44:].split()[0] for ln in lines if ln[44:].split()}


def test_the_address_line_is_a_row_after_the_prompt_not_a_runtime_step() -> None:
    assert all("DHCP" not in name for name, _r, _l in RUNTIME_STEPS)
    # the prompt's step runs from the timekeeping line, whatever the lease does
    assert runtime_steps(box_boot(5.3), 2.0)["prompt"] == 0.5
    out: list[str] = []
    report({"empty": [box_boot(5.3)], "baseline": [box_boot(4.8)]}, out.append)
    baseline = out.index("-- baseline")
    empty, old = rows(out[:baseline]), rows(out[baseline:])
    assert empty["empty: DHCP address line"] == "5.30"
    assert empty["prompt → DHCP address (< 0: before it)"] == "0.30"
    assert old["prompt → DHCP address (< 0: before it)"] == "-0.20"  # it held the prompt back
