"""`ipva`: build, run, inspect and decode IPVA images.

Library code raises; only this layer turns errors into a message and an exit code. Each
command group lives in its own module under tools/ and is added here, in one place.
"""

from __future__ import annotations

import logging
import sys

import click


class IpvaGroup(click.Group):
    """Turns the product's own errors into one clear line and exit code 2."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except Exception as exc:  # noqa: BLE001 - the CLI is the one place that reports
            if logging.getLogger().isEnabledFor(logging.DEBUG):
                raise
            click.echo(f"ipva: error: {exc}", err=True)
            sys.exit(2)


@click.group(cls=IpvaGroup)
@click.option("-v", "--verbose", is_flag=True, help="Show every host command run.")
def main(verbose: bool) -> None:
    """innovaphone Virtual Appliance: build images, boot them, inspect them."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(message)s")


def _add_commands() -> None:
    # each command group lives in its own module; adding one touches only this list
    from tools import build_cmd, console_cmd, dump_cmd, flash_cmd, fw_cmd, inspect_cmd, run_cmd

    for command in (
        build_cmd.build_command,
        run_cmd.run,
        console_cmd.console,
        fw_cmd.fw,
        flash_cmd.flash,
        dump_cmd.dump,
        inspect_cmd.inspect,
    ):
        main.add_command(command)


_add_commands()

if __name__ == "__main__":
    main()
