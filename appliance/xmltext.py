"""The box's one-element XML answers (`<info><cpu vendor="…" …/></info>`), escaped by the
standard library (xml.sax.saxutils) rather than by hand.

The real box writes attributes in double quotes and empty elements as `<x …/>`; ElementTree
would write `<x … />`, so the element is assembled here and only the escaping is delegated.
"""

from __future__ import annotations

from collections.abc import Mapping
from xml.sax.saxutils import escape

_ATTR = {'"': "&quot;", "\n": "&#10;", "\r": "&#13;", "\t": "&#9;"}


def element(tag: str, attrs: Mapping[str, str]) -> str:
    body = "".join(f' {k}="{escape(v, _ATTR)}"' for k, v in attrs.items())
    return f"<{tag}{body}/>"


def info(tag: str, attrs: Mapping[str, str]) -> str:
    """`<info><tag k="v" …/></info>`, the shape of the box's `mod cmd … info` answers."""
    return f"<info>{element(tag, attrs)}</info>"
