"""`ipva fw info|verify FILE`: look at and check a firmware image (ipva.bin / IPVA.BIN)."""

from __future__ import annotations

from pathlib import Path

import click

from firmware import ipvabin


@click.group()
def fw() -> None:
    """Firmware images (ipva.bin)."""


def _show(info: ipvabin.FirmwareInfo, path: Path) -> None:
    click.echo(f"file:     {path}")
    click.echo(f"version:  {info.version}")
    click.echo(f"build:    {info.build}")
    click.echo(f"payload:  {info.payload_length} bytes at offset {ipvabin.HEADER_SIZE}")
    click.echo(f"sha256:   {info.payload_sha256}")


@fw.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def info(file: Path) -> None:
    """Print the header of FILE (no checks beyond the header)."""
    try:
        _show(ipvabin.read_info(file), file)
    except ipvabin.FirmwareError as exc:
        raise click.ClickException(str(exc)) from exc


@fw.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def verify(file: Path) -> None:
    """Check FILE's header, length and SHA-256; exit 1 if it would not boot."""
    try:
        got = ipvabin.verify(file)
    except ipvabin.FirmwareError as exc:
        click.echo(f"FAILED: {exc}", err=True)
        raise SystemExit(1) from exc
    _show(got, file)
    click.echo("checksum ok")
