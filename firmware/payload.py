"""The firmware payload: a squashfs with CPython 3.11 (Debian's), the runtime and construct.

The stdlib is pruned to what the guest can import: the import graph (modulefinder, every
import statement in every function too) from every module of the runtime and of the
Python packages it carries, plus the interpreter's start; modules only an import by a
computed name reaches are named (CODECS). Compiled to sourceless .pyc
(hash-based, unchecked: reproducible, no source and no stat of one at import); only the C
extensions the runtime uses. The bootcode mounts it at /fw and links /usr, /lib64 and
/lib/x86_64-linux-gnu into it.
"""

from __future__ import annotations

import importlib.util
import json
import modulefinder
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from collections.abc import Set as AbstractSet
from pathlib import Path, PurePosixPath
from typing import IO, Any

from appliance.version import STAMP_NAME, Stamp
from firmware.payload_edits import edited_construct, edited_stdlib
from firmware.promptimports import PromptImports, import_prompt
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
# what the interpreter imports before the runtime (`python3.11 -S -c …`; runpy: for `-m`,
# which a developer may still use in the guest)
STARTUP_MODULES = ("runpy", "site", "encodings")
# The codecs (encodings.<name>, looked up by name, so no import statement shows them): the
# ones the runtime and its packages name (ascii, utf-8, latin-1, idna, unicode_escape), what
# the stdlib modules they use look up (json: utf-16/32 by BOM; idna: punycode; zipfile:
# cp437) and the interpreter's own (utf_8_sig, raw_unicode_escape). The other 100 codecs
# (0.2 MB of the firmware) are for text the box never reads.
CODECS = ("utf_8", "utf_8_sig", "ascii", "latin_1", "idna", "punycode", "utf_16",
          "utf_16_le", "utf_16_be", "utf_32", "utf_32_le", "utf_32_be", "unicode_escape",
          "raw_unicode_escape", "cp437")  # fmt: skip
# reached only through tools for a developer at a terminal (profilers, a browser, the
# doc viewer), each imported in a function the box never calls: not followed. (pdb stays:
# construct's Debugger imports it when one runs.) tests/vm/test_payload_imports.py imports every
# module of the runtime against the payload's stdlib.
NOT_FOLLOWED = ["profile", "cProfile", "pstats", "timeit", "webbrowser", "rlcompleter",
                "doctest", "pydoc", "tkinter"]  # fmt: skip
# C extensions kept (the rest are builtin in Debian's interpreter or unused)
DYNLOAD_KEEP = {"_json", "_queue", "_ctypes", "_contextvars", "_typing", "mmap", "resource",
                "termios", "_zoneinfo", "_ssl", "_hashlib"}  # fmt: skip
LIBS = ("libc.so.6", "libm.so.6", "libz.so.1", "libexpat.so.1", "libffi.so.8",
        "libssl.so.3", "libcrypto.so.3")  # fmt: skip
PURE_DEPS = ("construct",)  # third-party packages the runtime imports in the guest
# and edits the payload's copies get (firmware/payload_edits.py: the imports only rarely
# used code needs, made where that code is; four stdlib modules get theirs in
# make_payload_tree)
PURE_DEP_EDITS: dict[str, Callable[[Path, Path], Path]] = {"construct": edited_construct}
# Python packages taken from the Debian debs (GUEST_PACKAGES in firmware/debs.py), as
# import names under /usr/lib/python3/dist-packages; the host venv pins the same versions
# (a name ending in .py is a single module); ecdsa (with six): the signature on ipva.bin
DEB_PYTHON = ("cheroot", "jaraco", "more_itertools", "werkzeug", "jinja2", "markupsafe",
              "ecdsa", "six.py")  # fmt: skip
# parts of them the box never runs: test suites, werkzeug's interactive debugger (its
# jQuery is a separate Debian package we do not carry), cheroot's command line
DEB_PYTHON_DROP = {"test", "testing.py", "debug", "cli.py", "__main__.py", "middleware",
                   "testapp.py"}  # fmt: skip
INTERPRETER = Path(f"usr/bin/python{PYVER}")
BINARIES = ("usr/bin/openssl",)  # run once per box: the self-signed certificate
# Debian's CA certificates (ca-certificates) as one bundle where the guest's OpenSSL looks
# by default (OPENSSLDIR /usr/lib/ssl): `mod cmd UP0 prot https://…` and UP1 verify servers.
# The package's postinst (update-ca-certificates) would build /etc/ssl/certs/ca-certificates.crt
# the same way: every certificate of the mozilla directory, in name order.
CA_CERTS_DIR = "usr/share/ca-certificates/mozilla"
CA_BUNDLE = "usr/lib/ssl/cert.pem"
# zstd's decompression is as fast at 19 as at 15; 1 MiB blocks (squashfs' largest) pack
# 5% smaller than 256 KiB ones, and the files are read whole at boot anyway
SQUASHFS_LEVEL = 19
SQUASHFS_BLOCK = 1 << 20


# Runs in a fresh, isolated interpreter with a fixed hash seed: marshal output depends on
# the process's state (string interning and reference counts decide FLAG_REF) and on string
# hashes (the order of frozenset constants), so compiling inside a long-lived process such as
# pytest would give other bytes than `ipva build` does. What py_compile does (an unchecked
# hash-based .pyc), but from the syntax tree less the docstrings of modules and functions:
# nothing in the guest reads them (class docstrings stay: dataclasses would otherwise make
# one from inspect.signature at every class creation), and they are a tenth of the bytes.
# -X no_debug_ranges: no column tables (where in a line each instruction is); they only put
# carets under a traceback's source line, and the payload has no source (-0.8 MB packed).
_COMPILE_SCRIPT = """
import ast, json, os, sys
from importlib import _bootstrap_external as ext, util

def without_docstrings(tree):
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef)):
            first = node.body[0] if node.body else None
            if (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
                    and isinstance(first.value.value, str)):
                node.body = node.body[1:] or [ast.copy_location(ast.Pass(), first)]
    return tree

for src, cfile, dfile in json.load(sys.stdin):
    with open(src, "rb") as f:
        source = f.read()
    tree = without_docstrings(ast.parse(source, dfile))
    code = compile(tree, dfile, "exec", dont_inherit=True)
    data = ext._code_to_hash_pyc(code, util.source_hash(source), False)
    with open(cfile + ".new", "wb") as f:
        f.write(data)
    os.replace(cfile + ".new", cfile)
"""


def _compile_tree(
    src: Path,
    dst: Path,
    guest_dir: str,
    drop: AbstractSet[str] = frozenset(),
    *,
    nested: bool = False,
    keep: Callable[[Path], bool] = lambda _rel: True,
) -> None:
    """Copy a Python tree (or one module: into `dst`) as sourceless .pyc files (legacy
    layout, next to where .py was).

    `drop` names top-level entries to leave out, or with `nested` entries at any depth;
    `keep(relative path)` says which of the other files go in."""
    jobs = []
    for path in [src] if src.is_file() else sorted(src.rglob("*")):
        rel = Path(path.name) if src.is_file() else path.relative_to(src)
        dropped = set(rel.parts if nested else rel.parts[:1]) & drop
        if dropped or "__pycache__" in rel.parts or not (path.is_dir() or keep(rel)):
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
        [sys.executable, "-I", "-X", "no_debug_ranges", "-c", _COMPILE_SCRIPT],
        input=json.dumps(jobs).encode(),
        env={"PYTHONHASHSEED": "0"},
    )


def _modules(root: Path, package: str, drop: AbstractSet[str] = frozenset()) -> dict[str, Path]:
    """Every module of the package at `root` (named `package`) → its file; `drop` parts out."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if set(rel.parts) & (drop | {"__pycache__"}):
            continue
        parts = [package, *rel.with_suffix("").parts]
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


class _Finder(modulefinder.ModuleFinder):
    def find_module(
        self, name: str, path: str | None, parent: modulefinder.Module | None = None
    ) -> tuple[IO[Any] | None, str | None, tuple[str, str, int]]:
        try:
            return super().find_module(name, path, parent)
        except AttributeError:  # a namespace package (jaraco): no loader, not the stdlib's
            raise ImportError(name) from None


def stdlib_reached(stdlib: Path, path: list[str], roots: dict[str, Path]) -> set[Path]:
    """The stdlib files (relative to `stdlib`) that the modules `roots` (name → file) and
    the interpreter's start can reach, following every import statement of every module
    reached (modulefinder over `stdlib` + `path`)."""
    stdlib = stdlib.resolve()
    finder = _Finder(path=[str(stdlib), str(stdlib / "lib-dynload"), *path],
                     excludes=NOT_FOLLOWED)  # fmt: skip
    for name in STARTUP_MODULES:
        finder.import_hook(name)
    for codec in CODECS:  # and what each imports (idna: stringprep)
        finder.import_hook(f"encodings.{codec}")
    for name, file in roots.items():
        try:
            finder.import_hook(name)
        except ImportError:  # in a namespace package: as a script (no relative imports)
            finder.run_script(str(file))
    reached = set()
    for module in finder.modules.values():
        where = getattr(module, "__file__", None)  # modulefinder.Module's, untyped in typeshed
        if where is None:
            continue  # built in
        file = Path(where).resolve()
        if file.suffix == ".py" and file.is_relative_to(stdlib):
            reached.add(file.relative_to(stdlib))
    return reached


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


def _pure_dep_dir(dep: str) -> Path:
    spec = importlib.util.find_spec(dep)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"{dep} not installed on the build host: pip install {dep}")
    return Path(next(iter(spec.submodule_search_locations)))


def _runtime_roots(debroot: Path, repo: Path) -> tuple[list[str], dict[str, Path]]:
    """(search path, modules) whose imports decide which stdlib modules go in: every
    module of the runtime and of the packages it carries."""
    dist = debroot / "usr/lib/python3/dist-packages"
    path = [str(p.resolve()) for p in (repo, dist, *(_pure_dep_dir(d).parent for d in PURE_DEPS))]
    roots = _modules(repo / "appliance", "appliance")
    for dep in PURE_DEPS:
        roots |= _modules(_pure_dep_dir(dep), dep)
    for name in DEB_PYTHON:
        if name.endswith(".py"):  # a single module (six.py)
            roots[name.removesuffix(".py")] = dist / name
        else:
            roots |= _modules(dist / name, name, DEB_PYTHON_DROP)
    return path, roots


def make_payload_tree(debroot: Path, repo: Path, tree: Path, stamp: Stamp) -> PromptImports:
    """Lay out the payload root in `tree` from the unpacked .debs and this repo; `stamp`
    (version, build) goes next to appliance/version.pyc, where the runtime reads it. Last,
    the prompt's imports are made from it (firmware/promptimports.py: their dataclass
    methods compiled ahead into the tree); returns what they read."""
    if tree.exists():
        shutil.rmtree(tree)
    (tree / "usr/bin").mkdir(parents=True)
    shutil.copy2(debroot / INTERPRETER, tree / INTERPRETER)
    (tree / "lib64").mkdir()
    shutil.copy2(
        (debroot / "lib64/ld-linux-x86-64.so.2").resolve(), tree / "lib64/ld-linux-x86-64.so.2"
    )
    for lib in LIBS:
        copy_lib(debroot, lib, tree / "lib/x86_64-linux-gnu")
    stdlib_src = debroot / "usr/lib" / f"python{PYVER}"
    stdlib = tree / "usr/lib" / f"python{PYVER}"
    reached = stdlib_reached(stdlib_src, *_runtime_roots(debroot, repo))
    edited_dir = tree.with_name(f"{tree.name}.stdlib")  # compiled in place of the originals
    edited = {f.relative_to(edited_dir): f for f in edited_stdlib(stdlib_src, edited_dir)}
    _compile_tree(
        stdlib_src, stdlib, f"/usr/lib/python{PYVER}", STDLIB_DROP | {"lib-dynload"},
        keep=lambda rel: rel in reached and rel not in edited,
    )  # fmt: skip
    for rel, file in edited.items():
        if rel in reached:
            guest = PurePosixPath(f"/usr/lib/python{PYVER}") / rel.parent
            _compile_tree(file, stdlib / rel.parent, str(guest))
    shutil.rmtree(edited_dir)
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
        src, edit = _pure_dep_dir(dep), PURE_DEP_EDITS.get(dep)
        work = tree.with_name(f"{tree.name}.{dep}")  # the edited copy, compiled from
        _compile_tree(edit(src, work) if edit else src, app / dep, f"/usr/lib/ipva/{dep}")
        shutil.rmtree(work, ignore_errors=True)
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
    return import_prompt(tree, app, stdlib)


def set_tree_mtime(tree: Path, epoch: int) -> None:
    for p in [tree, *tree.rglob("*")]:
        os.utime(p, (epoch, epoch), follow_symlinks=False)


def make_squashfs(
    tree: Path,
    out: Path,
    epoch: int,
    level: int = SQUASHFS_LEVEL,
    first: Sequence[Path] = (),
) -> None:
    """`tree` as a squashfs image `out`; the files `first` (relative to `tree`) laid out
    first, in that order (firmware/readorder.py: what a cold boot reads first)."""
    out.unlink(missing_ok=True)
    set_tree_mtime(tree, epoch)
    order = out.with_name(f"{out.name}.sort")
    # mksquashfs' sort list: a path and a priority a line, the highest first
    order.write_text(
        "".join(f"{(tree / rel).resolve()} {32767 - i}\n" for i, rel in enumerate(first))
    )
    run(
        ["mksquashfs", tree, out, "-noappend", "-quiet", "-no-progress", "-all-root",
         "-comp", "zstd", "-Xcompression-level", str(level), "-b", str(SQUASHFS_BLOCK),
         "-no-xattrs", "-sort", order],
        env={"SOURCE_DATE_EPOCH": str(epoch)},  # mksquashfs stamps mkfs and file times
    )  # fmt: skip
    order.unlink()
