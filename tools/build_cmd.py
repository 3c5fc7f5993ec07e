"""`ipva build`: options derived from BuildSettings (one settings table), timed steps, and a
summary of what was made."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path

import click

from firmware.ipvabin import FirmwareError
from firmware.settings import ALL_TARGETS, BuildSettings, parse_size_mib
from tools.build import build

# CLI spelling and parser for settings whose type is not a plain str/int/bool
_SPECIAL = {
    "out_dir": ("--out", click.Path(file_okay=False, path_type=Path)),
    "cache_dir": ("--cache", click.Path(file_okay=False, path_type=Path)),
    "flash_mib": ("--flash-size", str),
    "ram_mib": ("--ram", str),
    "targets": ("--targets", str),
    "signing_key": ("--signing-key", click.Path(exists=True, dir_okay=False, path_type=Path)),
}


def _settings_options(fn: click.decorators.FC) -> click.decorators.FC:
    for f in reversed(dataclasses.fields(BuildSettings)):
        flag, typ = _SPECIAL.get(f.name, (f"--{f.name.replace('_', '-')}", None))
        help_text = f.metadata.get("help", "")
        if f.type in ("bool",) or isinstance(f.default, bool):
            fn = click.option(flag, f.name, is_flag=True, default=f.default, help=help_text,
                              hidden=f.metadata.get("hidden", False))(fn)  # fmt: skip
            continue
        default = ",".join(f.default) if f.name == "targets" else f.default
        if typ is None:
            typ = int if isinstance(f.default, int) else str
        fn = click.option(
            flag, f.name, type=typ, default=default, show_default=True, help=help_text
        )(fn)
    return fn


def settings_from_options(opts: dict[str, object]) -> BuildSettings:
    values = dict(opts)
    values["flash_mib"] = parse_size_mib(str(values["flash_mib"]))
    values["ram_mib"] = parse_size_mib(str(values["ram_mib"]))
    targets = str(values["targets"]).strip()
    values["targets"] = (
        () if targets in ("", "none") else ALL_TARGETS if targets == "all"
        else tuple(t.strip() for t in targets.split(",") if t.strip())
    )  # fmt: skip
    # the seed: a 512 MiB flash needs 3072 MiB RAM (the flash is held 3 times at start-up)
    if int(str(values["flash_mib"])) > 64 and values["ram_mib"] == 256:
        values["ram_mib"] = 3072
    if values["mac"] is not None:
        values["mac"] = str(values["mac"]).lower()
    return BuildSettings(**values)  # type: ignore[arg-type]


@contextlib.contextmanager
def _step(name: str) -> Iterator[None]:
    click.echo(click.style("‣ ", fg="cyan") + name + " …")
    t0 = time.monotonic()
    yield
    click.echo(f"  done in {time.monotonic() - t0:.1f} s")


def _human(size: int) -> str:
    n = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError


@click.command(name="build")
@_settings_options
def build_command(**opts: object) -> None:
    """Build ipva.bin, the four disks and the hypervisor packages into dist/.

    Targets: vmware, proxmox, hyperv, libvirt (comma-separated), `all` or `none`.
    """
    try:
        settings = settings_from_options(opts)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    t0 = time.monotonic()
    try:
        result = build(settings, _step, note=lambda text: click.echo(f"    {text}"))
    except FirmwareError as exc:  # the signing key
        raise click.ClickException(str(exc)) from exc
    click.echo(f"\nBuilt in {time.monotonic() - t0:.1f} s into {settings.out_dir}/:")
    sums: dict[str, str] = {}
    for line in (settings.out_dir / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split("  ", 1)
        sums[name] = digest
    rows = [
        (
            str(p.relative_to(settings.out_dir)),
            p.stat(),
            sums.get(str(p.relative_to(settings.out_dir)), ""),
        )
        for p in result.artifacts
    ]
    width = max(len(name) for name, _, _ in rows)
    click.echo(f"  {'artifact':<{width}}  {'size':>10}  {'on disk':>10}  sha256")
    for name, st, digest in rows:
        click.echo(
            f"  {name:<{width}}  {_human(st.st_size):>10}  {_human(st.st_blocks * 512):>10}"
            f"  {digest[:16]}"
        )
    click.echo(f"  (full digests in {settings.out_dir / 'SHA256SUMS'})")
