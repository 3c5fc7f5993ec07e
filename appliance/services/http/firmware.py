"""Firmware uploads over HTTP: `PUT`/`POST /ipva.bin` for scripts, the form on Maintenance/Upload.

    curl --digest -u admin:<pwd> -T ipva.bin http://<box>/ipva.bin[?reset]
    (curl -T ipva.bin http://<box>/ puts to the same URL: curl appends the file's name)

Either way the body is streamed, chunk by chunk as it arrives, into the update service
(`AdminBox.install_firmware` → UpdateService.install), whose installer verifies it while
spooling it once (the guest's tmpfs: one copy in RAM) and only then writes the other slot.
The body is never buffered here: the raw body is read in CHUNK pieces, and a form is taken
apart by Werkzeug's event parser (sansio MultipartDecoder) instead of `request.files`, whose
stream factory would spool the file a second time before the installer saw a byte.

Answers are text for scripts (the installer's sentence, or `error: …` with status 400/413),
the Upload page for the form. `reset` (query word, or the form's checkbox) restarts the box
once the answer is out; without it the answer says to reset to start the new firmware.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO

from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge
from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData

from appliance.services.update.install import MAX_IMAGE

CHUNK = 64 << 10  # what one read takes from the client; the installer spools each at once
FORM_OVERHEAD = 64 << 10  # a form's boundaries, part headers and small fields
# a larger Content-Length is refused (413) before the login and the body
MAX_PUT = MAX_IMAGE  # PUT/POST /ipva.bin: the image itself
MAX_FORM = MAX_IMAGE + FORM_OVERHEAD  # the Upload page's form
MAX_REQUEST = 2 * MAX_FORM  # the server's own cap (a plain 413); below it the app decides
MAX_FIELD = 256  # the form's other fields are a checkbox
FILE_FIELD = "firmware"  # the form's file input
RESET_HINT = "reset the box to start it (Reset, /!reset or reset on the console)"


class UploadBroken(OSError):
    """The client stopped sending before the body was complete (the installer then says
    "could not be received: …; nothing was written")."""


class FormError(Exception):
    """The form is not one this page sends; the message says what is wrong."""


def wants_reset(value: str | None) -> bool:
    """`?reset`, `?reset=yes`, a ticked checkbox: yes; absent, `no`, `0`, `false`: no."""
    return value is not None and value.strip().lower() not in ("no", "0", "false", "off")


def body_chunks(stream: IO[bytes], length: int) -> Iterator[bytes]:
    """The request body in CHUNK pieces; UploadBroken if it ends before `length` bytes."""
    got = 0
    while got < length:
        try:
            chunk = stream.read(min(CHUNK, length - got))
        except ClientDisconnected:
            chunk = b""
        if not chunk:
            raise UploadBroken(f"the upload broke off after {got} of {length} bytes")
        got += len(chunk)
        yield chunk


def discard(body: Iterator[bytes]) -> None:
    """Reads what is left of a refused upload's body in CHUNK pieces. The client, still
    sending, must get the answer, and cheroot would read the rest itself, but in one read:
    the whole rest of the image in RAM at once, which a 128 MiB guest refusing an image
    for want of memory cannot spare."""
    try:
        for _ in body:
            pass
    except UploadBroken:
        pass


def form_boundary(content_type: str) -> bytes:
    kind, options = parse_options_header(content_type)
    boundary = options.get("boundary", "")
    if kind != "multipart/form-data" or not boundary:
        raise FormError("send the form as multipart/form-data (the Upload page does)")
    return boundary.encode("latin-1")


@dataclass
class FirmwareForm:
    """A multipart body taken apart as it streams: `open()` goes to the firmware file's
    part, `chunks()` yields that file's bytes and then reads the rest of the form (the
    checkbox may follow the file), so `fields` is complete once the file is consumed."""

    body: Iterator[bytes]
    boundary: bytes
    filename: str = ""
    fields: dict[str, str] = field(default_factory=dict)
    _decoder: MultipartDecoder = field(init=False)
    _field: str | None = field(init=False, default=None)  # the text field being read

    def __post_init__(self) -> None:
        # the decoder's buffer holds at most one chunk plus a partial boundary
        self._decoder = MultipartDecoder(self.boundary, 4 * CHUNK, max_parts=8)

    def _events(self) -> Iterator[object]:
        while True:
            event = self._decoder.next_event()
            if isinstance(event, NeedData):
                self._decoder.receive_data(next(self.body, None))
                continue
            yield event
            if isinstance(event, Epilogue):
                return

    def open(self) -> str:
        """Up to the firmware file's part; its file name (FormError if there is none)."""
        try:
            for event in self._events():
                if isinstance(event, File) and event.name == FILE_FIELD:
                    if not event.filename:
                        raise FormError("choose the firmware file (ipva.bin) first")
                    self.filename = event.filename
                    return event.filename
                self._take(event)
        except (ValueError, RequestEntityTooLarge) as e:
            raise FormError(f"not a form this page sends ({e})") from e
        raise FormError("choose the firmware file (ipva.bin) first")

    def chunks(self) -> Iterator[bytes]:
        """The file's bytes; after its last one, the rest of the form is read."""
        events = self._events()
        try:
            for event in events:
                if not isinstance(event, Data):
                    raise UploadBroken("the form ended inside the firmware file")
                if event.data:
                    yield event.data
                if not event.more_data:
                    break
            for event in events:
                self._take(event)
        except FormError as e:
            raise UploadBroken(str(e)) from e
        except (ValueError, RequestEntityTooLarge) as e:
            # an OSError for the installer: a body that is not a whole form was not received
            raise UploadBroken(f"the form is damaged ({e})") from e

    def _take(self, event: object) -> None:
        if isinstance(event, File):
            raise FormError(f"one firmware file per upload (another: {event.name!r})")
        if isinstance(event, Field):
            self._field = event.name
            self.fields[event.name] = ""
        elif isinstance(event, Data) and self._field is not None:
            value = self.fields[self._field] + event.data.decode("utf-8", "replace")
            if len(value) > MAX_FIELD:
                raise FormError(f"field {self._field!r} is too long")
            self.fields[self._field] = value


__all__ = [
    "MAX_FORM",
    "MAX_PUT",
    "MAX_REQUEST",
    "RESET_HINT",
    "FirmwareForm",
    "FormError",
    "UploadBroken",
    "body_chunks",
    "discard",
    "form_boundary",
    "wants_reset",
]
