"""A hosted box with its HTTP admin on 127.0.0.1, and a small HTTP client for the tests.

The client speaks Digest (RFC 7616) by itself, computed independently of the server's
code from the RFC's formulas, so a test can pick the algorithm, break the answer on
purpose and count the nonce; curl is used where "a real client works" is the point.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import os
import re
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

from appliance.boot import Runtime
from appliance.hal.hosted import HostedPlatform
from appliance.services.http import HttpService
from firmware import ipvabin
from images.bootdisk import make_boot_disk

USER, PASSWORD = "admin", "ipva"


def firmware_image(version: str, build: int, payload_size: int = 128_000) -> bytes:
    """A real ipva.bin (header, length, SHA-256) around a stand-in payload: hosted, the code
    that runs is the host's, so only the image's identity and integrity matter."""
    seed = hashlib.sha256(version.encode()).digest()
    return ipvabin.pack((seed * (payload_size // 32 + 1))[:payload_size], version, build)


def with_boot_disk(directory: Path, version: str = "16r1sr1", build: int = 1601001) -> Path:
    """`directory` with a boot.img whose slot A holds that firmware (as the builder lays it)."""
    directory.mkdir(parents=True, exist_ok=True)
    fw = directory / "IPVA.BIN"
    fw.write_bytes(firmware_image(version, build))
    make_boot_disk(directory / "boot.img", {"IPVA.BIN": fw}, 1700000000, 32)
    fw.unlink()
    return directory


class _Sink(io.RawIOBase):
    """The console's output, kept for the test (thread-safe enough for appends)."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.lock = threading.Lock()

    def writable(self) -> bool:
        return True

    def write(self, b: bytes) -> int:  # type: ignore[override]
        with self.lock:
            self.data += b
        return len(b)

    def text(self) -> str:
        with self.lock:
            return self.data.decode(errors="replace")


class HostedHttpBox:
    """The runtime on image files in `directory`, its web admin on 127.0.0.1 (free ports,
    new ones after each reset), its console captured. The web admin comes up after the
    boot, in a thread of its own: the box is made once it is up (`wait=False`: at once),
    and `http_url`/`https_url` wait for it after a reset (HttpService.wait_started)."""

    def __init__(self, directory: Path, platform: HostedPlatform | None = None, *,
                 wait: bool = True) -> None:  # fmt: skip
        self.directory = directory
        self.console = _Sink()
        platform = platform or HostedPlatform(
            directory,
            stdin=io.BytesIO(b""),
            stdout=self.console,  # type: ignore[arg-type]
            http=("127.0.0.1", 0),
            https=("127.0.0.1", 0),
        )
        self.runtime = Runtime(platform, newline=b"\n")
        assert self.runtime.boot(), self.console.text()
        if wait:
            self.started_service()

    @property
    def service(self) -> HttpService:
        box = self.runtime.box
        assert box is not None, "the box is restarting"
        return next(s for s in box.services if isinstance(s, HttpService))

    def started_service(self) -> HttpService:
        """The HTTP service, once its start is done (up, or traced why not)."""
        service = self.service
        assert service.wait_started(), "the web admin did not finish its start"
        return service

    @property
    def http_url(self) -> str:
        return self.started_service().urls()["http"]

    @property
    def https_url(self) -> str:
        return self.started_service().urls()["https"]

    def console_line(self, line: str) -> str:
        """One line as typed on the console; a reset is carried out before this returns."""
        out = self.runtime.execute(line)
        self.runtime.settle()
        return out

    def close(self) -> None:
        self.runtime.close()


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def challenges(self) -> list[str]:
        return self.headers.get_all("WWW-Authenticate") or []


def tls_client_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the box's certificate is self-signed
    return ctx


def request(
    base: str,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10,
    source: str | None = None,
) -> Answer:
    """One request; `source`: the client's own address (any 127.x.y.z on Linux)."""
    scheme, _, hostport = base.partition("://")
    host, _, port = hostport.partition(":")
    conn: http.client.HTTPConnection
    bind = (source, 0) if source else None
    if scheme == "https":
        conn = http.client.HTTPSConnection(
            host, int(port), timeout=timeout, context=tls_client_context(), source_address=bind
        )
    else:
        conn = http.client.HTTPConnection(host, int(port), timeout=timeout, source_address=bind)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return Answer(r.status, r.headers, r.read())
    finally:
        conn.close()


def parse_challenge(value: str) -> dict[str, str]:
    return {k.lower(): v.strip('"') for k, v in re.findall(r'(\w+)=("[^"]*"|[^,\s]+)', value)}


def digest_header(
    challenge: dict[str, str],
    method: str,
    uri: str,
    user: str = USER,
    password: str = PASSWORD,
    nc: int = 1,
    cnonce: str | None = None,
) -> str:
    algorithm = challenge["algorithm"]
    h = hashlib.sha256 if algorithm == "SHA-256" else hashlib.md5

    def hx(s: str) -> str:
        return h(s.encode()).hexdigest()

    cnonce = cnonce or os.urandom(8).hex()
    ha1 = hx(f"{user}:{challenge['realm']}:{password}")
    ha2 = hx(f"{method}:{uri}")
    ncs = f"{nc:08x}"
    response = hx(f"{ha1}:{challenge['nonce']}:{ncs}:{cnonce}:auth:{ha2}")
    return (
        f'Digest username="{user}", realm="{challenge["realm"]}", nonce="{challenge["nonce"]}", '
        f'uri="{uri}", algorithm={algorithm}, qop=auth, nc={ncs}, cnonce="{cnonce}", '
        f'response="{response}", opaque="{challenge.get("opaque", "")}"'
    )


def challenge_for(base: str, algorithm: str = "SHA-256") -> dict[str, str]:
    """A fresh Digest challenge of the given algorithm (from a 401 of a guarded URL)."""
    r = request(base, "GET", "/!version")
    assert r.status == 401, r.status
    for value in r.challenges():
        if value.startswith("Digest") and f"algorithm={algorithm}" in value:
            return parse_challenge(value)
    raise AssertionError(f"no Digest {algorithm} challenge in {r.challenges()}")


def authed(
    base: str,
    method: str,
    path: str,
    body: bytes | None = None,
    *,
    algorithm: str = "SHA-256",
    user: str = USER,
    password: str = PASSWORD,
    headers: dict[str, str] | None = None,
    timeout: float = 10,
) -> Answer:
    """One request with a Digest login (challenge first, as a client does)."""
    challenge = challenge_for(base, algorithm)
    auth = digest_header(challenge, method, path, user, password)
    headers = {"Authorization": auth, **(headers or {})}
    return request(base, method, path, body, headers, timeout=timeout)
