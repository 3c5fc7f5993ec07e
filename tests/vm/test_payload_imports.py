"""The payload's pruned stdlib holds every module the runtime and its packages import at
the top: each of their modules is imported against the payload's own tree (the host's
CPython is Debian's 3.11, as the guest's; no QEMU needed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from firmware.ipvabin import HEADER_SIZE

pytestmark = pytest.mark.vm  # needs the built dist/

IMPORT_ALL = """
import importlib, pathlib, sys
root = pathlib.Path(sys.argv[1])
failed = []
for pyc in sorted(root.rglob("*.pyc")):
    parts = pyc.relative_to(root.parent).with_suffix("").parts
    if parts[-1] == "__main__" or parts[-1] in ("mbcs", "oem"):
        continue  # runs the box; Windows' codecs
    name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    try:
        importlib.import_module(name)
    except Exception as e:
        failed.append(f"{name}: {type(e).__name__}: {e}")
print("\\n".join(failed))
sys.exit(1 if failed else 0)
"""


def test_every_runtime_module_imports_against_the_payloads_stdlib(
    ipva_dist: Path, tmp_path: Path
) -> None:
    tree = tmp_path / "payload"
    subprocess.run(["unsquashfs", "-q", "-n", "-o", str(HEADER_SIZE), "-d", tree,
                    ipva_dist / "ipva.bin"], check=True)  # fmt: skip
    stdlib = tree / "usr/lib/python3.11"
    host_dynload = Path(sys.base_prefix) / "lib/python3.11/lib-dynload"  # the C extensions
    ipva = tree / "usr/lib/ipva"
    packages = [ipva / p for p in ("appliance", "construct", "werkzeug", "jinja2", "cheroot")]
    for package in [*packages, stdlib / "encodings"]:  # codecs are looked up by name
        # -S -I: no site, no user paths; the path is the payload's and nothing else
        code = (f"import sys; sys.path[:] = [{str(tree / 'usr/lib/ipva')!r}, {str(stdlib)!r},"
                f" {str(host_dynload)!r}]\n" + IMPORT_ALL)  # fmt: skip
        proc = subprocess.run(
            [sys.base_prefix + "/bin/python3.11", "-S", "-I", "-c", code,
             str(package)],
            capture_output=True, text=True, cwd=tmp_path,
        )  # fmt: skip
        assert proc.returncode == 0, f"{package.name}:\n{proc.stdout}{proc.stderr}"


def test_the_payloads_bytecode_is_sourceless_and_never_checked_against_a_source(
    ipva_dist: Path, tmp_path: Path
) -> None:
    """Every .pyc is hash-based and unchecked (PEP 552 flags 0b01): an import opens the
    .pyc and nothing else, no stat of a source, no mtime to compare (a cold boot's
    imports, each a file on the squashfs); and there are no sources to read."""
    tree = tmp_path / "payload"
    subprocess.run(["unsquashfs", "-q", "-n", "-o", str(HEADER_SIZE), "-d", tree,
                    ipva_dist / "ipva.bin"], check=True)  # fmt: skip
    pycs = sorted((tree / "usr/lib").rglob("*.pyc"))
    assert len(pycs) > 100
    flags = {p.relative_to(tree): int.from_bytes(p.read_bytes()[4:8], "little") for p in pycs}
    assert {p: f for p, f in flags.items() if f != 0b01} == {}
    assert sorted((tree / "usr/lib").rglob("*.py")) == []


# what the prompt's imports do not load from the payload (the payload's edited stdlib and
# construct, lazy imports in the runtime: firmware/payload_edits.py), and what they compile
PROMPT_PROBE = """
import builtins, sys
tree = sys.argv[1]
sys.path[:] = [tree + "/usr/lib/ipva", tree + "/usr/lib/python3.11",
               tree + "/usr/lib/python3.11/lib-dynload"]
import dataclasses
compiled = []
def counting_exec(code, *args):  # dataclasses' methods: a text would be compiled here
    if isinstance(code, str):
        compiled.append(code)
    return builtins.exec(code, *args)
dataclasses.exec = counting_exec
import appliance.hal.platform, appliance.hal.vm, appliance.boot
print(sorted(m for m in sys.argv[2:] if m in sys.modules))
print(len(compiled))
"""
NOT_BEFORE_PROMPT = ("inspect", "ast", "dis", "traceback", "tokenize", "textwrap", "logging",
                     "string", "locale", "urllib.parse", "fnmatch", "pdb", "pickle", "hashlib",
                     "runpy", "ctypes")  # fmt: skip


def test_the_prompts_imports_from_the_payload_leave_out_what_it_does_not_use(
    ipva_dist: Path, tmp_path: Path
) -> None:
    """The box's imports before its prompt, from the built payload: none of the modules
    only rarely used code needs, and every dataclass method from the build's compiled
    file (firmware/promptimports.py), none compiled at boot."""
    tree = tmp_path / "payload"
    subprocess.run(["unsquashfs", "-q", "-n", "-o", str(HEADER_SIZE), "-d", tree,
                    ipva_dist / "ipva.bin"], check=True)  # fmt: skip
    proc = subprocess.run(
        [sys.base_prefix + "/bin/python3.11", "-S", "-I", "-c", PROMPT_PROBE, str(tree),
         *NOT_BEFORE_PROMPT], capture_output=True, text=True, check=True, cwd=tmp_path,
    )  # fmt: skip
    loaded, compiled = proc.stdout.splitlines()
    assert (loaded, compiled) == ("[]", "0")
