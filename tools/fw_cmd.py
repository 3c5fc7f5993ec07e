"""`ipva fw info|verify|sign FILE`: look at, check and sign a firmware image (ipva.bin /
IPVA.BIN). Keys are signify files (appliance/formats/signify.py)."""

from __future__ import annotations

from pathlib import Path

import click

from firmware import ipvabin

_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.group()
def fw() -> None:
    """Firmware images (ipva.bin)."""


def _show(info: ipvabin.FirmwareInfo, path: Path) -> None:
    click.echo(f"file:      {path}")
    click.echo(f"version:   {info.version}")
    click.echo(f"build:     {info.build}")
    click.echo(f"payload:   {info.payload_length} bytes at offset {ipvabin.HEADER_SIZE}")
    click.echo(f"sha256:    {info.payload_sha256}")
    click.echo(f"signature: {_signature_text(info)}")


def _signature_text(info: ipvabin.FirmwareInfo) -> str:
    """The signature as a reader needs it: the development key is named wherever it shows."""
    if info.signer or not info.key_id:
        return info.signed_text()
    dev = ipvabin.development_keyring().keys[0]
    if info.key_id == dev.key_id:
        return f"key {info.key_id}: the DEVELOPMENT key (public: anyone can sign with it)"
    return f"key {info.key_id}"


@fw.command()
@click.argument("file", type=_FILE)
def info(file: Path) -> None:
    """Print the header of FILE (no checks beyond the header)."""
    try:
        _show(ipvabin.read_info(file), file)
    except ipvabin.FirmwareError as exc:
        raise click.ClickException(str(exc)) from exc


@fw.command()
@click.argument("file", type=_FILE)
@click.option("--keyring", "keyring", type=click.Path(exists=True, path_type=Path),
              help="Public key file, or a directory of *.pub files (a box's keyring, e.g. "
              "dist/keyring). Default: the development key.")  # fmt: skip
@click.option("--no-signature", is_flag=True,
              help="Check header, length and SHA-256 only (no trust decision).")  # fmt: skip
def verify(file: Path, keyring: Path | None, no_signature: bool) -> None:
    """Check FILE's header, signature, length and SHA-256 as a box with that keyring would;
    exit 1 if the box would refuse it."""
    try:
        ring = (
            None if no_signature
            else ipvabin.load_keyring(keyring) if keyring
            else ipvabin.development_keyring()
        )  # fmt: skip
        got = ipvabin.verify(file, ring)
    except ipvabin.FirmwareError as exc:
        click.echo(f"FAILED: {exc}", err=True)
        raise SystemExit(1) from exc
    _show(got, file)
    click.echo("checksum ok" + ("" if ring is None else ", signature ok"))


@fw.command()
@click.argument("file", type=_FILE)
@click.option("--key", "key", type=_FILE, default=None,
              help="signify secret key without passphrase (signify-openbsd -G -n -s FILE). "
              "Default: the development key.")  # fmt: skip
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the signed image here (default: FILE itself).")  # fmt: skip
def sign(file: Path, key: Path | None, output: Path | None) -> None:
    """Sign FILE (replacing any signature it had); a damaged image is refused, not signed."""
    try:
        got = ipvabin.sign(file, ipvabin.load_signing_key(key), output)
    except ipvabin.FirmwareError as exc:
        raise click.ClickException(str(exc)) from exc
    _show(got, output or file)
