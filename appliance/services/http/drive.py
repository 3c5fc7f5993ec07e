"""`/DRIVE/CF0/…`: the compact flash card's files over HTTP, read-only, behind the login.

As on the box, where the CF card is a WebDAV share at /DRIVE/CF0: a GET of a directory is an
HTML listing (names link to themselves, directories end in "/"), a GET of a file is its
bytes. Read-only on purpose: the only WebDAV server library Debian bookworm carries for
Python is python3-webdav (PyWebDAV3, built on http.server, not WSGI, so it cannot sit
behind this admin's cheroot/Werkzeug stack and its login); wsgidav is not in bookworm.
GET and HEAD answer (METHODS); the routing answers anything else with a 405.

Answers: 400 for a path that tries to leave the card (`..`, `.`, backslashes, control
characters), 404 for a missing file, 409 while the card is not mounted (what to do is in
the text), 413 for a file larger than MAX_FILE (the 128 MiB guest reads a file whole).
"""

from __future__ import annotations

import mimetypes
import posixpath
from collections.abc import Callable
from pathlib import Path

import jinja2
from werkzeug.wrappers import Request, Response

from appliance.hal.cf import CfVolume

PREFIX = "/DRIVE/CF0"
METHODS = ["GET", "HEAD"]
MAX_FILE = 32 << 20  # LOG files are max-file-size (a few hundred KiB); a firmware fits too

_LISTING = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "templates")),
    autoescape=True,
    trim_blocks=True,
    lstrip_blocks=True,
).get_template("drive.html")


class BadPath(ValueError):
    """The path is not one on the card (it tries to leave it, or is not a plain name)."""


def card_path(url_path: str) -> str:
    """The card's path ("/", "/log/LOG0.0") of a URL path under PREFIX (already
    %-decoded); raises BadPath for anything that is not plain names."""
    rest = url_path[len(PREFIX) :]
    if rest and not rest.startswith("/"):
        raise BadPath(f"not a path under {PREFIX}/")
    parts = [p for p in rest.split("/") if p]
    for part in parts:
        if part in (".", "..") or "\\" in part or not part.isprintable():
            raise BadPath(f"{part!r} is not a file or directory name")
    return "/" + "/".join(parts)


def _text(body: str, status: int) -> Response:
    return Response(body + "\n", status, content_type="text/plain; charset=utf-8")


FILE_POLICY = "sandbox; default-src 'none'; img-src 'self'; style-src 'self' 'unsafe-inline'"


class CfDrive:
    """Serves the card `volume()` gives (None: not mounted) under PREFIX."""

    def __init__(self, volume: Callable[[], CfVolume | None]) -> None:
        self.volume = volume

    def serve(self, request: Request, user: str) -> Response:  # noqa: ARG002 - any admin
        try:
            path = card_path(request.path)
        except BadPath as e:
            return _text(f"error: {e}: nothing outside the compact flash is served", 400)
        volume = self.volume()
        if volume is None:
            return _text(
                "error: the compact flash is not mounted (mod cmd CF0 mount, "
                "or Administration/Compact Flash)",
                409,
            )
        try:
            if volume.isdir(path):
                return self._listing(request, volume, path)
            size = volume.size(path)
            if size is None:
                return _text(f"error: CF0{path}: no such file or directory", 404)
            if size > MAX_FILE:
                return _text(
                    f"error: CF0{path} is {size} bytes; files up to {MAX_FILE >> 20} MiB "
                    "are served",
                    413,
                )
            data = volume.read(path)
        except OSError as e:
            return _text(f"error: CF0{path}: {e}", 404)
        kind = mimetypes.guess_type(posixpath.basename(path))[0] or "application/octet-stream"
        return Response(
            data,
            content_type=kind,
            headers={
                "Cache-Control": "no-store",
                "X-Content-Type-Options": "nosniff",
                # a file may be HTML (anyone with the card can put one there): it shows, but
                # in a sandbox of its own origin that runs no script, so it cannot act as
                # the admin on the box's pages
                "Content-Security-Policy": FILE_POLICY,
            },
        )

    def _listing(self, request: Request, volume: CfVolume, path: str) -> Response:
        if not request.path.endswith("/"):  # relative links need the slash
            return Response(status=301, headers={"Location": request.path + "/"})
        entries = []
        for name in volume.listdir(path):
            child = posixpath.join(path, name)
            entries.append((name, None if volume.isdir(child) else volume.size(child)))
        html = _LISTING.render(path=path if path == "/" else path + "/", entries=entries)
        return Response(
            html,
            content_type="text/html; charset=utf-8",
            headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY"},
        )
