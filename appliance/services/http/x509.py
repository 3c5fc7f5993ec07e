"""Certificates with the `openssl` command: what one says, a signing request, a chain checked.

The firmware carries Debian's openssl (cert.py makes the self-signed certificate with it)
and no python3-cryptography, so everything here runs the command and reads its text
output; nothing here touches the box (the X509 module in certificates.py does).

- `describe(pem)`: subject, issuer, validity, subjectAltName, SHA-256 fingerprint.
- `make_request(spec, …)`: a new key and a PKCS#10 request naming the box (CN, SAN with
  its name, localhost and its addresses, plus the names the request asks for).
- `check_chain(pem, keys)`: a signed certificate and its chain as a box may serve them:
  they parse, the first is for one of `keys` (the pending request's or the running one),
  none has expired or is not yet valid, each is signed by the next (the order a TLS
  server sends: the box's own first, then the CA that signed it, …). Refused with the
  reason otherwise (CertError), so nothing is installed that TLS clients would refuse.
"""

from __future__ import annotations

import datetime
import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote_plus  # ssl, tempfile: imported where used (cert.py says why)

from appliance.services.http.cert import (
    OPENSSL_TIMEOUT_S,
    PEM_CERT,
    PEM_KEY,
    CertError,
    openssl_command,
    subject_alt_name,
)

# RFC 2253 escaping, but in the certificate's own order (CN=IPVA,O=ipva), as browsers show it
NAMEOPT = "esc_2253,esc_ctrl,esc_msb,utf8,dump_nostr,dump_unknown,dump_der,sep_comma_plus,sname"
ORDER = (
    "give the chain in order: the box's certificate first, then the CA that signed it, then "
    "the CA that signed that one"
)
NEAR_EXPIRY_DAYS = 30  # alarm 70 (cert-expiry) is raised this long before notAfter
SKEW = datetime.timedelta(minutes=5)  # a CA's clock a little ahead: not "not yet valid"
_REQ_CONFIG = """\
[req]
distinguished_name = dn
req_extensions = ext
prompt = no
[dn]
[ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = {san}
"""
_DN_FIELDS = (("dn-c", "C"), ("dn-st", "ST"), ("dn-l", "L"), ("dn-o", "O"), ("dn-ou", "OU"),
              ("dn-cn", "CN"))  # fmt: skip
_PEM_REQUEST = re.compile(
    rb"-----BEGIN CERTIFICATE REQUEST-----\r?\n[A-Za-z0-9+/=\r\n]+-----END CERTIFICATE REQUEST-----"
)
_DNS_RE = re.compile(r"(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,62}\.)*[A-Za-z0-9-]{1,63}")


@dataclass(frozen=True)
class CertInfo:
    """What a certificate says (openssl's text): names, validity, fingerprint, key."""

    subject: str  # CN=IPVA,O=ipva
    issuer: str
    not_before: datetime.datetime  # UTC
    not_after: datetime.datetime
    san: str  # DNS:IPVA, DNS:localhost, IP:127.0.0.1 ("" when it has none)
    sha256: str  # AA:BB:…
    public_key: str  # PEM, to match a private key

    @property
    def subject_cn(self) -> str:
        return _cn(self.subject)

    @property
    def issuer_cn(self) -> str:
        return _cn(self.issuer)

    @property
    def self_signed(self) -> bool:
        return self.subject == self.issuer

    def days_left(self, now: datetime.datetime) -> int:
        return (self.not_after - now) // datetime.timedelta(days=1)


@dataclass(frozen=True)
class RequestSpec:
    """What `mod cmd X509 servercert-create` asks for (the update server's options)."""

    self_signed: bool = False  # /type Self-signed; else a signing request
    key: str = ""  # "" or ec: ECDSA P-256; "2048-bit" …: RSA
    signature: str = ""  # SHA256 (the update server's sample says SH256), SHA384, SHA512
    dn: tuple[tuple[str, str], ...] = ()  # (openssl field, value), e.g. ("CN", "009033…")
    san_dns: tuple[str, ...] = ()
    san_ip: tuple[str, ...] = ()


def run_openssl(*args: str, stdin: bytes | None = None) -> str:
    """One openssl call; its stdout, or CertError with its last line of stderr."""
    try:
        done = subprocess.run(
            [openssl_command(), *args],
            input=stdin if stdin is not None else b"",
            capture_output=True,
            timeout=OPENSSL_TIMEOUT_S,
            env={"PATH": "/usr/bin:/bin", "OPENSSL_CONF": "/dev/null"},
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise CertError(f"openssl failed: {e}") from e
    if done.returncode != 0:
        lines = [ln for ln in done.stderr.decode(errors="replace").splitlines() if ln.strip()] or [
            "(no message)"
        ]
        raise CertError(_short(lines))
    return done.stdout.decode(errors="replace")


def _short(lines: list[str]) -> str:
    """openssl's error lines say `…:error:0480006C:PEM routines::no start line:…`: the
    reason only."""
    for line in lines:
        m = re.search(r":error:[0-9A-F]+:[^:]*::([^:]+)", line)
        if m:
            return m.group(1)
    return lines[-1].strip()[:200]


def _cn(dn: str) -> str:
    m = re.search(r"(?:^|,)CN=((?:\\.|[^,])*)", dn)
    return m.group(1).replace("\\", "") if m else ""


def split_pem(data: bytes) -> list[bytes]:
    """The PEM certificates in `data`, in order; a DER certificate alone is taken too."""
    found = [m.group(0) + b"\n" for m in PEM_CERT.finditer(data)]
    if found or not data.startswith(b"\x30"):
        return found
    import ssl

    return [ssl.DER_cert_to_PEM_cert(data).encode("ascii")]


def to_der(pem: bytes) -> bytes:
    import ssl

    return ssl.PEM_cert_to_DER_cert(pem.decode("ascii").strip() + "\n")


def request_der_to_pem(der: bytes) -> bytes:
    return run_openssl("req", "-inform", "DER", "-outform", "PEM", stdin=der).encode("ascii")


def describe(pem: bytes) -> CertInfo:
    """What one PEM certificate says (CertError: it does not parse)."""
    out = run_openssl(
        "x509", "-noout", "-nameopt", NAMEOPT, "-subject", "-issuer", "-startdate",
        "-enddate", "-fingerprint", "-sha256", "-ext", "subjectAltName", stdin=pem,
    )  # fmt: skip
    fields: dict[str, str] = {}
    san: list[str] = []
    in_san = False
    for line in out.splitlines():
        if line.startswith("X509v3 Subject Alternative Name"):
            in_san = True
        elif in_san and line.startswith(" "):
            san += [n.strip().replace("IP Address:", "IP:") for n in line.split(",")]
        else:
            in_san = False
            key, _, value = line.partition("=")
            fields[key.strip().lower()] = value.strip()
    pubkey = run_openssl("x509", "-noout", "-pubkey", stdin=pem)
    return CertInfo(
        subject=fields.get("subject", ""),
        issuer=fields.get("issuer", ""),
        not_before=_date(fields.get("notbefore", "")),
        not_after=_date(fields.get("notafter", "")),
        san=", ".join(san),
        sha256=fields.get("sha256 fingerprint", ""),
        public_key=pubkey,
    )


def _date(text: str) -> datetime.datetime:
    try:  # openssl's own form: "Dec  7 11:45:43 2026 GMT"
        parsed = datetime.datetime.strptime(text, "%b %d %H:%M:%S %Y GMT")
    except ValueError:
        raise CertError(f"the certificate's date {text!r} is not readable") from None
    return parsed.replace(tzinfo=datetime.UTC)


def public_key_of(key_pem: bytes) -> str:
    return run_openssl("pkey", "-pubout", stdin=key_pem)


def when(t: datetime.datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M UTC")


def check_chain(
    data: bytes, keys: Sequence[bytes], now: datetime.datetime | None = None
) -> tuple[bytes, list[CertInfo], bytes]:
    """The chain as the box serves it (PEM, its own certificate first), what each says, and
    the one of `keys` the first certificate is for; CertError with the reason otherwise."""
    now = now or datetime.datetime.now(datetime.UTC)
    if PEM_KEY.search(data) or b"PRIVATE KEY-----" in data:
        raise CertError(
            "the file holds a private key: upload only the certificates (the box keeps its "
            "own key and never takes one)"
        )
    certs = split_pem(data)
    if not certs:
        raise CertError(
            "no certificate in it: expected PEM (-----BEGIN CERTIFICATE----- …), the "
            "box's certificate first, then the CA certificates"
        )
    infos: list[CertInfo] = []
    for n, pem in enumerate(certs, 1):
        try:
            infos.append(describe(pem))
        except CertError as e:
            raise CertError(f"certificate {n} does not parse: {e}") from None
    leaf = infos[0]
    key = next((k for k in keys if public_key_of(k) == leaf.public_key), None)
    if key is None:
        for n, info in enumerate(infos[1:], 2):
            if any(public_key_of(k) == info.public_key for k in keys):
                raise CertError(
                    f"certificate {n} ({info.subject}) is the box's own and must come first: "
                    f"{ORDER}"
                )
        raise CertError(
            f"certificate 1 ({leaf.subject}) is not for this box's key: sign the box's own "
            "request (Administration/Certificates, or mod cmd X509 servercert-create)"
        )
    for n, info in enumerate(infos, 1):
        if info.not_after <= now:
            raise CertError(f"certificate {n} ({info.subject}) expired on {when(info.not_after)}")
        if info.not_before > now + SKEW:
            raise CertError(
                f"certificate {n} ({info.subject}) is not valid before "
                f"{when(info.not_before)} (is the box's clock right? mod cmd TIME0 info)"
            )
    for n in range(len(certs) - 1):
        _check_link(certs[n], certs[n + 1], infos[n], infos[n + 1], n + 1)
    chain = b"".join(certs)
    _check_loads(chain, key)
    return chain, infos, key


def _check_link(pem: bytes, issuer: bytes, info: CertInfo, up: CertInfo, n: int) -> None:
    """Certificate n is signed by certificate n+1 (openssl verify, n+1 as the only anchor)."""
    if info.issuer != up.subject:
        raise CertError(
            f"certificate {n + 1} ({up.subject}) did not issue certificate {n} (issued by "
            f"{info.issuer}): {ORDER}"
        )
    import tempfile

    with tempfile.TemporaryDirectory(prefix="ipva-x509-") as tmp:
        (Path(tmp) / "ca.pem").write_bytes(issuer)
        try:
            run_openssl(
                "verify", "-no-CAfile", "-no-CApath", "-partial_chain",
                "-trusted", str(Path(tmp) / "ca.pem"), stdin=pem,
            )  # fmt: skip
        except CertError as e:
            raise CertError(
                f"certificate {n} is not signed by certificate {n + 1} ({up.subject}): {e}"
            ) from None


def _check_loads(chain: bytes, key: bytes) -> None:
    """What the HTTPS listener will do with it, done now (Python's ssl, its security level)."""
    import ssl

    from appliance.services.http.cert import Certificate, pem_files, server_context

    try:
        with pem_files(Certificate(chain, key, False)) as (crt, k):
            server_context(crt, k)
    except ssl.SSLError as e:
        raise CertError(f"TLS does not take it: {e.reason or e}") from None


# -- signing requests --------------------------------------------------------------------
def parse_request_args(args: Sequence[str]) -> RequestSpec:
    """`servercert-create /cmd servercert-create /redirect /target device /type Signing%20
    request /key 2048-bit /signature SHA256 /dn-cn … /san-dns … /san-ip …`: options as the
    update server sends them (values URL-encoded, `+` or %20 for a space; an option
    followed by another option has the empty value)."""
    opts: dict[str, list[str]] = {}
    words = list(args)
    i = 0
    while i < len(words):
        word = words[i]
        if not word.startswith("/"):
            raise CertError(f"unexpected {word[:40]!r}: options are /name value")
        value = ""
        if i + 1 < len(words) and not words[i + 1].startswith("/"):
            value = unquote_plus(words[i + 1])
            i += 1
        opts.setdefault(word[1:].lower(), []).append(value.strip())
        i += 1

    def one(name: str) -> str:
        return opts.get(name, [""])[-1]

    kind = one("type").lower()
    if kind and "self" not in kind and "request" not in kind:
        raise CertError(f"/type {one('type')!r}: Signing request or Self-signed")
    dns = tuple(v for v in opts.get("san-dns", []) if v)
    ips = tuple(v for v in opts.get("san-ip", []) if v)
    for name in dns:
        if not _DNS_RE.fullmatch(name):
            raise CertError(f"/san-dns {name!r} is not a DNS name")
    for ip in ips:
        import ipaddress

        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise CertError(f"/san-ip {ip!r} is not an IP address") from None
    spec = RequestSpec(
        self_signed="self" in kind,
        key=one("key"),
        signature=one("signature"),
        dn=tuple((field, one(opt)) for opt, field in _DN_FIELDS if one(opt)),
        san_dns=dns,
        san_ip=ips,
    )
    key_args(spec), digest(spec)  # refused now, not in the worker
    return spec


def key_args(spec: RequestSpec) -> list[str]:
    key = spec.key.lower().replace(" ", "")
    if key in ("", "ec", "ecdsa", "p-256", "prime256v1", "secp256r1"):
        return ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
    m = re.fullmatch(r"(?:rsa)?-?(\d+)(?:-?bits?)?", key)
    if m and int(m.group(1)) in (2048, 3072, 4096):
        return ["-newkey", f"rsa:{m.group(1)}"]
    raise CertError(
        f"/key {spec.key!r}: 2048-bit, 3072-bit or 4096-bit (RSA), or empty for ECDSA P-256 "
        "(shorter RSA keys are refused by TLS clients)"
    )


def digest(spec: RequestSpec) -> str:
    sig = spec.signature.upper().replace("-", "")
    for bits in ("384", "512", "256"):
        if bits in sig:
            return f"-sha{bits}"
    if sig == "":
        return "-sha256"
    raise CertError(f"/signature {spec.signature!r}: SHA256, SHA384 or SHA512")


def _subject(fields: Sequence[tuple[str, str]]) -> str:
    def esc(v: str) -> str:
        return re.sub(r"([/+\\])", r"\\\1", "".join(c for c in v if c.isprintable()))

    return "".join(f"/{k}={esc(v)}" for k, v in fields)


def request_san(spec: RequestSpec, cn: str, addresses: Sequence[str]) -> str:
    """The box's own names and addresses (as its self-signed certificate has them) and the
    names the request adds."""
    san = subject_alt_name(cn, addresses)
    have = san.split(", ")
    extra = [f"DNS:{d}" for d in spec.san_dns] + [f"IP:{a}" for a in spec.san_ip]
    return ", ".join(have + [e for e in extra if e not in have])


def make_request(spec: RequestSpec, name: str, addresses: Sequence[str]) -> tuple[bytes, bytes]:
    """A new key and a signing request for it: (request PEM, key PEM)."""
    cn = re.sub(r"[^A-Za-z0-9._-]", "-", name)[:32] or "IPVA"
    fields = list(spec.dn) or [("CN", cn), ("O", "ipva")]
    import tempfile

    with tempfile.TemporaryDirectory(prefix="ipva-csr-") as tmp:
        d = Path(tmp)
        (d / "req.cnf").write_text(_REQ_CONFIG.format(san=request_san(spec, cn, addresses)))
        run_openssl(
            "req", "-new", "-config", str(d / "req.cnf"), "-utf8", "-subj", _subject(fields),
            *key_args(spec), "-nodes", digest(spec),
            "-keyout", str(d / "key.pem"), "-out", str(d / "req.pem"),
        )  # fmt: skip
        return (d / "req.pem").read_bytes(), (d / "key.pem").read_bytes()


def request_pem(data: bytes) -> bytes:
    """A request as PEM, whether kept as DER (X509/REQUEST) or PEM."""
    m = _PEM_REQUEST.search(data)
    return m.group(0) + b"\n" if m else request_der_to_pem(data)


def request_der(pem: bytes) -> bytes:
    """The DER form the update server reads from X509/REQUEST (var2bin, then der2pem)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="ipva-csr-") as tmp:
        out = Path(tmp) / "req.der"
        run_openssl("req", "-outform", "DER", "-out", str(out), stdin=pem)
        return out.read_bytes()


def request_subject(pem: bytes) -> str:
    out = run_openssl("req", "-noout", "-nameopt", NAMEOPT, "-subject", stdin=pem)
    return out.strip().partition("=")[2]
