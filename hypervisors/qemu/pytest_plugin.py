"""pytest plugin (entry point `ipva`): boot IPVA images under QEMU from tests.

Fixtures:
  ipva_dist     (session) the built `dist/`: `--ipva-dist`/`$IPVA_DIST` if given, else
                `<rootdir>/dist`, rebuilt once per session with `ipva build` when
                `dist/ipva.bin` is missing or every file in dist/ is older than some file
                under appliance/, firmware/ or images/ (a simple mtime check; set
                IPVA_DIST to skip it).
  ipva_machine  factory: `ipva_machine("vmware", nics=["rtl8139"], ram_mib=128)` → a started
                Machine booting qcow2 overlays of dist/disks (dist stays pristine). Profile
                fields and Machine options (prompt, fatal, disk_mode, accel, start) are
                keyword arguments; `images=[…]` (or `disks=[…]`, a list) boots other image
                files instead of dist/disks, `disks=3` is the profile's disk count. Every
                machine is stopped at teardown. `resume=True`: start from a saved state
                of the same hardware and disks, at its prompt, instead of booting (for
                tests that do not test the boot): see ipva_saved_states.
  ipva_saved_states (session) SavedStates: one saved state per hardware, disks and QEMU,
                made by booting once (in .cache/saved-states/, kept across sessions while
                the fingerprint holds; a lock per state, so parallel workers boot it once).
                A state that does not fit or load is never fatal: the machine boots cold
                and the log says why.
  ipva_firmware (session) factory: `ipva_firmware("16r1sr2", 1601002)` → the path of an
                ipva.bin of that version and build (`fail_at_start=True`: one whose runtime
                exits at start), built once per session (cached in .cache/firmware/).
Tests using them are marked `vm`. On failure each machine's console tail is added to the
report, with the path of the full console log.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hypervisors.qemu.errors import QemuError
from hypervisors.qemu.machine import Machine, boot_and_save
from hypervisors.qemu.profiles import Profile, dist_disks, get_profile
from hypervisors.qemu.savedstate import SavedState

log = logging.getLogger(__name__)

SOURCE_DIRS = ("appliance", "firmware", "images", "hypervisors", "tools")
REPORT_TAIL_LINES = 200
_PROFILE_FIELDS = {f.name for f in dataclasses.fields(Profile)}
_MACHINES = pytest.StashKey[list[Machine]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--ipva-dist", default=None, help="a built dist/ to boot (default $IPVA_DIST, else build)"
    )


def pytest_configure(config: pytest.Config) -> None:
    # CI users' projects get the marker without declaring it
    config.addinivalue_line("markers", "vm: boots an IPVA image under QEMU (slow)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if {"ipva_machine", "ipva_dist", "ipva_firmware"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.vm)


def _newest_source(root: Path) -> float:
    newest = 0.0
    for name in SOURCE_DIRS:
        for path in (root / name).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                newest = max(newest, path.stat().st_mtime)
    return newest


@contextlib.contextmanager
def build_lock(root: Path) -> Iterator[None]:
    """Held around every build of the tree: they share .cache/work (and pytest-xdist
    workers or a second session may build at the same time)."""
    (root / ".cache").mkdir(exist_ok=True)
    with (root / ".cache" / "build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _build_unless_fresh(root: Path, out: Path, args: list[str]) -> None:
    """`ipva build --out OUT ARGS` in `root` unless OUT/ipva.bin is newer than the sources."""
    out.mkdir(parents=True, exist_ok=True)
    with build_lock(root):
        # ipva.bin carries SOURCE_DATE_EPOCH as its mtime: judge by the newest file written
        built = [p.stat().st_mtime for p in out.iterdir() if p.is_file() and p.name[0] != "."]
        if not (out / "ipva.bin").exists() or max(built) < _newest_source(root):
            subprocess.run(
                [sys.executable, "-m", "tools.cli", "build", "--out", str(out), *args],
                cwd=root,
                check=True,
                stdin=subprocess.DEVNULL,
            )


def build_dist(root: Path) -> Path:
    """Run `ipva build` in `root` unless dist/ipva.bin is newer than the sources."""
    dist = root / "dist"
    _build_unless_fresh(root, dist, [])
    return dist


@pytest.fixture(scope="session")
def ipva_dist(request: pytest.FixtureRequest) -> Path:
    given = request.config.getoption("--ipva-dist") or os.environ.get("IPVA_DIST")
    dist = Path(given) if given else build_dist(Path(request.config.rootpath))
    missing = [str(d) for d in dist_disks(dist) if not d.exists()]
    if missing:
        pytest.fail(f"ipva_dist: {dist} lacks {', '.join(missing)}", pytrace=False)
    return dist


@pytest.fixture(scope="session")
def ipva_firmware(request: pytest.FixtureRequest, ipva_dist: Path) -> Callable[..., Path]:
    """Factory: `ipva_firmware("16r1sr2", 1601002, fail_at_start=False)` → an ipva.bin
    built from the same sources with that identity (for update tests), once per session
    and kept in .cache/firmware/ while the sources do not change."""
    root = Path(request.config.rootpath)

    def factory(version: str, build: int, *, fail_at_start: bool = False) -> Path:
        name = f"{version}-{build}" + ("-fail-at-start" if fail_at_start else "")
        out = root / ".cache" / "firmware" / name
        args = ["--targets", "none", "--version", version, "--build", str(build)]
        _build_unless_fresh(root, out, args + (["--fail-at-start"] if fail_at_start else []))
        return out / "ipva.bin"

    return factory


class SavedStates:
    """Saved states under `root`, one directory per fingerprint (its hash)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def get(self, profile: Profile, disks: list[Path], accel: str | None = None) -> SavedState:
        """The state for this hardware and these disks: made now (one cold boot, then
        saved at the quiet prompt) unless a fitting one is there. Raises QemuError if the
        boot fails (the caller boots cold and sees the failure itself)."""
        probe = Machine(profile, disks, accel=accel)
        want = probe.fingerprint()
        probe.cleanup()
        key = hashlib.sha256(json.dumps(want, sort_keys=True).encode()).hexdigest()[:16]
        state = SavedState(self.root / f"{profile.name}-{key}")
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / f"{state.path.name}.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if state.unusable(want) is None:
                return state
            for other in self.root.glob(f"{profile.name}-*/"):
                if SavedState(other).stale():  # made from disks that have changed since
                    shutil.rmtree(other, ignore_errors=True)
            log.info("saving state %s: booting %s once", state.path, profile.name)
            return boot_and_save(profile, disks, state.path, accel)


@pytest.fixture(scope="session")
def ipva_saved_states(request: pytest.FixtureRequest) -> SavedStates:
    return SavedStates(Path(request.config.rootpath) / ".cache" / "saved-states")


@pytest.fixture
def ipva_machine(
    request: pytest.FixtureRequest,
    ipva_dist: Path,
    ipva_saved_states: SavedStates,
    tmp_path: Path,
) -> Iterator[Callable[..., Machine]]:
    machines: list[Machine] = []
    request.node.stash[_MACHINES] = machines

    def factory(
        profile: str = "vmware", *, start: bool = True, resume: bool = False, **options: Any
    ) -> Machine:
        # `disks` is a list of images here (the profile's `disks` is a count)
        images = options.pop("images", None)
        if not isinstance(options.get("disks", 0), int):
            images = options.pop("disks")
        overrides = {k: options.pop(k) for k in list(options) if k in _PROFILE_FIELDS}
        disks = images or dist_disks(ipva_dist)
        hardware = get_profile(profile, **overrides)
        if resume and "saved_state" not in options:
            try:
                options["saved_state"] = ipva_saved_states.get(
                    hardware, disks, options.get("accel")
                )
            except QemuError as exc:
                log.warning("no saved state for %s, booting cold: %s", profile, exc)
        machine = Machine(
            hardware,
            disks,
            tmp_path / f"vm{len(machines)}-{profile}",
            **options,
        )
        machines.append(machine)
        if start:
            machine.start()
        return machine

    yield factory
    for machine in machines:
        machine.cleanup()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    if not report.failed:
        return
    machines: list[Machine] = item.stash.get(_MACHINES, [])
    for index, machine in enumerate(machines):
        tail = "\n".join(machine.last_lines(REPORT_TAIL_LINES))
        report.sections.append(
            (
                f"ipva console vm{index} ({machine.profile.name}; "
                f"full log {machine.console_log_path})",
                tail or "(no console output)",
            )
        )
