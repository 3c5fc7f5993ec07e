"""X509: the HTTPS certificate's life on the box — a signing request, a signed certificate
and its chain installed, back to self-signed, the near-expiry alarm.

The update server's flow (innovaphone php-update-server, UpdateServerV2::doCertificates;
shared/reference/ecosystem.md) is followed where its source shows it:

    mod cmd UP0 scfg …?mode=query&id=certificates ser nop /always mod%20cmd%20X509%20xml-info
        the server reads <info><servercert><certificate subject_cn issuer_cn not_before
        not_after/>…</servercert><requests><request/></requests><busy/><request-error/>
    mod cmd X509 servercert-create /cmd servercert-create /redirect /target device
        /type Signing%20request /key 2048-bit /signature SHA256 /dn-cn <sn> /dn-ou /dn-o
        … /san-dns … /san-ip …
        a new key and request, made in a thread of this module (<busy/> meanwhile); the
        request (DER) goes to the variable X509/REQUEST, which the server reads back with
        `vars read X509/REQUEST` (mode=vardump, proc=var2bin: the third word in hex)
    vars create X509/REQUESTRESPONSE/00000 pb <hex DER>   the signed certificate
    vars create X509/REQUESTRESPONSE/00001 pb <hex DER>   CA certificates, in order
    config write / config activate / iresetn
    vars del X509/REQUEST, vars del X509/REQUESTKEY       once the server saw it installed

Inferred (the box's side is not public): the responses are taken at the next `config
activate` (the server always sends one after them), at the web admin's start, or with
`mod cmd X509 servercert-install`; taken or refused they are removed, and a refusal is kept
in X509/REQUESTERROR (shown as <request-error>; the server stops until it is deleted). The
dates in xml-info are `YYYY-MM-DD HH:MM:SS` UTC (PHP's DateTime reads them). The request's
key never leaves the box: it is kept under the box's own key X509:REQUEST.KEY (no `vars`,
no backup); X509/REQUESTKEY holds only the SHA-256 of its public key, so the server's
`vars del X509/REQUESTKEY` finds what it deletes.

Every certificate is checked before it is used (x509.check_chain): refused with the reason,
the running one untouched. A new one is served at once: the HTTPS listeners swap their TLS
context (new connections get it; no restart).
"""

from __future__ import annotations

import datetime
import hashlib
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from appliance import xmltext
from appliance.events import CertificateChecked
from appliance.modcmd import Command, ModCmdError
from appliance.owner import BoxRestarting, join_checked
from appliance.services.http import x509
from appliance.services.http.cert import (
    CERT_KEY,
    PRIVATE_KEY,
    REQUEST_KEY,
    SAN_KEY,
    SIGNED_KEY,
    CertError,
    Certificate,
    make_certificate,
)
from appliance.services.http.host import CertificateRefused, CertView
from appliance.trace import Tag

if TYPE_CHECKING:
    from appliance.box import Box

VAR_REQUEST = "X509/REQUEST"
VAR_REQUESTKEY = "X509/REQUESTKEY"
VAR_RESPONSE = "X509/REQUESTRESPONSE"
VAR_ERROR = "X509/REQUESTERROR"
CHECK_INTERVAL_S = 24 * 3600.0  # the near-expiry check, after the one at the start
JOIN_S = 70.0  # a stop waits for a key being made (openssl's own timeout is 60 s)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class X509Module:
    """The X509 commands and the certificate store of one box. `current()` is the
    certificate HTTPS serves (None: no HTTPS listener), `use(cert)` swaps it."""

    def __init__(
        self,
        current: Callable[[], Certificate | None],
        use: Callable[[Certificate], None],
    ) -> None:
        self._current = current
        self._use = use
        self.box: Box | None = None
        self._busy = ""  # what the worker does ("" idle); read on the owner
        self._worker: threading.Thread | None = None
        self._watch: threading.Thread | None = None
        self._stop = threading.Event()
        self.interval_s = CHECK_INTERVAL_S
        self._described: dict[bytes, list[x509.CertInfo]] = {}  # chain_of
        self._requests: dict[bytes, tuple[str, str]] = {}  # request_of

    # -- life cycle ---------------------------------------------------------------------
    def start(self, box: Box) -> None:
        self.box = box
        self._watch = threading.Thread(target=self._daily, name="x509-expiry", daemon=True)
        self._watch.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in (self._worker, self._watch):
            late = join_checked(thread, JOIN_S)
            if late and self.box is not None:
                self._trace(f"X509: {late}")

    def _daily(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.check_expiry()

    def _trace(self, text: str) -> None:
        if self.box is not None:
            self.box.trace(text, Tag.HTTP)

    def _box(self) -> Box:
        if self.box is None:
            raise ModCmdError("X509: the box has not started yet")
        return self.box

    # -- the near-expiry alarm ----------------------------------------------------------
    def check_expiry(self, cert: Certificate | None = None) -> None:
        """Alarm 70 raised when the served certificate ends within NEAR_EXPIRY_DAYS, else
        cleared; off the owner (openssl)."""
        cert = cert or self._current()
        box = self.box
        if cert is None or box is None:
            return
        try:
            info = self.chain_of(cert.cert_pem)[0]
        except CertError as e:
            self._trace(f"X509: the HTTPS certificate is not readable: {e}")
            return
        left = info.days_left(_now())
        event = CertificateChecked(
            info.subject, x509.when(info.not_after), left, left < x509.NEAR_EXPIRY_DAYS
        )
        try:  # events are emitted on the owner
            box.owner.post(lambda: box.events.emit(event))
        except BoxRestarting:
            pass

    # -- commands -------------------------------------------------------------------------
    def commands(self) -> list[Command]:
        return [
            Command(
                "X509",
                "xml-info",
                "the certificate, request and errors as XML (update servers read it)",
                self.cmd_xml_info,
            ),  # fmt: skip
            Command(
                "X509",
                "info",
                "the HTTPS certificate: subject, SAN, issuer, validity, SHA-256",
                self.cmd_info,
            ),  # fmt: skip
            Command(
                "X509",
                "servercert-create",
                "/type Signing request|Self-signed [/key "
                "2048-bit] [/signature SHA256] [/dn-cn …] [/san-dns …] [/san-ip …]: a new "
                "key and a request (X509/REQUEST), or a new self-signed certificate",
                self.cmd_create,
            ),  # fmt: skip
            Command(
                "X509",
                "servercert-install",
                "install the signed certificate and chain from X509/REQUESTRESPONSE/00000… now",
                self.cmd_install,
            ),  # fmt: skip
        ]

    def cmd_create(self, box: Box, args: list[str]) -> str:
        try:
            spec = x509.parse_request_args(args)
        except CertError as e:
            raise ModCmdError(f"X509 servercert-create: {e}") from None
        if box.flash is None:
            raise ModCmdError("X509: no flash: the key and request could not be kept")
        what = "a self-signed certificate" if spec.self_signed else "a signing request"
        self._begin(box, what, lambda: self._create(spec))
        then = (
            "HTTPS serves it once it is made"
            if spec.self_signed
            else "vars read X509/REQUEST, or Administration/Certificates, once it is made"
        )
        return f"X509: making a new key and {what} ({then})"

    def cmd_install(self, box: Box, args: list[str]) -> str:
        if not self._responses(box):
            raise ModCmdError(
                "X509: no X509/REQUESTRESPONSE/00000: vars create X509/REQUESTRESPONSE/00000 pb "
                "<certificate in hex DER> (then /00001 … for the CA certificates) first"
            )
        self.take_responses(box)
        return "X509: installing the certificate from X509/REQUESTRESPONSE (see the trace)"

    def cmd_info(self, box: Box, args: list[str]) -> str:
        view = self.view_of(self._current(), box.get_var(VAR_REQUEST))
        if view is None:
            return "X509: no HTTPS certificate in use (HTTP0 /https-port 0?)"
        kind = "self-signed" if view.self_signed else f"issued by {view.issuer}"
        lines = [
            f"subject {view.subject} ({kind})",
            f"san {view.san or '-'}",
            f"valid {view.not_before} to {view.not_after} ({view.days_left} days left)",
            f"sha256 {view.sha256}",
            f"chain {len(view.chain)} certificate{'s' if len(view.chain) != 1 else ''}",
        ]
        if view.request_subject:
            lines.append(f"request {view.request_subject} (vars read X509/REQUEST)")
        return "\n".join(lines)

    def cmd_xml_info(self, box: Box, args: list[str]) -> str:
        parts = []
        cert = self._current()
        if cert is not None:
            try:
                chain = self.chain_of(cert.cert_pem)
            except CertError:
                chain = []
            certs = "".join(
                xmltext.element(
                    "certificate",
                    {
                        "subject_cn": c.subject_cn,
                        "issuer_cn": c.issuer_cn,
                        "subject": c.subject,
                        "issuer": c.issuer,
                        "not_before": _php_date(c.not_before),
                        "not_after": _php_date(c.not_after),
                        "sha256": c.sha256,
                        "san": c.san,
                    },
                )  # fmt: skip
                for c in chain
            )
            parts.append(f"<servercert>{certs}</servercert>")
        request = box.get_var(VAR_REQUEST)
        if request:
            attrs = {"size": str(len(request))}
            try:
                attrs["subject"] = self.request_of(request)[1]
            except CertError:
                pass
            parts.append(f"<requests>{xmltext.element('request', attrs)}</requests>")
        if self._busy:
            parts.append(xmltext.element("busy", {"what": self._busy}))
        error = box.get_var(VAR_ERROR)
        if error:
            parts.append(xmltext.element("request-error", {"text": error.decode(errors="replace")}))
        return "<info>" + "".join(parts) + "</info>"

    # -- the worker ---------------------------------------------------------------------
    def _begin(self, box: Box, what: str, work: Callable[[], None]) -> None:
        """On the owner: one piece of long work (openssl) at a time, in the worker."""
        box.owner.check("X509")
        if self._busy:
            raise ModCmdError(f"X509: busy with {self._busy}; try again when it is done")
        self._busy = what

        def run() -> None:
            try:
                work()
            except BoxRestarting:
                pass
            finally:
                try:
                    box.owner.post(self._idle)
                except BoxRestarting:
                    pass

        self._worker = threading.Thread(target=run, name="x509-worker", daemon=True)
        self._worker.start()

    def _idle(self) -> None:
        self._busy = ""

    def _addresses(self, box: Box) -> list[str]:
        return [a.partition("/")[0] for a in box.addresses.values() if a]

    def _create(self, spec: x509.RequestSpec) -> None:
        box = self._box()
        name, addresses = box.owner.call(lambda: (box.name, self._addresses(box)))
        try:
            if spec.self_signed:
                made = make_certificate(name, addresses=addresses)
                box.owner.call(lambda: box.commit_vars({
                    CERT_KEY: made.cert_pem, PRIVATE_KEY: made.key_pem,
                    SAN_KEY: made.san.encode(), SIGNED_KEY: None,
                }))  # fmt: skip
                self._use(made)
                self._trace(f"X509: new self-signed certificate for {made.san}, SHA-256 "
                          f"{made.fingerprint()}")  # fmt: skip
                self.check_expiry(made)
                return
            csr, key = x509.make_request(spec, name, addresses)
            der = x509.request_der(csr)
            public = hashlib.sha256(x509.public_key_of(key).encode()).hexdigest()
            subject = x509.request_subject(csr)
            self._requests = {der: (csr.decode("ascii"), subject)}
        except CertError as e:
            self._trace(f"X509: no new {'certificate' if spec.self_signed else 'request'}: {e}")
            return
        box.owner.call(lambda: box.commit_vars({
            VAR_REQUEST: der, VAR_REQUESTKEY: f"sha256:{public}".encode(), REQUEST_KEY: key,
            VAR_ERROR: None,
        }))  # fmt: skip
        self._trace(f"X509: signing request made for {subject}: vars read X509/REQUEST, or "
                  "download it from Administration/Certificates")  # fmt: skip

    # -- installing -------------------------------------------------------------------------
    def _responses(self, box: Box) -> list[str]:
        from appliance.config.varlines import under

        return under(box.flash.vars.keys(), VAR_RESPONSE) if box.flash is not None else []

    def take_responses(self, box: Box) -> None:
        """On the owner: X509/REQUESTRESPONSE/* (if any) checked and installed, in the
        worker; taken or refused, they are removed (a refusal: X509/REQUESTERROR)."""
        names = self._responses(box)
        if not names or self._busy:
            return
        ders = [box.get_var(n) or b"" for n in names]
        gone = dict.fromkeys(names)

        def install() -> None:
            pem = b"".join(p for d in ders for p in x509.split_pem(d)[:1])
            try:
                if not pem:
                    raise CertificateRefused("X509/REQUESTRESPONSE holds no certificate")
                self.install(pem, "X509/REQUESTRESPONSE", extra=gone)
            except CertificateRefused as e:
                why = str(e)
                box.owner.call(lambda: box.commit_vars({**gone, VAR_ERROR: why.encode()}))
                self._trace(f"X509: the certificate in X509/REQUESTRESPONSE was refused: {why}")

        self._begin(box, "installing a certificate", install)

    def install(self, data: bytes, source: str, extra: dict[str, None] | None = None) -> str:
        """Off the owner: the certificate and chain in `data` (PEM) checked, then kept and
        served; CertificateRefused with the reason (nothing changed) otherwise."""
        box = self._box()
        pending, running = box.owner.call(
            lambda: (box.get_var(REQUEST_KEY), box.get_var(PRIVATE_KEY))
        )
        keys = [k for k in (pending, running) if k]
        try:
            chain, infos, key = x509.check_chain(data, keys)
        except CertError as e:
            self._trace(f"X509: certificate from {source} refused: {e}")
            raise CertificateRefused(str(e)) from None
        leaf = infos[0]
        changes: dict[str, bytes | None] = {
            CERT_KEY: chain, PRIVATE_KEY: key, SAN_KEY: leaf.san.encode(),
            SIGNED_KEY: leaf.issuer.encode(), VAR_ERROR: None, **(extra or {}),
        }  # fmt: skip
        if key == pending:  # the request is answered: its key is the box's key now
            changes |= {REQUEST_KEY: None, VAR_REQUEST: None, VAR_REQUESTKEY: None}
        box.owner.call(lambda: box.commit_vars(changes))
        cert = Certificate(chain, key, True, leaf.san, signed=True)
        self._use(cert)
        message = (
            f"X509: certificate installed from {source}: {leaf.subject}, issued by "
            f"{leaf.issuer}, valid until {x509.when(leaf.not_after)}, chain of {len(infos)}, "
            f"SHA-256 {leaf.sha256}"
        )
        self._trace(message)
        self.check_expiry(cert)
        return message

    # -- what certificates and requests say (openssl), kept ---------------------------------
    def chain_of(self, pem: bytes) -> list[x509.CertInfo]:
        """What each certificate of a chain says. Kept per chain: openssl runs when a
        certificate is new to this boot (its start, an install: off the owner), so `mod cmd
        X509 info|xml-info` on the owner thread do not wait for it again."""
        chain = self._described.get(pem)  # replaced whole by other threads, never changed
        if chain is None:
            chain = [x509.describe(p) for p in x509.split_pem(pem)]
            if not chain:
                raise CertError("no certificate in it")
            self._described = {pem: chain}  # the newest only: one certificate is in use
        return chain

    def request_of(self, request: bytes) -> tuple[str, str]:
        """A request (X509/REQUEST, DER) as PEM, and its subject; kept like chain_of."""
        said = self._requests.get(request)
        if said is None:
            pem = x509.request_pem(request)
            said = (pem.decode("ascii"), x509.request_subject(pem))
            self._requests = {request: said}
        return said

    # -- the page -------------------------------------------------------------------------
    def view(self) -> CertView | None:
        """Off the owner: what Administration/Certificates shows."""
        box = self._box()
        request, busy = box.owner.call(lambda: (box.get_var(VAR_REQUEST), self._busy))
        return self.view_of(self._current(), request, busy)

    def view_of(
        self, cert: Certificate | None, request: bytes | None, busy: str = ""
    ) -> CertView | None:
        if cert is None:
            return None
        try:
            chain = self.chain_of(cert.cert_pem)
            request_pem, request_subject = self.request_of(request) if request else ("", "")
        except CertError as e:
            return CertView(error=str(e))
        leaf = chain[0]
        return CertView(
            subject=leaf.subject,
            issuer=leaf.issuer,
            san=leaf.san,
            not_before=x509.when(leaf.not_before),
            not_after=x509.when(leaf.not_after),
            days_left=leaf.days_left(_now()),
            sha256=leaf.sha256,
            self_signed=leaf.self_signed,
            chain=tuple(f"{c.subject} (issued by {c.issuer})" for c in chain),
            request_pem=request_pem,
            request_subject=request_subject,
            busy=busy,
        )


def _php_date(t: datetime.datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S")
