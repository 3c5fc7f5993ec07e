"""The payload's files in the order a cold boot reads them before the prompt: the order
mksquashfs lays them out in (its -sort list; firmware/payload.py make_squashfs).

squashfs packs small files together into fragment blocks (1 MiB, zstd, SQUASHFS_BLOCK), and
reading one .pyc decompresses its whole block; a big file's blocks are decompressed as
they are read. In mksquashfs' own order (directory by directory) the ~190 modules the
runtime imports before its prompt lie in most of the payload's fragment blocks, between
modules read only later or never; put first, in the order they are read, they fill the
first few blocks, after the interpreter and the libraries its loader maps.

The modules are those the build imports from the payload (firmware/promptimports.py); the
interpreter's and the extension modules' libraries come from their ELF headers
(pyelftools).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile
from elftools.elf.segments import InterpSegment

from firmware.promptimports import PromptImports

LIB_DIRS = (Path("lib64"), Path("lib/x86_64-linux-gnu"), Path("usr/lib/x86_64-linux-gnu"))


def elf_needs(path: Path) -> list[str]:
    """An ELF file's program interpreter (its file name) and DT_NEEDED libraries."""
    with path.open("rb") as f:
        elf = ELFFile(f)
        names = [Path(seg.get_interp_name()).name for seg in elf.iter_segments()
                 if isinstance(seg, InterpSegment)]  # fmt: skip
        for section in elf.iter_sections():
            if isinstance(section, DynamicSection):
                # .needed: the attribute DynamicTag makes for a DT_NEEDED tag (untyped)
                names += [str(t.needed) for t in section.iter_tags("DT_NEEDED")]  # type: ignore[attr-defined]
    return names


def _with_libraries(tree: Path, binary: Path, have: Iterable[Path]) -> list[Path]:
    """`binary` and the libraries (in the payload) it needs, in the order the dynamic loader
    maps them, less those in `have`."""
    out: list[Path] = []
    skip = set(have)
    todo = [binary]
    while todo:
        rel = todo.pop(0)
        if rel in out or rel in skip:
            continue
        out.append(rel)
        # breadth first, as the dynamic loader opens them
        todo += [d / n for n in elf_needs(tree / rel) for d in LIB_DIRS if (tree / d / n).is_file()]
    return out


def boot_read_order(tree: Path, interpreter: Path, imported: PromptImports) -> list[Path]:
    """The payload's files (relative to `tree`) a cold boot reads before its prompt, in
    the order it reads them: the `interpreter` (relative) with its libraries, then what
    the prompt's imports read (an extension module with the libraries it needs)."""
    order = _with_libraries(tree, interpreter, ())
    for file in imported.files:
        if file.suffix == ".so":
            order += _with_libraries(tree, file, order)
        elif file not in order:
            order.append(file)
    return order
