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
"""

from __future__ import annotations

import contextlib
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

    def _fast_polling_off(self) -> list[str]:
        lines = ["# turn off fast polling", "mod cmd UP1 provision 0", "config rem UP1 /provision"]
        return lines + [f"config add UP1 /poll {INTERVAL}", *self._url_lines("0")]

    def _url_lines(self, polling: str) -> list[str]:
        # the state args phase/polling, the required ones as their placeholders (<stdargs>),
        # the whole URL rawurlencoded
        url = f"{self.base}?polling={polling}&phase={PHASE}&type=#t&sn=#m&hwid=#h&ip=#i"
        return ["", f"config add UP1 /url {quote(url, safe='-_.~')}", "config add UP1 /no-dhcp",
                "config write", "config activate"]  # fmt: skip


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
            if urlsplit(self.path).path != "/update.php" or mode not in ("backup", "vardump"):
                self.send_error(404)
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
