"""`ipva run`: boot dist/ under QEMU with a hypervisor profile and attach to its console.

  ipva run                 console on this terminal (raw mode); Ctrl-] powers off and leaves
  ipva run --headless      console commands from stdin, one per line: waits for the prompt,
                           sends each, prints the whole transcript, powers off at EOF
  ipva run --hosted        the runtime on image files, no VM (appliance.hosted);
                           --http HOST:PORT / --https HOST:PORT serve its web admin there
  --http-port N / --https-port N   the VM's web admin (guest 80/443) on 127.0.0.1:N

The VM boots qcow2 overlays of dist/disks, so dist/ stays as built; `--persist` writes to the
disks themselves (config survives between runs). While the VM runs, its console is also
shared on a loopback port for `ipva console --vm` (hypervisors.qemu.relay).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import click

from hypervisors.qemu.errors import QemuError
from hypervisors.qemu.machine import Machine
from hypervisors.qemu.profiles import PROFILES, dist_disks, get_profile
from hypervisors.qemu.relay import ConsoleRelay, state_file
from hypervisors.qemu.timeouts import BOOT_TIMEOUT
from tools.terminal import pump_keys, to_stdout


@click.command("run")
@click.option(
    "--profile",
    type=click.Choice(sorted(PROFILES)),
    default="vmware",
    show_default=True,
    help="Virtual hardware of this hypervisor.",
)
@click.option(
    "--dist",
    "dist",
    type=click.Path(path_type=Path),
    default=Path("dist"),
    show_default=True,
    help="Built output to boot.",
)
@click.option(
    "--headless", is_flag=True, help="Read console commands from stdin; print the transcript."
)
@click.option("--hosted", is_flag=True, help="Run the runtime on image files, without a VM.")
@click.option(
    "--dir",
    "hosted_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="State directory for --hosted (default DIST/hosted).",
)
@click.option(
    "--http",
    "http_bind",
    default=None,
    metavar="HOST:PORT",
    help="--hosted: serve the web admin over HTTP here (e.g. 127.0.0.1:8080).",
)
@click.option(
    "--https",
    "https_bind",
    default=None,
    metavar="HOST:PORT",
    help="--hosted: serve the web admin over HTTPS here (the box's own certificate).",
)
@click.option(
    "--http-port",
    type=click.IntRange(1, 65535),
    default=None,
    help="VM: forward 127.0.0.1:N to the box's HTTP port 80 (default: a free port).",
)
@click.option(
    "--https-port",
    type=click.IntRange(1, 65535),
    default=None,
    help="VM: forward 127.0.0.1:N to the box's HTTPS port 443 (default: a free port).",
)
@click.option("--persist", is_flag=True, help="Write to DIST/disks instead of overlays.")
@click.option(
    "--timeout",
    type=float,
    default=BOOT_TIMEOUT,
    show_default=True,
    help="Seconds to wait for the prompt (boot, and each command).",
)
def run(
    profile: str,
    dist: Path,
    headless: bool,
    hosted: bool,
    hosted_dir: Path | None,
    http_bind: str | None,
    https_bind: str | None,
    http_port: int | None,
    https_port: int | None,
    persist: bool,
    timeout: float,
) -> None:
    """Boot the appliance and attach to its serial console."""
    if hosted:
        from appliance.hosted import run_hosted  # lazily: the VM paths do not need it

        state = Path(hosted_dir or dist / "hosted")
        _hosted_keyring(state, dist)
        result = run_hosted(
            state,
            sys.stdin.buffer,
            sys.stdout.buffer,
            http=_bind(http_bind, "--http"),
            https=_bind(https_bind, "--https"),
        )
        sys.exit(result if isinstance(result, int) else 0)
    disks = dist_disks(dist)
    missing = [str(d) for d in disks if not d.exists()]
    if missing:
        raise click.ClickException(f"no built disks ({', '.join(missing)}); run `ipva build`")
    with tempfile.TemporaryDirectory(prefix="ipva-run-") as workdir:
        ports = (http_port, https_port)
        if headless:
            run_headless(profile, disks, Path(workdir), persist, timeout, ports, dist)
        else:
            run_interactive(profile, disks, Path(workdir), persist, ports, dist)


def _bind(text: str | None, option: str) -> tuple[str, int] | None:
    if text is None:
        return None
    from appliance.services.http.listen import Bind

    try:
        bind = Bind.parse(text)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint=option) from e
    return bind.host, bind.port


Ports = tuple[int | None, int | None]  # host ports for the guest's HTTP and HTTPS


def _machine(
    profile: str,
    disks: list[Path],
    workdir: Path,
    persist: bool,
    sink: Callable[[bytes], None],
    ports: Ports,
) -> Machine:
    return Machine(
        get_profile(profile),
        disks,
        workdir,
        disk_mode="direct" if persist else "overlay",
        http_port=ports[0],
        https_port=ports[1],
        on_console=[sink],
    )


def _say_urls(box: Machine, when: str = "") -> None:
    click.echo(f"[ipva: web admin {box.http_url} and {box.https_url}{when}]\r", err=True)


def _hosted_keyring(state: Path, dist: Path) -> None:
    """No bootcode runs hosted: the box's keyring (which images it installs) is
    STATE/keyring; a state without one gets the build's (dist/keyring)."""
    ring = state / "keyring"
    if ring.exists() or not (dist / "keyring").is_dir():
        return
    ring.mkdir(parents=True)
    for pub in sorted((dist / "keyring").glob("*.pub")):
        shutil.copy2(pub, ring / pub.name)


def _share(box: Machine, dist: Path) -> ConsoleRelay:
    """The console on a loopback port too (before start(): no byte is missed)."""
    relay = ConsoleRelay(box.send_bytes, state_file(dist))  # started by `with`
    box.on_console.append(relay.publish)
    return relay


def run_headless(
    profile: str,
    disks: list[Path],
    workdir: Path,
    persist: bool,
    timeout: float,
    ports: Ports,
    dist: Path,
) -> None:
    out = sys.stdout.buffer

    def transcript(data: bytes) -> None:
        out.write(data.replace(b"\r", b""))
        out.flush()

    with (
        _machine(profile, disks, workdir, persist, transcript, ports) as box,
        _share(box, dist) as relay,
    ):
        try:
            box.start()
            click.echo(f"[ipva: console also at {relay.url} (ipva console --vm)]", err=True)
            box.wait_for_prompt(timeout)  # and for the web admin, which follows the prompt
            _say_urls(box)
            for line in sys.stdin:
                box.send_line(line.rstrip("\r\n"))
                box.wait_for_prompt(timeout)
            box.shutdown()
        except QemuError as exc:
            out.write(b"\n")
            out.flush()
            raise click.ClickException(f"the box did not reach its prompt: {exc}") from exc


def run_interactive(
    profile: str, disks: list[Path], workdir: Path, persist: bool, ports: Ports, dist: Path
) -> None:
    if not sys.stdin.isatty():
        raise click.UsageError("stdin is not a terminal; use --headless for scripts")
    with (
        _machine(profile, disks, workdir, persist, to_stdout, ports) as box,
        _share(box, dist) as relay,
    ):
        box.start()
        _say_urls(box, " once the console says HTTP0: web admin on")
        accel = box.launcher.argv[box.launcher.argv.index("-accel") + 1] if box.launcher else "?"
        click.echo(
            f"[ipva: {profile} profile, {accel}; Ctrl-] powers off and leaves; "
            f"console also at {relay.url}]\r",
            err=True,
        )
        pump_keys(box.send_bytes, box.is_running)
        click.echo("\n[ipva: powering off]", err=True)
