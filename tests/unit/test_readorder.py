"""The payload's read order (firmware/readorder.py) and mksquashfs laying the files out in it
(firmware/payload.py make_squashfs): the interpreter and the libraries its loader maps
first, then what the prompt's imports read, each extension module with the libraries it
adds, in that order in the image."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from firmware.payload import make_squashfs
from firmware.promptimports import PromptImports
from firmware.readorder import boot_read_order, elf_needs

HOST_PYTHON = Path("/usr/bin/python3.11")  # Debian's, as the payload's
HOST_LIBS = Path("/lib/x86_64-linux-gnu")
DYNLOAD = Path("/usr/lib/python3.11/lib-dynload")
LIB = Path("lib/x86_64-linux-gnu")


def test_an_elf_files_loader_and_libraries() -> None:
    needs = elf_needs(HOST_PYTHON.resolve())
    assert needs[0] == "ld-linux-x86-64.so.2"  # PT_INTERP first
    assert "libc.so.6" in needs and "libm.so.6" in needs


def test_the_interpreter_and_its_libraries_come_first_then_the_imports(tmp_path: Path) -> None:
    ctypes = next(DYNLOAD.glob("_ctypes.*.so"))  # needs libffi, which the interpreter does not
    tree = tmp_path / "tree"
    for rel, target in [(Path("usr/bin/python3.11"), HOST_PYTHON.resolve()),
                        (Path("lib64/ld-linux-x86-64.so.2"), Path("/lib64/ld-linux-x86-64.so.2")),
                        *((LIB / n, HOST_LIBS / n) for n in elf_needs(HOST_PYTHON.resolve())[1:]),
                        (LIB / "libffi.so.8", HOST_LIBS / "libffi.so.8"),
                        (Path("lib/dyn") / ctypes.name, ctypes)]:  # fmt: skip
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).symlink_to(target)
    imported = PromptImports([Path("a.pyc"), Path("lib/dyn") / ctypes.name, Path("b.pyc")], 0)
    order = boot_read_order(tree, Path("usr/bin/python3.11"), imported)
    libs = [LIB / n for n in elf_needs(HOST_PYTHON.resolve())[1:]]
    assert order == [
        Path("usr/bin/python3.11"), Path("lib64/ld-linux-x86-64.so.2"), *libs,
        Path("a.pyc"), Path("lib/dyn") / ctypes.name, LIB / "libffi.so.8", Path("b.pyc"),
    ]  # fmt: skip


@pytest.mark.skipif(shutil.which("mksquashfs") is None, reason="squashfs-tools not installed")
def test_mksquashfs_lays_the_first_files_out_first_in_their_order(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    content = {}
    for name in ("a/one", "a/two", "b/three", "b/four", "c/five"):
        # random: zstd cannot shrink it, so each file's bytes are in the image as they are
        content[name] = name.encode() + os.urandom(3000)
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_bytes(content[name])
    image = tmp_path / "out.squashfs"
    make_squashfs(tree, image, 1_700_000_000, level=1, first=[Path("c/five"), Path("a/two")])
    data = image.read_bytes()
    where = {name: data.find(blob) for name, blob in content.items()}
    assert all(at >= 0 for at in where.values()), where
    assert where["c/five"] < where["a/two"] < min(where["a/one"], where["b/three"], where["b/four"])
    assert not list(tmp_path.glob("*.sort"))  # the sort list is not left behind
    # the list decides: the other way round
    make_squashfs(tree, image, 1_700_000_000, level=1, first=[Path("a/two"), Path("c/five")])
    data = image.read_bytes()
    assert data.find(content["a/two"]) < data.find(content["c/five"]) < data.find(content["a/one"])
