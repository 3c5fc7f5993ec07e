"""Every dataclass in `appliance` has a class docstring of its own.

The payload's bytecode keeps class docstrings (firmware/payload.py drops only those of
modules and functions). A dataclass without one gets a generated docstring: `dataclasses`
calls `inspect.signature(cls)` as the class is made, which is what brings `inspect` (and with
it ast, dis, tokenize) into the box and builds a signature for each such class, under
emulation, before the prompt (issue 27). With a docstring on every one, the payload's
`dataclasses` imports `inspect` for none of them. This walks the source with `ast` (nothing
is imported), so it also sees classes in modules the boot does not load.
"""

from __future__ import annotations

import ast
from pathlib import Path

APPLIANCE = Path(__file__).resolve().parents[2] / "appliance"


def _is_dataclass(decorator: ast.expr, names: set[str], modules: set[str]) -> bool:
    """`@dataclass`, `@dataclass(...)`, `@dataclasses.dataclass(...)`, or an alias of one."""
    if isinstance(decorator, ast.Call):
        decorator = decorator.func
    if isinstance(decorator, ast.Name):
        return decorator.id in names
    return (
        isinstance(decorator, ast.Attribute)
        and decorator.attr == "dataclass"
        and isinstance(decorator.value, ast.Name)
        and decorator.value.id in modules
    )


def dataclasses_in(source: str) -> list[tuple[int, str, bool]]:
    """(line, class name, has a docstring) of every dataclass `source` declares."""
    tree = ast.parse(source)
    names, modules = {"dataclass"}, {"dataclasses"}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "dataclasses":
            names |= {a.asname or a.name for a in node.names if a.name == "dataclass"}
        elif isinstance(node, ast.Import):
            modules |= {a.asname or a.name for a in node.names if a.name == "dataclasses"}
    return [
        (node.lineno, node.name, ast.get_docstring(node) is not None)
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
        and any(_is_dataclass(d, names, modules) for d in node.decorator_list)
    ]


def test_the_scan_knows_every_spelling() -> None:
    source = (
        "import dataclasses\nimport dataclasses as dc\n"
        "from dataclasses import dataclass, dataclass as d\n"
        "@dataclass\nclass A:\n    x: int\n"
        "@dataclass(frozen=True)\nclass B:\n    'doc'\n"
        "@dataclasses.dataclass\nclass C:\n    pass\n"
        "@dataclasses.dataclass(eq=False)\nclass D:\n    pass\n"
        "@dc.dataclass\nclass E:\n    pass\n"
        "@d\nclass F:\n    pass\n"
        "class G:\n    pass\n"
        "@other.dataclass\nclass H:\n    pass\n"
    )
    found = dataclasses_in(source)
    assert [(name, doc) for _line, name, doc in found] == [
        ("A", False), ("B", True), ("C", False), ("D", False), ("E", False), ("F", False),
    ]  # fmt: skip


def test_every_dataclass_in_appliance_has_a_docstring() -> None:
    seen, missing = 0, []
    for path in sorted(APPLIANCE.rglob("*.py")):
        for line, name, has_doc in dataclasses_in(path.read_text()):
            seen += 1
            if not has_doc:
                missing.append(f"{path.relative_to(APPLIANCE.parent)}:{line} {name}")
    assert seen > 50  # the scan sees the box's dataclasses at all
    assert not missing, (
        "dataclasses without a class docstring (the payload's dataclasses would import inspect "
        "and build a signature for each as it is made, before the prompt):\n" + "\n".join(missing)
    )
