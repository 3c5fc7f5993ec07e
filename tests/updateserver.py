"""A stand-in for innovaphone's update server V2 (github innovaphone/php-update-server, build
2033, `update.php` with a `<master info=…>`, a `<backup dir nbackups scfg>` and no scripts
configured) on 127.0.0.1, for the update-server tests.

It answers exactly the lines update.php sends in these cases (CRLF, the `#` comments that do
not depend on the server's files kept), as captured from update.php under `php -S` with the
default config.xml (one phase, `update`; polling 5, interval 15) and a user-config.xml
naming a master and a backup dir (facts, not its code; shared/reference/ecosystem.md):
- a poll missing one of `type sn hwid ip` (`$requiredArgs`): fast polling on —
  `mod cmd UP1 provision 5`, `config add UP1 /poll 1` — and the poll URL with `polling=5
  phase type sn hwid ip` URL-encoded whole (rawurlencode) in `config add UP1 /url …`,
  `config add UP1 /no-dhcp`, `config write`, `config activate`;
- a full poll: `mod cmd UP0 scfg <base>?mode=backup&hwid=#h&sn=#m`; the master's firmware
  build read from its `/CMD0/box_info.xml` (no credentials; refused without a `<sys>` child
  of the root, "no <sys> tag in PBX info", as getPbxInfo) and, when the poll's `PROT` differs,
  `mod cmd UP0 prot <base>/fw/<build>/ ser <build>` and `iresetn`; the phase being the last,
  fast polling off while the poll's `polling` is not 0 (`mod cmd UP1 provision 0`, `config
  rem UP1 /provision`, `config add UP1 /poll 15`, the URL with `polling=0`, `/no-dhcp`,
  `config write`, `config activate`); then, no scripts being configured, the signature of no
  files (md5 of nothing): if the poll's `CHECK` has it, "not delivering any snippets", else
  `mod cmd UP1 check ser <sig>` and `iresetn` (after `config write`, `config activate`);
- `PUT …?mode=backup&hwid=H`: the backup kept per hwid (saveBackup); `PUT …?mode=vardump&
  var=V&file=F`: the third word of the `vars read` line naming V (getVarDump);
- `GET /fw/<build>/ipva.bin`: the firmware (fwstorage `fw/{build}/`, file name ip<model>.bin).

Certificates (`CustomCerts`: config.xml's `<customcerts CAtype="manual" CAname=… CSRkey=
"2048-bit" CSRsignature="SH256" CSRdn-cn="{sn}" renew="90">` and its `<queries>` entry
`certificates`, `mod cmd X509 xml-info`), as UpdateServerV2::doCertificates decides from the
query the box PUT last (`PUT …?mode=query&sn=S&id=certificates`, saveQuery):
- no request on the box and a certificate whose issuer is not one of CAname (or expired, or
  ending within `renew` days): the X509/REQUESTERROR dump line and `mod cmd X509
  servercert-create /cmd servercert-create /redirect /target device /type Signing%20request
  /key … /signature … /dn-cn … /dn-ou  …` (each option rawurlencoded, empty ones empty);
- a request on the box not fetched yet: the dump of X509/REQUEST (`proc=var2bin`,
  `postproc=createPemFromDer`): the server keeps `<sn>-request.p10.der` and `.pem`;
- a signed answer there (`<sn>-signedrequest.cer`, put by the CA's admin: the test):
  `vars create X509/REQUESTRESPONSE/00000 pb <hex DER>`, then one per CA file (CAkeys);
- a good certificate: `vars del X509/REQUEST`, `vars del X509/REQUESTKEY` if a request is
  still on the box, else nothing. Lines are followed by `config write`, `config activate`,
  `iresetn` (update.php).
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import http.server
import re
import threading
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import parse_qs, quote, urlsplit

from tests.receivers import http_serving

REQUIRED = ("type", "sn", "hwid", "ip")
POLLING = "5"  # config.xml <times polling="5" interval="15">
INTERVAL = "15"
PHASE = "update"
NO_FILES_SIG = hashlib.md5(b"").hexdigest()  # getFilesSignature of no scripts
_VERSION_RE = re.compile(
    r"(?P<label>.*)\[(?P<prot>[^]]*)\].*\[(?P<boot>[^]]*)\].*\[(?P<hw>[^]]*)\].*"
)


CSR_OPTS = (("key", "key"), ("signature", "signature"), ("dn-cn", "dn-cn"), ("dn-ou", "dn-ou"),
            ("dn-o", "dn-o"), ("dn-l", "dn-l"), ("dn-st", "dn-st"), ("dn-c", "dn-c"),
            ("san-dns-1", "san-dns"), ("san-dns-2", "san-dns"), ("san-dns-3", "san-dns"),
            ("san-ip-1", "san-ip"), ("san-ip-2", "san-ip"))  # fmt: skip  # $csropts


def rawurlencode(text: str) -> str:
    return quote(text, safe="-_.~")


@dataclass
class CustomCerts:
    ca_names: tuple[str, ...]  # CAname, split at CAnamesep
    csr: dict[str, str]  # CSR<key> attributes: {"key": "2048-bit", "dn-cn": "{sn}", …}
    renew_days: int = 90
    ca_files: list[bytes] = field(default_factory=list)  # the CAkeys files (PEM)
    queries: dict[str, ET.Element] = field(default_factory=dict)  # sn → <certificates>
    files: dict[str, bytes] = field(default_factory=dict)  # the certdir's files by name


@dataclass
class UpdateServer:
    host: str = "127.0.0.1"  # as the boxes reach it (10.0.2.2 from a guest)
    port: int = 0
    master_info: str = ""  # the master box's /CMD0/box_info.xml URL
    firmware: dict[str, bytes] = field(default_factory=dict)  # build → ipva.bin
    polls: list[dict[str, str]] = field(default_factory=list)  # each poll's query args
    answers: list[str] = field(default_factory=list)
    backups: dict[str, list[bytes]] = field(default_factory=dict)  # hwid → PUT bodies
    downloads: list[str] = field(default_factory=list)
    vardumps: dict[str, str] = field(default_factory=dict)  # file → the value extracted
    errors: list[str] = field(default_factory=list)  # what the server would notify()
    certs: CustomCerts | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}/update.php"

    def master_build(self) -> str | None:
        """getPbxInfo: the root must hold <sys version="label[prot]…[boot]…[hw]…">."""
        with urllib.request.urlopen(self.master_info, timeout=10) as r:
            root = ET.fromstring(r.read())
        sys = root.find("sys")
        if sys is None:
            self.errors.append("no <sys> tag in PBX info")
            return None
        m = _VERSION_RE.fullmatch(sys.get("version", ""))
        if m is None:
            self.errors.append(f"cannot parse box info {sys.get('version')!r}")
            return None
        return m["prot"].replace(".", "")

    def answer(self, args: dict[str, str]) -> str:
        """update.php's answer to a poll with these query args (its notify() comments that
        depend on the server's files left out; every command line as it sends it)."""
        if any(k not in args for k in REQUIRED):
            lines = ["# ", "", f"# turn on fast polling ({POLLING})"]
            lines += [f"mod cmd UP1 provision {POLLING}", "config add UP1 /poll 1", ""]
            lines += ["# missing query args: " + ", ".join(k for k in REQUIRED if k not in args)]
            return "\r\n".join(lines + self._url_lines(POLLING)) + "\r\n"
        lines = ["# ", f"# phase: {PHASE}, nextphase: , environment: default, type: "
                 f"{args['type']}, classes: gw+pbx+ipva", "", ""]  # fmt: skip
        lines += [f"mod cmd UP0 scfg {self.base}?mode=backup&hwid=#h&sn=#m", ""]
        build = self.master_build() if self.master_info else None
        stale = build is not None and args.get("PROT") != build
        if stale:
            lines.append(f"# current firmware ({args.get('PROT', 'unknown')}) does not match "
                         f"required firmware ({build})")  # fmt: skip
            lines.append(f"mod cmd UP0 prot http://{self.host}:{self.port}/fw/{build}/ ser {build}")
        elif build is not None:
            lines.append(f"# firmware {build} good")
        lines.append("# no bootcode update for device of type 'ipva'")
        if stale:
            lines.append("# make sure remaining update scripts are executed with up-to-date "
                         "firmware and update URL")  # fmt: skip
            lines.append("iresetn")
        lines.append("# no certificate cmds required - processing normal updates")
        # one phase (config.xml): the final one, so fast polling ends (polling 0), and the
        # URL is rewritten (with `provision 0`) whenever the poll's `polling` is not 0 yet
        rewrite = args.get("polling") != "0"
        if args.get("CHECK") == NO_FILES_SIG:
            lines += [f"# not delivering any snippets - CHECK serial {NO_FILES_SIG} is good", ""]
            if rewrite:
                lines += self._fast_polling_off()
            return "\r\n".join(lines) + "\r\n"
        lines += ["", "", "# end of all scripts ", ""]
        lines += self._fast_polling_off() if rewrite else ["config write", "config activate"]
        lines += ["# set CHECK var", f"mod cmd UP1 check ser {NO_FILES_SIG}"]
        lines += ["# trigger reset if required", "iresetn"]
        return "\r\n".join(lines) + "\r\n"

    # -- certificates (doQueries, doCertificates) -----------------------------------------
    def query_line(self) -> str:
        return (f"mod cmd UP0 scfg {self.base}?mode=query&sn=#m&id=certificates ser nop "
                f"/always {rawurlencode('mod cmd X509 xml-info')}")  # fmt: skip

    def _dump_line(self, var: str, file: str, proc: str = "", postproc: str = "") -> str:
        extra = (f"&proc={proc}" if proc else "") + (f"&postproc={postproc}" if postproc else "")
        read = rawurlencode(f"vars read {var}")
        return (f"mod cmd UP0 scfg {self.base}?mode=vardump&sn=#m&var={var}&file="
                f"{rawurlencode(file)}{extra} ser nop /always {read}")  # fmt: skip

    def certificate_lines(self, sn: str) -> list[str] | None:
        """doCertificates' commands for the box `sn` (None: nothing to do), as update.php
        prints them, then config write, config activate, iresetn."""
        cc = self.certs
        assert cc is not None, "no <customcerts>"
        info = cc.queries[sn].find("info") if sn in cc.queries else None
        if info is None:
            return None  # "we dont know anything about the current certificate state"
        if info.find("request-error") is not None:
            return ["ser"]  # "certificate processing STOPPED due to previous upload error"
        if info.find("busy") is not None:
            return None  # "wait for signing request to be generated (ongoing)"
        now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
        renew = now + datetime.timedelta(days=cc.renew_days)
        certs = info.findall("servercert/certificate") or [
            ET.Element("certificate", subject_cn="-- no CN --", issuer_cn="-- no CA --")
        ]
        need = any(c.get("issuer_cn") not in cc.ca_names for c in certs)
        for c in certs:
            after = c.get("not_after")
            if after is not None and datetime.datetime.fromisoformat(after) < renew:
                need = True  # expired, or valid but must be renewed
        has_request = info.find("requests/request") is not None
        base = f"certs/{sn}"
        if not need:
            return ["vars del X509/REQUEST ", "vars del X509/REQUESTKEY "] if has_request else None
        cmds = [self._dump_line("X509/REQUESTERROR", f"{base}-requesterror")]
        if has_request:
            if f"{base}-request.p10.der" not in cc.files:
                cmds.append(self._dump_line("X509/REQUEST", f"{base}-request.p10.der", "var2bin",
                                            "createPemFromDer"))  # fmt: skip
            elif f"{base}-signedrequest.cer" in cc.files:
                ders = [_der(cc.files[f"{base}-signedrequest.cer"])]
                ders += [_der(f) for f in cc.ca_files]
                cmds += [f"vars create X509/REQUESTRESPONSE/{n:05d} pb {d.hex()}"
                         for n, d in enumerate(ders)]  # fmt: skip
            else:
                return None  # "signing request must be processed by CA (ongoing)"
        else:
            csr = ("mod cmd X509 servercert-create /cmd servercert-create /redirect /target "
                   "device /type Signing%20request ")  # fmt: skip
            for key, opt in CSR_OPTS:
                csr += f" /{opt} " + rawurlencode(cc.csr.get(key, "").replace("{sn}", sn))
            cmds.append(csr)
        return [*cmds, "config write", "config activate", "iresetn"]

    def _fast_polling_off(self) -> list[str]:
        lines = ["# turn off fast polling", "mod cmd UP1 provision 0", "config rem UP1 /provision"]
        return lines + [f"config add UP1 /poll {INTERVAL}", *self._url_lines("0")]

    def _url_lines(self, polling: str) -> list[str]:
        # the state args phase/polling, the required ones as their placeholders (<stdargs>),
        # the whole URL rawurlencoded
        url = f"{self.base}?polling={polling}&phase={PHASE}&type=#t&sn=#m&hwid=#h&ip=#i"
        return ["", f"config add UP1 /url {quote(url, safe='-_.~')}", "config add UP1 /no-dhcp",
                "config write", "config activate"]  # fmt: skip


def _der(pem: bytes) -> bytes:
    """getCertFromFile: the base64 between BEGIN and END CERTIFICATE, decoded."""
    text = pem.decode("ascii")
    body = text.split("-----BEGIN CERTIFICATE-----")[1].split("-----END CERTIFICATE-----")[0]
    return base64.b64decode("".join(body.split()))


def _der2pem(der: bytes) -> bytes:
    b64 = base64.b64encode(der).decode()
    lines = "".join(b64[i : i + 64] + "\r\n" for i in range(0, len(b64), 64))  # chunk_split
    return (f"-----BEGIN CERTIFICATE REQUEST-----\r\n{lines}"
            "-----END CERTIFICATE REQUEST-----\r\n").encode()  # fmt: skip


@contextlib.contextmanager
def update_server(master_info: str = "", host: str = "127.0.0.1") -> Iterator[UpdateServer]:
    srv = UpdateServer(host, master_info=master_info)

    class Handler(http.server.BaseHTTPRequestHandler):
        def _args(self) -> dict[str, str]:
            query = parse_qs(urlsplit(self.path).query, keep_blank_values=True)
            return {k: v[-1] for k, v in query.items()}

        def _send(self, body: bytes, status: int = 200) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            path = urlsplit(self.path).path
            m = re.fullmatch(r"/fw/(\d+)/ipva\.bin", path)
            if m and m[1] in srv.firmware:
                with srv.lock:
                    srv.downloads.append(path)
                self._send(srv.firmware[m[1]])
            elif path == "/update.php":
                args = self._args()
                text = srv.answer(args)
                with srv.lock:
                    srv.polls.append(args)
                    srv.answers.append(text)
                self._send(text.encode())
            else:
                self.send_error(404)

        def do_PUT(self) -> None:  # noqa: N802
            args = self._args()
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            mode = args.get("mode")
            if urlsplit(self.path).path != "/update.php" or mode not in (
                "backup", "vardump", "query"
            ):  # fmt: skip
                self.send_error(404)
                return
            if mode == "query":  # saveQuery: <id>content</id>, bailout on bad XML
                try:
                    element = ET.fromstring(f"<{args['id']}>{body.decode()}</{args['id']}>")
                except ET.ParseError as e:
                    self._send(f"invalid xml: {e}".encode(), 400)
                    return
                if srv.certs is not None and args.get("id") == "certificates":
                    with srv.lock:
                        srv.certs.queries[args.get("sn", "")] = element
                self._send(b"")
                return
            if mode == "vardump":  # getVarDump: the third word of the line naming the var
                value = next(
                    (t[2] for t in (line.split(" ") for line in body.decode().splitlines())
                     if len(t) >= 3 and t[0] == args.get("var")),
                    None,
                )  # fmt: skip
                if value is None:
                    self._send(b"failed to extract the var from PUT data for mode=vardump", 400)
                    return
                with srv.lock:
                    srv.vardumps[args.get("file", "")] = value
                    if srv.certs is not None:  # proc var2bin, postproc createPemFromDer
                        data = bytes.fromhex(value) if args.get("proc") == "var2bin" else value
                        name = args.get("file", "")
                        srv.certs.files[name] = data if isinstance(data, bytes) else data.encode()
                        if args.get("postproc") == "createPemFromDer":
                            srv.certs.files[name.replace(".der", ".pem")] = _der2pem(
                                srv.certs.files[name]
                            )
                self._send(b"")
                return
            if "hwid" not in args:  # update.php's bailout
                self._send(b"need 'hwid' arg for mode=backup, use ?hwid=#h", 400)
                return
            with srv.lock:
                srv.backups.setdefault(args["hwid"], []).append(body)
            self._send(b"")

        def log_message(self, *args: object) -> None:
            pass

    with http_serving(Handler) as port:
        srv.port = port
        yield srv
