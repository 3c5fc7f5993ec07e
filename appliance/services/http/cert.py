"""The box's own HTTPS certificate: self-signed, made on first boot, kept on the flash.

Made with the `openssl` command (Debian's, carried in the firmware; it uses the libcrypto
that Python's _ssl needs anyway, so it costs ~1 MB of firmware and no RAM at run time, where
python3-cryptography would add ~3 MB and its import). An ECDSA P-256 key: quick to make
even under emulation, and taken by every browser and curl.

The pair lives in VARS (keys CERT_KEY, PRIVATE_KEY), so it survives `reset` and firmware
updates; a factory reset (`mod cmd CFG0 factory-reset yes`) drops it with the config, and
the next boot makes a new one. Without a flash the box makes one for this boot only.

Its subjectAltName names the box (SYS0 /name), localhost, 127.0.0.1 and the box's own
addresses when it was made (kept as SAN_KEY beside it): a browser told to trust it then
matches it for `https://10.0.2.15/`. When the box has an address the kept certificate does
not name (a new DHCP lease, a static address), a new one is made, traced. A CA-signed
certificate the admin installed (SIGNED_KEY; certificates.py) is never replaced that way.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from appliance.errors import BoxError
from appliance.flash.limits import FlashError
from appliance.services.http.host import Vars

if TYPE_CHECKING:  # ssl and tempfile are imported where used: the boot imports this module
    import ssl  # (the X509 commands), and they cost it time (tests/unit/test_services.py)

CERT_KEY = "X509:HTTPS.CRT"
PRIVATE_KEY = "X509:HTTPS.KEY"
SAN_KEY = "X509:HTTPS.SAN"  # the subjectAltName it was made with: "DNS:IPVA, …, IP:10.0.2.15"
# set when CERT_KEY holds a CA-signed certificate and its chain (x509.py checked them):
# never replaced by a self-signed one behind the admin's back (a new address, say)
SIGNED_KEY = "X509:HTTPS.SIGNED"
REQUEST_KEY = "X509:REQUEST.KEY"  # the key of a pending signing request (X509/REQUEST)
VARS_KEYS = (CERT_KEY, PRIVATE_KEY, SAN_KEY, SIGNED_KEY, REQUEST_KEY)  # a factory reset drops
VALID_DAYS = 7300
OPENSSL_TIMEOUT_S = 60  # one EC key under TCG takes well under a second
_B64 = rb"\r?\n[A-Za-z0-9+/=\r\n]+"
PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----" + _B64 + rb"-----END CERTIFICATE-----")
PEM_KEY = re.compile(rb"-----BEGIN PRIVATE KEY-----" + _B64 + rb"-----END PRIVATE KEY-----")

_CONFIG = """\
[req]
distinguished_name = dn
x509_extensions = ext
prompt = no
[dn]
CN = {cn}
O = ipva
[ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = {san}
subjectKeyIdentifier = hash
"""


class CertError(Exception):
    """No certificate could be made or loaded; the message says why."""


@dataclass(frozen=True)
class Certificate:
    """The box's HTTPS certificate and key (PEM): kept on the flash or not, CA-signed or not."""

    cert_pem: bytes
    key_pem: bytes
    kept: bool  # stored on the flash (False: made for this boot only)
    san: str = ""  # the subjectAltName it was made with ("": not known, made before)
    signed: bool = False  # a CA-signed certificate (+ chain) installed by the admin

    def names_all(self, addresses: Sequence[str]) -> bool:
        return all(f"IP:{a}" in self.san.split(", ") for a in addresses)

    def fingerprint(self) -> str:
        """SHA-256 of the DER certificate, as browsers show it (AA:BB:…)."""
        import hashlib

        first = PEM_CERT.search(self.cert_pem)  # the box's own, before its chain
        import ssl

        der = ssl.PEM_cert_to_DER_cert(first.group(0).decode("ascii") if first else "")
        digest = hashlib.sha256(der).hexdigest().upper()
        return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def openssl_command() -> str:
    # the guest's PATH is /bin:/sbin; the firmware carries the tool in /usr/bin
    found = shutil.which("openssl") or shutil.which("openssl", path="/usr/bin")
    if found is None:
        raise CertError("the openssl command is missing (Debian package openssl)")
    return found


def subject_alt_name(cn: str, addresses: Sequence[str]) -> str:
    ips = ["127.0.0.1", *sorted(set(addresses) - {"127.0.0.1"})]
    return ", ".join([f"DNS:{cn}", "DNS:localhost", *(f"IP:{a}" for a in ips)])


def make_certificate(name: str, kept: bool = True, addresses: Sequence[str] = ()) -> Certificate:
    """A new key and self-signed certificate for a box called `name` with `addresses`."""
    cn = re.sub(r"[^A-Za-z0-9._-]", "-", name)[:32] or "IPVA"
    san = subject_alt_name(cn, addresses)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="ipva-cert-") as tmp:
        d = Path(tmp)
        (d / "req.cnf").write_text(_CONFIG.format(cn=cn, san=san))
        argv = [
            openssl_command(), "req", "-x509", "-new", "-config", str(d / "req.cnf"),
            "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-sha256", "-days", str(VALID_DAYS), "-set_serial", "0x" + os.urandom(8).hex(),
            "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem"),
        ]  # fmt: skip
        try:
            done = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=OPENSSL_TIMEOUT_S,
                env={"OPENSSL_CONF": str(d / "req.cnf"), "PATH": "/usr/bin:/bin"},
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            raise CertError(f"openssl failed: {e}") from e
        if done.returncode != 0:
            last = done.stderr.decode(errors="replace").strip().splitlines()[-1:]
            raise CertError(f"openssl failed ({done.returncode}): {' '.join(last)}")
        cert, key = (d / "cert.pem").read_bytes(), (d / "key.pem").read_bytes()
        return Certificate(cert, key, kept, san)


def _valid(cert: bytes | None, key: bytes | None) -> bool:
    return bool(cert and key and PEM_CERT.search(cert) and PEM_KEY.search(key))


def load_or_make(
    vars: Vars | None, name: str, addresses: Sequence[str] = ()
) -> tuple[Certificate, str]:
    """The box's certificate and a line for the trace saying where it came from.
    `addresses`: the box's own IP addresses, which the certificate must name."""
    renewed = ""
    if vars is not None:
        cert, key = vars.get(CERT_KEY), vars.get(PRIVATE_KEY)
        if _valid(cert, key):
            assert cert is not None and key is not None
            kept = Certificate(cert, key, True, (vars.get(SAN_KEY) or b"").decode(),
                               signed=bool(vars.get(SIGNED_KEY)))  # fmt: skip
            if kept.signed:  # the admin's: a new address is theirs to ask the CA for
                missing = [a for a in addresses if f"IP:{a}" not in kept.san.split(", ")]
                return kept, (
                    f"HTTPS: the CA-signed certificate does not name {', '.join(missing)}: "
                    "browsers warn there; make a new request (Administration/Certificates)"
                    if missing
                    else ""
                )
            if kept.names_all(addresses):
                return kept, ""
            renewed = "; the one kept did not name " + ", ".join(
                a for a in addresses if f"IP:{a}" not in kept.san.split(", ")
            )
    made = make_certificate(name, kept=vars is not None, addresses=addresses)
    if vars is None:
        return made, "HTTPS: no flash, the certificate made now lasts until the next boot"
    try:
        vars.commit({CERT_KEY: made.cert_pem, PRIVATE_KEY: made.key_pem,
                     SAN_KEY: made.san.encode()})  # fmt: skip
    except (BoxError, FlashError, OSError) as e:  # not stored: serve with it anyway, say so
        return Certificate(made.cert_pem, made.key_pem, False), (
            f"HTTPS: the new certificate could not be stored ({e}); a new one comes next boot"
        )
    return made, (
        f"HTTPS: new self-signed certificate made for {made.san}{renewed}, "
        f"SHA-256 {made.fingerprint()}"
    )


@contextmanager
def pem_files(cert: Certificate) -> Iterator[tuple[str, str]]:
    """The pair as files for as long as an SSL context needs to load them, then gone."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="ipva-tls-") as tmp:
        crt, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
        for path, data in ((crt, cert.cert_pem), (key, cert.key_pem)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        yield crt, key


def server_context(crt: str, key: str) -> ssl.SSLContext:
    """TLS 1.2 and 1.3 only (16r1's "Normal" profile), the box's certificate."""
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.load_cert_chain(crt, key)
    return ctx
