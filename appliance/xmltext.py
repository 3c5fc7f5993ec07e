"""The box's one-element XML answers (`<info><cpu vendor="…" …/></info>`), escaped by the
standard library (html.escape: `&`, `<`, `>`) rather than by hand; what an attribute in
double quotes needs besides (`"` and the line ends and tabs, as character references) is
the table below.

The real box writes attributes in double quotes and empty elements as `<x …/>`; ElementTree
would write `<x … />`, so the element is assembled here and only the escaping is delegated.
Not xml.sax.saxutils: it imports urllib.request (and with it http.client, email, ssl), a
third of a second of the boot under emulation, for the same three replacements.
"""

from __future__ import annotations

from collections.abc import Mapping

_ATTR = str.maketrans({'"': "&quot;", "\n": "&#10;", "\r": "&#13;", "\t": "&#9;"})


def attr(value: str) -> str:
    """`value` escaped for an attribute in double quotes."""
    from html import escape  # here: html (its entity table) is not needed before the prompt

    return escape(value, quote=False).translate(_ATTR)


def element(tag: str, attrs: Mapping[str, str]) -> str:
    body = "".join(f' {k}="{attr(v)}"' for k, v in attrs.items())
    return f"<{tag}{body}/>"


def info(tag: str, attrs: Mapping[str, str]) -> str:
    """`<info><tag k="v" …/></info>`, the shape of the box's `mod cmd … info` answers."""
    return f"<info>{element(tag, attrs)}</info>"
