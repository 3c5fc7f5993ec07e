"""The guest's Debian packages: fetched with `apt-get download`, unpacked with `dpkg-deb -x`.

Nothing is installed on the host for the guest. Each build writes a manifest of exactly
which .deb (name, version, sha256) went in, next to its outputs.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from firmware.run import ToolError, run

# Debian's packaged kernel: not in the guest (firmware/kernel.py builds the box's own from
# Debian's source), but the floor bench/boot.py measures the box against. The meta-package
# names the ABI package; the generic amd64 flavour, as the box used to run.
KERNEL_META = "linux-image-amd64"
GUEST_PACKAGES = (
    "python3.11-minimal",
    "libpython3.11-minimal",
    "libpython3.11-stdlib",
    "libc6",
    "zlib1g",
    "libexpat1",
    "libffi8",  # ctypes: the perf-counter probe
    # the HTTP admin (appliance/services/http): TLS for Python's _ssl/_hashlib, the
    # `openssl` CLI that makes the box's certificate once, and the pure-Python server stack
    "libssl3",
    "openssl",
    "python3-cheroot",  # threaded WSGI server with TLS
    "python3-jaraco.functools",  # cheroot needs it
    "python3-more-itertools",  # jaraco.functools needs it
    "python3-werkzeug",  # requests, routing, streamed multipart parsing
    "python3-jinja2",  # the admin pages' templates
    "python3-markupsafe",  # jinja2's escaping (one small C extension)
    "ca-certificates",  # Mozilla's CAs: HTTPS update servers (payload.py bundles them)
    # signed firmware: the runtime checks uploads with python3-ecdsa's Ed25519 (the bootcode's
    # signify and busybox are built from Debian's source: firmware/bootbins.py)
    "python3-ecdsa",
    "python3-six",  # ecdsa needs it
)


@dataclass(frozen=True)
class Deb:
    package: str
    version: str
    sha256: str
    path: Path

    def manifest_entry(self) -> dict[str, str]:
        d = asdict(self)
        d["file"] = self.path.name
        del d["path"]
        return d

    @classmethod
    def from_manifest_entry(cls, entry: dict[str, str]) -> Deb:
        """manifest_entry() read back (the file's name only: the .deb need not be here)."""
        return cls(entry["package"], entry["version"], entry["sha256"], Path(entry["file"]))


def _unavailable(packages: list[str]) -> ToolError:
    return ToolError(
        f"Debian package {', '.join(packages)} not available: run `apt-get update` "
        "(bookworm sources)"
    )


def _candidate_versions(packages: list[str]) -> dict[str, str]:
    """Each package's candidate version, from one `apt-cache policy` run (a run per
    package took a second each: most of a build's package step when all are cached)."""
    out = run(["apt-cache", "policy", *packages], capture=True).stdout.decode()
    found = dict(re.findall(r"^(\S+):\n\s+Installed:.*\n\s+Candidate:\s*(\S+)", out, re.M))
    missing = [p for p in packages if found.get(p, "(none)") == "(none)"]
    if missing:
        raise _unavailable(missing)
    return found


def candidate_version(package: str) -> str:
    return _candidate_versions([package])[package]


def sources_of(packages: list[str]) -> list[tuple[str, str]]:
    """The source package (name, version) Debian built each package's candidate from, in
    order: a binNMU (version +bN) or a differently named binary says so in its Source
    field. One `apt-cache show` run for all (it shows the candidates: a run is ~0.5 s)."""
    # check=False: a package apt does not know is named below, not as apt-cache says it
    out = run(
        ["apt-cache", "show", "--no-all-versions", *packages], capture=True, check=False
    ).stdout
    found: dict[str, tuple[str, str]] = {}
    for record in out.decode().split("\n\n"):
        fields = dict(re.findall(r"^(Package|Version|Source):\s*(.*?)\s*$", record, re.M))
        if "Package" not in fields:
            continue
        m = re.fullmatch(r"(\S+)(?:\s+\((\S+)\))?", fields.get("Source", ""))
        version = fields["Version"]
        found[fields["Package"]] = (m[1], m[2] or version) if m else (fields["Package"], version)
    missing = [p for p in packages if p not in found]
    if missing:
        raise _unavailable(missing)
    return [found[p] for p in packages]


def resolve_dependency(meta: str, pattern: str) -> str:
    """The package a meta-package depends on whose name matches pattern (a regex)."""
    out = run(["apt-cache", "depends", meta], capture=True).stdout.decode()
    m = re.search(rf"Depends:\s*({pattern})\s*$", out, re.M)
    if not m:
        raise ToolError(f"cannot resolve {meta}: run `apt-get update`")
    return m[1]


def resolve_kernel_package() -> str:
    return resolve_dependency(KERNEL_META, r"linux-image-\S+-amd64")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch_debs(
    cache_dir: Path,
    packages: list[str] | None = None,
    note: Callable[[str], None] = lambda _text: None,
) -> list[Deb]:
    """Download (or reuse from cache) the guest's packages at their candidate versions.

    `note` hears one line per package (downloaded or cached), for progress output."""
    cache = cache_dir / "debs"
    cache.mkdir(parents=True, exist_ok=True)
    names = packages or list(GUEST_PACKAGES)
    debs = []
    versions = _candidate_versions(names)
    for i, name in enumerate(names, 1):
        version = versions[name]
        # apt names files with the epoch's ':' escaped as %3a; pure-Python packages are
        # architecture "all"
        stem = f"{name}_{version.replace(':', '%3a')}"
        found = [cache / f"{stem}_{arch}.deb" for arch in ("amd64", "all")]
        if not any(p.exists() for p in found):
            run(
                ["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", f"{name}={version}"],
                cwd=cache,
            )
            how = "downloaded"
        else:
            how = "cached"
        path = next((p for p in found if p.exists()), found[0])
        if not path.exists():
            raise ToolError(f"apt-get download {name}={version} did not produce {path.name}")
        note(f"[{i}/{len(names)}] {name} {version} ({path.stat().st_size / 1e6:.1f} MB, {how})")
        debs.append(Deb(name, version, _sha256(path), path))
    return debs


def unpack(debs: list[Deb], root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for deb in debs:
        run(["dpkg-deb", "-x", deb.path, root])


def _source_list() -> str:
    """deb-src lines for the Debian repositories the host's apt already uses (its mirror,
    its suites): the source packages of the same release as the binary ones."""
    out = run(
        ["apt-get", "indextargets", "--format", "$(REPO_URI) $(RELEASE) $(COMPONENT)",
         "Created-By: Packages", "Origin: Debian"],
        capture=True,
    ).stdout.decode()  # fmt: skip
    lines = sorted({f"deb-src {ln}\n" for ln in out.splitlines() if len(ln.split()) == 3})
    if not lines:
        raise ToolError("no Debian repository in apt's sources: run `apt-get update`")
    return "".join(lines)


def fetch_source(
    cache_dir: Path, package: str, version: str, note: Callable[[str], None] = lambda _t: None
) -> Deb:
    """Debian's source package `package`=`version` (its .dsc beside its tarballs), downloaded
    once into the cache with `apt-get source`. The host's apt has no deb-src lines (a fresh
    Debian 12 has none), so this uses its own source list and package lists under the
    cache, made from the host's repositories; nothing of the host's apt changes."""
    cache = (cache_dir / "sources").resolve()  # apt runs there: its options need no cwd
    cache.mkdir(parents=True, exist_ok=True)
    dsc = cache / f"{package}_{version.split(':')[-1]}.dsc"
    if not dsc.exists():
        apt = cache / "apt"
        (apt / "lists/partial").mkdir(parents=True, exist_ok=True)
        (apt / "sources.list").write_text(_source_list())
        opts = [
            "-q", "-o", f"Dir::Etc::SourceList={apt / 'sources.list'}",
            "-o", "Dir::Etc::SourceParts=/dev/null", "-o", f"Dir::State::Lists={apt / 'lists'}",
            "-o", f"Dir::Cache={apt}", "-o", "APT::Sandbox::User=root",
            # no binary caches of the lists: one made before `update` would hide the new ones
            "-o", "Dir::Cache::pkgcache=", "-o", "Dir::Cache::srcpkgcache=",
        ]  # fmt: skip
        get = ["apt-get", *opts, "source", "--download-only", f"{package}={version}"]
        try:
            run(get, cwd=cache)
        except ToolError:  # no lists yet, or older ones that lack this version
            run(["apt-get", *opts, "update"])
            run(get, cwd=cache)
        if not dsc.exists():
            raise ToolError(f"apt-get source {package}={version} did not produce {dsc.name}")
        note(f"source {package} {version} (downloaded)")
    return Deb(package, version, _sha256(dsc), dsc)


def unpack_source(dsc: Path, dest: Path) -> None:
    """The source tree with Debian's patches applied (dpkg-source -x checks the files' sums
    against the .dsc, which apt checked against the signed Sources list)."""
    run(["dpkg-source", "-x", dsc, dest])


def write_manifest(debs: list[Deb], path: Path) -> None:
    entries = [d.manifest_entry() for d in sorted(debs, key=lambda d: d.package)]
    path.write_text(json.dumps({"debs": entries}, indent=2) + "\n")
