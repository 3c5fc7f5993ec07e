"""The firmware payload: a squashfs with CPython 3.11 (Debian's), the runtime and construct.

Pruned stdlib, compiled to sourceless .pyc (hash-based, unchecked: reproducible and no
source needed); only the C extensions the runtime uses. The bootcode mounts it at /fw and
links /usr, /lib64 and /lib/x86_64-linux-gnu into it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
from collections.abc import Set as AbstractSet
from pathlib import Path

from appliance.version import STAMP_NAME, Stamp
from firmware.run import run

PYVER = "3.11"
# stdlib packages and modules the box never needs (big, or for other platforms/humans)
STDLIB_DROP = {
    "test", "idlelib", "tkinter", "turtledemo", "lib2to3", "ensurepip", "distutils",
    "pydoc_data", "sqlite3", "curses", "dbm", "venv", "unittest", "multiprocessing",
    "asyncio", "xmlrpc", "wsgiref", "tomllib", "__phello__", "site-packages",
    "dist-packages", "config-3.11-x86_64-linux-gnu", "pydoc.py", "turtle.py", "doctest.py",
    "mailbox.py", "imaplib.py", "nntplib.py", "smtplib.py", "smtpd.py", "ftplib.py",
    "poplib.py", "telnetlib.py", "_pydecimal.py", "decimal.py", "antigravity.py", "this.py",
    "__hello__.py", "cgi.py", "cgitb.py", "aifc.py", "sunau.py", "wave.py", "chunk.py",
    "sndhdr.py", "audioop.py", "imghdr.py", "mailcap.py", "tabnanny.py", "pipes.py",
    "LICENSE.txt", "EXTERNALLY-MANAGED", "_osx_support.py", "_aix_support.py",
}  # fmt: skip
# C extensions kept (the rest are builtin in Debian's interpreter or unused)
DYNLOAD_KEEP = {"_json", "_queue", "_ctypes", "_contextvars", "_typing", "mmap", "resource",
                "termios", "_zoneinfo", "_ssl", "_hashlib"}  # fmt: skip
LIBS = ("libc.so.6", "libm.so.6", "libz.so.1", "libexpat.so.1", "libffi.so.8",
        "libssl.so.3", "libcrypto.so.3")  # fmt: skip
PURE_DEPS = ("construct",)  # third-party packages the runtime imports in the guest
# Python packages taken from the Debian debs (GUEST_PACKAGES in firmware/debs.py), as
# import names under /usr/lib/python3/dist-packages; the host venv pins the same versions
# (a name ending in .py is a single module); ecdsa (with six): the signature on ipva.bin
DEB_PYTHON = ("cheroot", "jaraco", "more_itertools", "werkzeug", "jinja2", "markupsafe",
              "ecdsa", "six.py")  # fmt: skip
# parts of them the box never runs: test suites, werkzeug's interactive debugger (its
# jQuery is a separate Debian package we do not carry), cheroot's command line
DEB_PYTHON_DROP = {"test", "testing.py", "debug", "cli.py", "__main__.py"}
BINARIES = ("usr/bin/openssl",)  # run once per box: the self-signed certificate
# Debian's CA certificates (ca-certificates) as one bundle where the guest's OpenSSL looks
# by default (OPENSSLDIR /usr/lib/ssl): `mod cmd UP0 prot https://…` and UP1 verify servers.
# The package's postinst (update-ca-certificates) would build /etc/ssl/certs/ca-certificates.crt
# the same way: every certificate of the mozilla directory, in name order.
CA_CERTS_DIR = "usr/share/ca-certificates/mozilla"
CA_BUNDLE = "usr/lib/ssl/cert.pem"


# Runs in a fresh, isolated interpreter with a fixed hash seed: marshal output depends on
# the process's state (string interning and reference counts decide FLAG_REF) and on string
# hashes (the order of frozenset constants), so compiling inside a long-lived process such as
# pytest would give other bytes than `ipva build` does.
_COMPILE_SCRIPT = """
import json, py_compile, sys
for src, cfile, dfile in json.load(sys.stdin):
    py_compile.compile(src, cfile=cfile, dfile=dfile, doraise=True,
                       invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
"""


def _compile_tree(
    src: Path,
    dst: Path,
    guest_dir: str,
    drop: AbstractSet[str] = frozenset(),
    *,
    nested: bool = False,
) -> None:
    """Copy a Python tree (or one module: into `dst`) as sourceless .pyc files (legacy
    layout, next to where .py was).

    `drop` names top-level entries to leave out, or with `nested` entries at any depth."""
    jobs = []
    for path in [src] if src.is_file() else sorted(src.rglob("*")):
        rel = Path(path.name) if src.is_file() else path.relative_to(src)
        dropped = set(rel.parts if nested else rel.parts[:1]) & drop
        if dropped or "__pycache__" in rel.parts:
            continue
        out = dst / rel
        if path.is_dir():
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".py":
            # dfile: the path tracebacks show in the guest
            jobs.append((str(path), str(out.with_suffix(".pyc")), f"{guest_dir}/{rel}"))
        elif path.suffix not in (".pyc", ".pyi", ".md") and path.name != "py.typed":
            shutil.copy2(path, out)
    run(
        [sys.executable, "-I", "-c", _COMPILE_SCRIPT],
        input=json.dumps(jobs).encode(),
        env={"PYTHONHASHSEED": "0"},
    )


def copy_lib(root: Path, name: str, dest: Path) -> None:
    """Library `name` of the unpacked packages in `root` into directory `dest`."""
    for d in ("lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu"):
        src = root / d / name
        if src.exists():
            real = src.resolve()
            out = dest / name
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(real, out)
            return
    raise FileNotFoundError(f"{name} not in the unpacked Debian packages")


def _ca_bundle(debroot: Path, out: Path) -> None:
    certs = sorted((debroot / CA_CERTS_DIR).glob("*.crt"))
    if not certs:
        raise FileNotFoundError(f"no CA certificates in {debroot / CA_CERTS_DIR}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(b"".join(c.read_bytes().rstrip(b"\n") + b"\n" for c in certs))


def make_payload_tree(debroot: Path, repo: Path, tree: Path, stamp: Stamp) -> None:
    """Lay out the payload root in `tree` from the unpacked .debs and this repo; `stamp`
    (version, build) goes next to appliance/version.pyc, where the runtime reads it."""
    if tree.exists():
        shutil.rmtree(tree)
    (tree / "usr/bin").mkdir(parents=True)
    shutil.copy2(debroot / "usr/bin/python3.11", tree / "usr/bin/python3.11")
    (tree / "lib64").mkdir()
    shutil.copy2(
        (debroot / "lib64/ld-linux-x86-64.so.2").resolve(), tree / "lib64/ld-linux-x86-64.so.2"
    )
    for lib in LIBS:
        copy_lib(debroot, lib, tree / "lib/x86_64-linux-gnu")
    stdlib_src = debroot / "usr/lib" / f"python{PYVER}"
    stdlib = tree / "usr/lib" / f"python{PYVER}"
    _compile_tree(stdlib_src, stdlib, f"/usr/lib/python{PYVER}", STDLIB_DROP | {"lib-dynload"})
    (stdlib / "lib-dynload").mkdir()
    for so in sorted((stdlib_src / "lib-dynload").glob("*.so")):
        if so.name.split(".")[0] in DYNLOAD_KEEP:
            shutil.copy2(so, stdlib / "lib-dynload" / so.name)
    for binary in BINARIES:
        (tree / binary).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(debroot / binary, tree / binary)
    _ca_bundle(debroot, tree / CA_BUNDLE)
    app = tree / "usr/lib/ipva"
    _compile_tree(repo / "appliance", app / "appliance", "/usr/lib/ipva/appliance")
    (app / "appliance" / STAMP_NAME).write_text(stamp.to_json() + "\n")
    for dep in PURE_DEPS:
        spec = importlib.util.find_spec(dep)
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(f"{dep} not installed on the build host: pip install {dep}")
        src = Path(next(iter(spec.submodule_search_locations)))
        _compile_tree(src, app / dep, f"/usr/lib/ipva/{dep}")
    dist = debroot / "usr/lib/python3/dist-packages"
    for name in DEB_PYTHON:
        if not (dist / name).exists():
            raise FileNotFoundError(f"{name} not in the unpacked Debian packages ({dist})")
        if name.endswith(".py"):
            _compile_tree(dist / name, app, "/usr/lib/ipva")
            continue
        tests = {p.name for p in (dist / name).rglob("test_*.py")}  # ecdsa ships its own
        _compile_tree(
            dist / name, app / name, f"/usr/lib/ipva/{name}", DEB_PYTHON_DROP | tests,
            nested=True,
        )  # fmt: skip


def set_tree_mtime(tree: Path, epoch: int) -> None:
    for p in [tree, *tree.rglob("*")]:
        os.utime(p, (epoch, epoch), follow_symlinks=False)


def make_squashfs(tree: Path, out: Path, epoch: int, level: int = 15) -> None:
    out.unlink(missing_ok=True)
    set_tree_mtime(tree, epoch)
    run(
        ["mksquashfs", tree, out, "-noappend", "-quiet", "-no-progress", "-all-root",
         "-comp", "zstd", "-Xcompression-level", str(level), "-b", "256K", "-no-xattrs"],
        env={"SOURCE_DATE_EPOCH": str(epoch)},  # mksquashfs stamps mkfs and file times
    )  # fmt: skip
