"""A certification authority for the certificate tests: the real `openssl` on the host, a
root and an intermediate CA made when a test starts, signing the boxes' requests as a
company CA would (the request's subjectAltName copied, serverAuth).

Independent of the box's own openssl code (appliance/services/http/x509.py): plain
`openssl req|x509` lines, so a mistake there is not repeated here.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

_CA_EXT = "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n"
_LEAF_EXT = (
    "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
    "extendedKeyUsage=serverAuth\nauthorityKeyIdentifier=keyid\nsubjectKeyIdentifier=hash\n"
)


def openssl(*args: str, stdin: bytes = b"") -> bytes:
    done = subprocess.run(["openssl", *args], input=stdin, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout


class TestCA:
    __test__ = False  # not a pytest class

    def __init__(self, directory: Path, name: str = "ipva test") -> None:
        self.dir = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.root = self._ca("root", f"/CN={name} root CA/O=ipva tests", None)
        self.intermediate = self._ca("inter", f"/CN={name} issuing CA/O=ipva tests", "root")

    def _path(self, name: str) -> str:
        return str(self.dir / name)

    def _ca(self, name: str, subject: str, parent: str | None) -> bytes:
        (self.dir / "ca.ext").write_text(_CA_EXT + "subjectKeyIdentifier=hash\n")
        key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        if parent is None:
            openssl("req", "-x509", *key, "-keyout", self._path(f"{name}.key"), "-subj",
                    subject, "-days", "3650", "-addext", _CA_EXT.splitlines()[0], "-addext",
                    _CA_EXT.splitlines()[1], "-out", self._path(f"{name}.pem"))  # fmt: skip
        else:
            csr = openssl("req", "-new", *key, "-keyout", self._path(f"{name}.key"), "-subj",
                          subject)  # fmt: skip
            (self.dir / "ca.ext").write_text(_CA_EXT + "authorityKeyIdentifier=keyid\n")
            openssl("x509", "-req", "-CA", self._path(f"{parent}.pem"), "-CAkey",
                    self._path(f"{parent}.key"), "-days", "3650", "-extfile",
                    self._path("ca.ext"), "-out", self._path(f"{name}.pem"),
                    stdin=csr)  # fmt: skip
        return (self.dir / f"{name}.pem").read_bytes()

    @property
    def root_file(self) -> Path:
        return self.dir / "root.pem"

    def sign(self, request_pem: bytes, days: int = 365, by: str = "inter") -> bytes:
        """The request signed by the intermediate (or the root): the leaf, PEM. `days` -1
        gives a certificate that has expired."""
        (self.dir / "leaf.ext").write_text(_LEAF_EXT)
        return openssl("x509", "-req", "-CA", self._path(f"{by}.pem"), "-CAkey",
                       self._path(f"{by}.key"), "-days", str(days), "-copy_extensions", "copy",
                       "-extfile", self._path("leaf.ext"), stdin=request_pem)  # fmt: skip

    def chain(self, leaf: bytes) -> bytes:
        """What an admin uploads: the leaf, then the intermediate (the root is the clients')."""
        return leaf + self.intermediate

    @staticmethod
    def der(pem: bytes) -> bytes:
        return openssl("x509", "-outform", "DER", stdin=pem)
