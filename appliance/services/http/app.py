"""The admin's WSGI application: the box's URLs, its pages, the login in front of them.

URLs (as on the box, see shared/reference/box-network-admin.md):
    /!<console line>          any console command, answered as text (the console's own
                              interpreter); an `error:` answer is a 400 with that text
    /CMD0/box_info.xml        status as XML (<info><sys version="…" …>…</info>)
    /cfg.txt                  GET: the backup; PUT: restore it (`curl --digest -T cfg.txt`)
    /<MODULE>/mod_cmd.xml?cmd=<cmd>&<k>=<v>   `mod cmd <MODULE> <cmd> /<k> <v>`, e.g.
                              /LOG0/CNT/mod_cmd.xml?cmd=xml-count&x=2 (monitoring)
    /ipva.bin                 PUT/POST: a firmware image into the other slot (firmware.py)
    /maintenance/upload/firmware   the Upload page's firmware form (multipart, streamed)
    /log.txt, /crash_dump.txt the trace buffer, the post-mortem record
    /DRIVE/CF0/…              the compact flash's files, read-only (drive.py)
    /ALARM0/event, /LOG0/log  POST: another box's alarm/event or log line (the Standard
                              method; ALARM0 /auth: only with the admin login)
    /ALARM0/events.xml        the alarms and events as XML (mod cmd ALARM0 xml)
    /general/info …           the admin pages (PAGES), server-rendered HTML
Everything but General/Info, box_info.xml and the style sheet needs the admin login (see
auth.py). Every request must name the box in its Host header, and a request that changes
something needs a proof that no foreign page sent it through the browser's stored login
(csrf.py). Answers are never cached (no-store) nor sniffed (nosniff).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from appliance.config import ConfigError, GrammarError, quote
from appliance.config.types import FACTORY_PASSWORD, check_password, password_realm
from appliance.events import acting
from appliance.owner import BoxRestarting
from appliance.services.alarms.codes import Severity
from appliance.services.alarms.entry import EntryError
from appliance.services.alarms.forward import STANDARD_PATH as ALARM_PATH
from appliance.services.alarms.receiver import MAX_BODY as INCOMING_MAX
from appliance.services.alarms.receiver import LogLineError
from appliance.services.http import auth, csrf, drive, firmware
from appliance.services.http.host import (
    AdminBox,
    BoxStatus,
    CertificateRefused,
    FirmwareRefused,
    RestoreRefused,
)
from appliance.services.http.ipform import ip_changes, ip_values
from appliance.services.http.logins import Logins
from appliance.services.logtargets.remote import STANDARD_PATH as LOG_PATH

HERE = Path(__file__).parent
MAX_BODY = 4 << 20  # a backup (config + FLASHDIR items) or a form; larger is a 413
MAX_COMMAND = 1024  # as the console's line limit
MAX_FORM_PARTS = 32  # the largest form (Configuration/IP) has 11 fields
# the bodies larger than MAX_BODY some URLs take
BODY_LIMITS = {"/ipva.bin": firmware.MAX_PUT, "/maintenance/upload/firmware": firmware.MAX_FORM}


@dataclass(frozen=True)
class Page:
    """A page of the admin's tree; `public`: shown without a login."""

    path: str
    group: str  # the tree's first level
    title: str
    public: bool = False


PAGES = (
    Page("/general/info", "General", "Info", public=True),
    Page("/configuration/ip", "Configuration", "IP"),
    Page("/maintenance/upload", "Maintenance", "Upload"),
    Page("/maintenance/download", "Maintenance", "Download"),
    Page("/maintenance/diagnostics/tracing", "Maintenance", "Diagnostics/Tracing"),
    Page("/maintenance/events", "Maintenance", "Events"),
    Page("/administration/compact-flash", "Administration", "Compact Flash"),
    Page("/administration/admin", "Administration", "Admin"),
    Page("/administration/certificates", "Administration", "Certificates"),
    Page("/reset", "Reset", "Reset"),
)
_PAGE = {p.path: p for p in PAGES}


_WORD = re.compile(r"[A-Za-z0-9_./-]{1,64}")


class _Capped:
    """A chunked body's stream (its length unknown beforehand): more than `limit` bytes is a
    413 as a Content-Length over it is, found while reading, never after."""

    def __init__(self, stream: Any, limit: int) -> None:
        self._stream = stream
        self._left = limit

    def read(self, size: int = -1) -> bytes:
        return self._take(self._stream.read, size)

    def readline(self, size: int = -1) -> bytes:
        return self._take(self._stream.readline, size)

    def _take(self, read: Callable[[int], bytes], size: int | None) -> bytes:
        want = self._left + 1 if size is None or size < 0 else min(size, self._left + 1)
        try:
            data = bytes(read(want))
        except OSError as e:  # cheroot's own cap on a chunk's size line (an IOError)
            if "Too Large" in str(e):
                raise RequestEntityTooLarge() from e
            raise
        self._left -= len(data)
        if self._left < 0:
            raise RequestEntityTooLarge()
        return data


def _text(body: str, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    if body and not body.endswith("\n"):
        body += "\n"
    return Response(body, status, headers or {}, content_type="text/plain; charset=utf-8")


def box_info_xml(status: BoxStatus) -> bytes:
    """`/CMD0/box_info.xml`: `<info><sys version="label IPVA[build], Bootcode[b], HW[h]" …>`.

    `<sys>` sits inside the root as on the real box: innovaphone's update server reads
    `$xml->sys['version']` of the root and refuses a document whose root is `<sys>`; the
    monitoring plugins find it with `root.iter('sys')`."""
    attrs = {
        "version": status.version,
        "name": status.name,
        "hw": status.hw,
        "mac": status.mac,
        "serial": status.mac.replace(":", "").lower(),
        "uptime": str(status.uptime_s),
        "dram": str(status.dram_mb),
    }
    if status.reset_required:
        attrs["reset-required"] = "true"
    if status.factory_password:
        attrs["default-password"] = "true"
    attrs["alarms"] = str(status.alarms)  # active alarms (ALARM0)
    root = ET.Element("info")
    sys = ET.SubElement(root, "sys", attrs)
    for a in status.addresses:
        ET.SubElement(sys, "eth", {"name": a.port, "addr": a.addr, "mode": a.mode, "mac": a.mac})
    fw = status.firmware
    running = fw.running
    fw_attrs = {"running": running.letter if running else "", "last-update": fw.last_update}
    if fw.why_not:
        fw_attrs["error"] = fw.why_not
    slots = ET.SubElement(sys, "firmware", fw_attrs)
    for s in fw.slots:
        ET.SubElement(slots, "slot", {
            "id": s.letter, "file": s.file, "version": s.version, "build": str(s.build or ""),
            "state": s.state, "running": "true" if s.running else "false", "signed": s.signed,
        })  # fmt: skip
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


class AdminApp:
    """The WSGI callable. One per server pair; `https` is told per request by the server."""

    def __init__(
        self,
        box: AdminBox,
        *,
        lockout: auth.Lockout | None = None,
        nonces: auth.Nonces | None = None,
    ) -> None:
        self.box = box
        self.nonces = nonces or auth.Nonces()
        self.lockout = lockout or auth.Lockout(box.trace)
        self.sessions = csrf.Sessions()
        # Administration/Admin's current-password check: counted apart, since the Digest
        # login of the same browser succeeds on every request (and would clear the count)
        self.password_checks = auth.Lockout(box.trace, spread=False)
        self.logins = Logins(box.emit)  # logins and failed logins, for the log
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(HERE / "templates")),
            autoescape=True,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.style = (HERE / "static" / "style.css").read_bytes()
        self.urls = Map(
            [
                Rule("/", endpoint="root"),
                Rule("/CMD0/box_info.xml", endpoint="box_info"),
                Rule("/cfg.txt", endpoint="cfg", methods=["GET", "PUT"]),
                Rule("/<path:module>/mod_cmd.xml", endpoint="mod_cmd"),
                Rule("/ipva.bin", endpoint="firmware", methods=["PUT", "POST"]),
                Rule("/maintenance/upload/firmware", endpoint="firmware_form", methods=["POST"]),
                Rule("/administration/certificates/request.pem", endpoint="request_pem"),
                Rule("/log.txt", endpoint="log"),
                Rule("/crash_dump.txt", endpoint="crash_dump"),
                Rule("/static/style.css", endpoint="style"),
                Rule(ALARM_PATH, endpoint="incoming", methods=["POST"]),
                Rule(LOG_PATH, endpoint="incoming", methods=["POST"]),
                Rule("/ALARM0/events.xml", endpoint="events_xml"),
                Rule(drive.PREFIX, endpoint="drive", methods=drive.METHODS),
                Rule(f"{drive.PREFIX}/<path:sub>", endpoint="drive", methods=drive.METHODS),
                *(Rule(p.path, endpoint="page", methods=["GET", "POST"]) for p in PAGES),
            ],
            strict_slashes=False,
        )

    # -- WSGI -------------------------------------------------------------------------
    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        limit = BODY_LIMITS.get(request.path.rstrip("/"), MAX_BODY)
        if environ.get("wsgi.input_terminated") and request.content_length is None:
            environ["wsgi.input"] = _Capped(environ["wsgi.input"], limit)  # chunked
        request.max_content_length = limit
        request.max_form_memory_size = MAX_BODY
        request.max_form_parts = MAX_FORM_PARTS
        try:
            if "HTTP_HOST" in environ and not csrf.host_ok(request.host, self.box_name()):
                response = _text(
                    f"error: this box does not answer to the name {request.host[:80]!r} "
                    "(DNS rebinding?): use its address or its name (SYS0 /name)",
                    421,
                )
                return self.finish(response)(environ, start_response)
            if (request.content_length or 0) > limit:  # before the login and the body
                if limit != MAX_BODY:
                    self.box.trace(
                        f"HTTP0: firmware upload from {request.remote_addr} refused: "
                        f"{request.content_length} bytes, more than the {limit} a firmware "
                        "upload may have; nothing was written"
                    )
                raise RequestEntityTooLarge()
            response = self.dispatch(request)
        except BoxRestarting:  # the restart stops this server: answer, do not wait for it
            response = _text(
                "error: the box is restarting; try again in a few seconds",
                503,
                {"Retry-After": "5"},
            )
        except RequestEntityTooLarge:
            what = "a firmware image and its form" if limit != MAX_BODY else "a backup or a form"
            response = _text(
                f"error: the body is larger than {limit >> 20} MiB, the most for {what}; "
                "nothing was written",
                413,
            )
        except HTTPException as e:
            response = _text(f"error: {e.description or e.name}", e.code or 400)
        return self.finish(response)(environ, start_response)

    @staticmethod
    def finish(response: Response) -> Response:
        """Headers every answer has: nothing of the box in a cache, no type sniffed."""
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    def box_name(self) -> str:
        """The name the box answers to besides its addresses (as its prompt: SYS0 /name),
        read without a job on the box's owner (every request asks)."""
        return self.box.public_status().name

    def dispatch(self, request: Request) -> Response:
        path = request.path
        if path.startswith("/!"):
            return self.guarded(request, self.command)
        adapter = self.urls.bind_to_environ(request.environ)
        endpoint, _args = adapter.match()
        if endpoint == "root":
            return Response(status=302, headers={"Location": "/general/info"})
        if endpoint == "style":
            return Response(
                self.style, content_type="text/css", headers={"Cache-Control": "max-age=3600"}
            )
        if endpoint == "box_info":
            return Response(box_info_xml(self.box.status()), content_type="text/xml")
        if endpoint == "incoming":
            return self.incoming(request)
        if endpoint == "page" and _PAGE[path.rstrip("/") or "/"].public:
            return self.page(request, None)
        handlers: dict[str, Callable[[Request, str], Response]] = {
            "cfg": self.cfg,
            "mod_cmd": self.mod_cmd,
            "log": lambda r, u: _text(self.box.trace_text()),
            "crash_dump": lambda r, u: _text(self.box.crash_dump_text()),
            "page": self.page,
            "drive": drive.CfDrive(self.box.cf_volume).serve,
            "firmware": self.firmware_put,
            "firmware_form": self.firmware_form,
            "events_xml": self.events_xml,
            "request_pem": self.request_pem,
        }
        return self.guarded(request, handlers[endpoint])

    # -- the login --------------------------------------------------------------------
    def guarded(self, request: Request, handler: Callable[[Request, str], Response]) -> Response:
        client = request.remote_addr or "?"
        https = request.scheme == "https"
        wait = self.lockout.refused_for(client)
        if wait > 0:
            return _text(
                f"error: too many failed logins from {client}: try again in {wait:.0f} s",
                429,
                {"Retry-After": str(int(wait) + 1)},
            )
        account = self.box.account()
        verdict = auth.check_authorization(
            request.headers.get("Authorization"),
            method=request.method,
            uri=request.environ.get("REQUEST_URI") or request.full_path.rstrip("?"),
            https=https,
            account=account,
            nonces=self.nonces,
        )
        if verdict is None or not verdict.ok:
            reason = "login needed" if verdict is None else verdict.reason
            if verdict is not None and verdict.counts:
                refused = self.lockout.failed(client, verdict.user, verdict.reason)
                self.logins.failed(verdict.user, client, verdict.reason, refused)
            response = self.render(
                "login.html", request, None, status=401, reason=reason, https=https,
                box_status=self.box.public_status(),  # no job on the box's owner for a 401
            )  # fmt: skip
            realm = password_realm(account.stored)
            stale = bool(verdict and verdict.stale)
            for value in auth.challenges(self.nonces, https, realm, stale):
                response.headers.add("WWW-Authenticate", value)
            return response
        self.lockout.succeeded(client)
        self.logins.succeeded(verdict.user, client)
        why = csrf.refusal(request, self.sessions)
        if why is not None:
            self.box.trace(
                f"HTTP0: {request.method} {request.path[:60]} from {client} refused: "
                + why.removeprefix("error: refused").lstrip(":, ")[:80]
            )
            return _text(why, 403)
        with acting(f"HTTP {verdict.user}@{client}"):  # who changed what, for the log
            return handler(request, verdict.user)

    # -- text endpoints ---------------------------------------------------------------
    def command(self, request: Request, user: str) -> Response:
        line = request.path[2:]
        if len(line) > MAX_COMMAND:
            return _text(f"error: the command is longer than {MAX_COMMAND} characters", 414)
        if not line.isprintable():
            return _text("error: the command has control characters; nothing was done", 400)
        answer = self.box.execute(line)  # a /!reset: the runtime restarts once this is sent
        return _text(answer, 400 if answer.startswith("error:") else 200)

    def mod_cmd(self, request: Request, user: str) -> Response:
        """`/<MODULE>/mod_cmd.xml?cmd=<cmd>&<k>=<v>…`, as monitoring and the real box's
        pages call module commands: runs `mod cmd <MODULE> <cmd> /<k> <v> …` (the module's
        path as it stands, e.g. LOG0/CNT), for the commands that only show something."""
        module = request.path.removeprefix("/").removesuffix("/mod_cmd.xml")
        cmd = request.args.get("cmd", "")
        if not _WORD.fullmatch(module) or not _WORD.fullmatch(cmd):
            return _text("error: give the module in the path and ?cmd=<command>", 400)
        if cmd.lower() not in csrf.READ_ONLY_MOD_CMDS:  # a GET here only reads (csrf.py)
            return _text(
                f"error: {cmd[:24]!r}: this URL runs only commands that show something "
                f"({', '.join(sorted(csrf.READ_ONLY_MOD_CMDS))}); send others as "
                f"/!mod cmd {module} {cmd[:24]} …",
                403,
            )
        words = [f"mod cmd {module} {cmd}"]
        for key, value in request.args.items(multi=True):
            if key != "cmd":
                if not _WORD.fullmatch(key):
                    return _text(f"error: bad argument name {key[:24]!r}", 400)
                words.append(f"/{key} {quote(value)}")
        answer = self.box.execute(" ".join(words))
        if answer.startswith("error:"):
            return _text(answer, 400)
        if answer.startswith("<"):
            return Response(answer, content_type="text/xml; charset=utf-8")
        return _text(answer)

    def cfg(self, request: Request, user: str) -> Response:
        if request.method == "GET":
            return _text(
                self.box.backup_text(),
                headers={"Content-Disposition": 'attachment; filename="cfg.txt"'},
            )
        body = request.get_data(cache=False)  # bounded by max_content_length
        ok, message = self.restore(body)
        return _text(message if ok else f"error: {message}", 200 if ok else 400)

    # -- alarms and events (services/alarms) ----------------------------------------------
    def incoming(self, request: Request) -> Response:
        """Another box's entry or log line (Standard method); with ALARM0 /auth on only
        with the admin login, and a refusal is counted."""
        alarms = self.box.alarms()
        if alarms is None:
            return _text("error: this box takes no alarms or log lines", 503)
        if not alarms.auth:
            return self._take(request, "")
        response = self.guarded(request, self._take)
        if response.status_code in (401, 429):
            alarms.refused()
        return response

    def _take(self, request: Request, user: str) -> Response:
        alarms = self.box.alarms()
        assert alarms is not None  # incoming() checked it
        body = request.get_data(cache=False)
        if len(body) > INCOMING_MAX:
            return _text(f"error: one entry or line is at most {INCOMING_MAX} bytes", 413)
        client = request.remote_addr or "?"
        try:
            if request.path.rstrip("/") == ALARM_PATH:
                entry = alarms.take_entry(body, client)
                return _text(f"ok {entry.seq}")
            return _text(f"ok {alarms.take_log_line(body, client)}")
        except (EntryError, LogLineError) as e:
            return _text(f"error: {e}", 400)
        except OSError as e:  # CF0 not mounted or full: the sender retries
            return _text(f"error: {e}", 503, {"Retry-After": "5"})

    def events_xml(self, request: Request, user: str) -> Response:
        alarms = self.box.alarms()
        if alarms is None:
            return _text("error: this box has no alarm service", 503)
        severity = _severity(request.args.get("severity", ""))
        body = alarms.xml(severity).encode("utf-8")
        return Response(body, content_type="text/xml; charset=utf-8")

    def events_page(self, request: Request, user: str | None) -> Response:
        alarms = self.box.alarms()
        answer = None
        if request.method == "POST" and request.form.get("action") == "clear":
            answer = self.box.execute("mod cmd ALARM0 clear")
        severity = _severity(request.args.get("severity", ""))
        own = alarms.own(severity) if alarms is not None else []
        collected = alarms.collected(severity) if alarms is not None else []
        return self.render(
            "events.html", request, user, answer=answer, severity=severity,
            severities=list(Severity), own=own, collected=collected,
        )  # fmt: skip

    # -- firmware (firmware.py streams the body into the update service) ----------------
    def firmware_put(self, request: Request, user: str) -> Response:
        """PUT/POST /ipva.bin: the raw image; `?reset` starts it at once."""
        length = request.content_length
        if length is None:
            return _text(
                "error: send the image with a Content-Length (curl -T ipva.bin does); "
                "nothing was written",
                411,
            )
        source = f"ipva.bin ({request.method} from {request.remote_addr} by {user})"
        body = firmware.body_chunks(request.stream, length)
        try:
            done = self.box.install_firmware(body, source)
        except FirmwareRefused as e:
            firmware.discard(body)  # refused before its end (a foreign header, no room …)
            return _text(f"error: {e}", 400)
        if not firmware.wants_reset(request.args.get("reset")):
            return _text(f"{done}; {firmware.RESET_HINT}")
        answer = self.box.execute("reset")  # the restart comes once this answer is out
        return _text(f"{done}; resetting now to start it ({answer})")

    def firmware_form(self, request: Request, user: str) -> Response:
        """The Upload page's firmware form: its file part streams into the installer."""
        status: BoxStatus | None = None
        body = firmware.body_chunks(request.stream, request.content_length or 0)
        try:
            boundary = firmware.form_boundary(request.content_type or "")
            form = firmware.FirmwareForm(body, boundary)
            name = form.open()
            source = f"{name} (upload from {request.remote_addr} by {user})"
            done = self.box.install_firmware(form.chunks(), source)
        except (firmware.FormError, firmware.UploadBroken, FirmwareRefused) as e:
            firmware.discard(body)
            result = (False, str(e))
        else:
            # the checkbox may follow the file in the form: known once the file is read
            if firmware.wants_reset(form.fields.get("reset")):
                status = self.box.status()  # first: once "reset" returns, the restart has it
                result = (True, f"{done}; resetting now ({self.box.execute('reset')})")
            else:
                result = (True, f"{done}; {firmware.RESET_HINT}")
        return self.render(
            "upload.html", request, user, status=200 if result[0] else 400, box_status=status,
            page_path="/maintenance/upload", result=result, resetting=status is not None,
        )  # fmt: skip

    def restore(self, body: bytes) -> tuple[bool, str]:
        if not body.strip():
            return False, "empty upload: send a backup made by /cfg.txt"
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as e:
            line = body[: e.start].count(b"\n") + 1
            return False, f"line {line}: not text (a backup is plain ASCII); nothing changed"
        try:
            return True, self.box.restore_text(text)
        except RestoreRefused as e:
            if e.partial:
                return False, str(e)
            return False, f"{e}; nothing changed"

    # -- pages ------------------------------------------------------------------------
    def render(
        self,
        template: str,
        request: Request,
        user: str | None,
        status: int = 200,
        box_status: BoxStatus | None = None,
        page_path: str | None = None,  # the page a form's own URL belongs to
        **context: Any,
    ) -> Response:
        page = _PAGE.get(page_path or request.path.rstrip("/"))
        session = self.sessions.session(request) if user is not None else None
        fresh = user is not None and session is None
        if fresh:
            session = self.sessions.new_session()
        html = self.templates.get_template(template).render(
            pages=PAGES,
            page=page,
            user=user,
            status=box_status or self.box.status(),
            factory_password=FACTORY_PASSWORD,
            csrf=f"{csrf.TOKEN_ARG}={self.sessions.token(session)}" if session else "",
            **context,
        )
        response = Response(
            html,
            status,
            content_type="text/html; charset=utf-8",
            headers={
                "Cache-Control": "no-store",
                "X-Frame-Options": "DENY",
                "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
            },
        )
        if fresh and session is not None:  # the browser's session: its forms' token
            https = request.scheme == "https"
            response.set_cookie(
                self.sessions.cookie_name(https), session, path="/", secure=https,
                httponly=True, samesite="Strict",
            )  # fmt: skip
        return response

    def page(self, request: Request, user: str | None) -> Response:
        path = request.path.rstrip("/")
        if request.method == "POST" and user is None:
            return _text("error: log in first", 401)
        handler = {
            "/general/info": self.info_page,
            "/configuration/ip": self.ip_page,
            "/maintenance/upload": self.upload_page,
            "/maintenance/download": self.simple_page("download.html"),
            "/maintenance/diagnostics/tracing": self.tracing_page,
            "/maintenance/events": self.events_page,
            "/administration/compact-flash": self.cf_page,
            "/administration/admin": self.admin_page,
            "/administration/certificates": self.certificates_page,
            "/reset": self.reset_page,
        }[path]
        return handler(request, user)

    def simple_page(self, template: str) -> Callable[[Request, str | None], Response]:
        return lambda request, user: self.render(template, request, user)

    def info_page(self, request: Request, user: str | None) -> Response:
        return self.render("info.html", request, user)

    def ip_page(self, request: Request, user: str | None) -> Response:
        """Configuration/IP: the form from the running config's values; a submitted form
        is one job on the box (ipform.py): all its changes or none, then activated."""
        messages: list[str] = []
        errors: list[str] = []
        form = request.form if request.method == "POST" else None
        action = form.get("action", "") if form else ""
        if form is not None and action == "apply":
            ops, errors = ip_changes(self.box.running(), form)
            if not errors:
                try:
                    messages += [m for m in self.box.apply_changes(ops) if m]
                except (ConfigError, GrammarError) as e:
                    errors.append(f"error: {e}")
        elif form is not None and action == "write":
            answer = self.box.execute("config write")
            (errors if answer.startswith("error:") else messages).append(answer)
        return self.render(
            "ip.html",
            request,
            user,
            status=400 if errors else 200,
            ip=ip_values(self.box.running()),
            messages=messages,
            errors=errors,
        )

    def upload_page(self, request: Request, user: str | None) -> Response:
        result = None
        if request.method == "POST":
            upload = request.files.get("cfg")
            if upload is None or not upload.filename:
                result = (False, "choose a backup file (cfg.txt) first")
            else:
                result = self.restore(upload.stream.read(MAX_BODY + 1))
        status = 400 if result and not result[0] else 200
        return self.render("upload.html", request, user, status=status, result=result)

    def tracing_page(self, request: Request, user: str | None) -> Response:
        return self.render(
            "tracing.html",
            request,
            user,
            trace=self.box.trace_text()[-20000:],
            crash=self.box.crash_dump_text(),
        )

    def cf_page(self, request: Request, user: str | None) -> Response:
        answer = None
        action = request.form.get("action", "format") if request.method == "POST" else None
        if action in ("mount", "unmount"):
            answer = self.box.execute(f"mod cmd CF0 {action}")
        elif action == "format" and request.form.get("confirm") == "yes":
            answer = self.box.execute("mod cmd CF0 format yes")
        elif action is not None:
            answer = "error: tick the box to confirm: formatting erases the compact flash"
        bad = bool(answer and answer.startswith("error:"))
        info = self.box.execute("mod cmd CF0 info")
        return self.render(
            "cf.html", request, user, status=400 if bad else 200, answer=answer, info=info
        )

    def admin_page(self, request: Request, user: str | None) -> Response:
        errors: list[str] = []
        done = False
        if request.method == "POST":
            f = request.form
            account = self.box.account()
            old, new, again = f.get("old", ""), f.get("new", ""), f.get("again", "")
            client = request.remote_addr or "?"
            wait = self.password_checks.refused_for(client)
            if wait > 0:
                errors.append(f"too many wrong current passwords: try again in {wait:.0f} s")
            elif not check_password(account.stored, old, account.user):
                errors.append("the current password is wrong")
                # a guess at the password like a failed login: counted, locked out, logged
                reason = "wrong current password on Administration/Admin"
                refused = self.password_checks.failed(client, account.user, reason)
                self.logins.failed(account.user, client, reason, refused)
            elif new != again:
                errors.append("the new password and its repetition differ")
            elif new == FACTORY_PASSWORD:
                errors.append("choose a password other than the factory one")
            else:
                for line in (f"config add ADMIN0 /pwd {quote(new)}", "config activate"):
                    answer = self.box.execute(line)
                    if answer.startswith("error:"):
                        errors.append(answer.removeprefix("error: ").replace(new, "***"))
                        break
                else:
                    answer = self.box.execute("config write")
                    if answer.startswith("error:"):
                        errors.append(answer)
                    else:
                        done = True
                        self.password_checks.succeeded(client)
                        self.box.trace(f"HTTP0: admin password changed by {user}")
        return self.render(
            "admin.html", request, user, status=400 if errors else 200, errors=errors, done=done
        )

    def certificates_page(self, request: Request, user: str | None) -> Response:
        """Administration/Certificates: the certificate in use, a signing request (made by
        the X509 module in the background), a signed certificate and chain installed."""
        certs = self.box.certificates()
        messages: list[str] = []
        errors: list[str] = []
        action = request.form.get("action", "") if request.method == "POST" else ""
        if action == "request":
            line = "mod cmd X509 servercert-create /type Signing+request"
            extra = request.form.get("san-dns", "").strip()
            if extra:
                line += f" /san-dns {quote(extra)}"
            answer = self.box.execute(line)
            (errors if answer.startswith("error:") else messages).append(answer)
        elif action == "self-signed":
            answer = self.box.execute("mod cmd X509 servercert-create /type Self-signed")
            (errors if answer.startswith("error:") else messages).append(answer)
        elif action == "install" and certs is not None:
            upload = request.files.get("chain")
            data = upload.stream.read(MAX_BODY) if upload is not None and upload.filename else b""
            data = data or request.form.get("pem", "").encode("utf-8", "replace")
            try:
                messages.append(certs.install(data, f"the web admin ({user})"))
            except CertificateRefused as e:
                errors.append(f"error: refused, nothing changed: {e}")
        view = certs.view() if certs is not None else None
        return self.render(
            "certificates.html", request, user, status=400 if errors else 200,
            cert=view, messages=messages, errors=errors,
        )  # fmt: skip

    def request_pem(self, request: Request, user: str) -> Response:
        certs = self.box.certificates()
        view = certs.view() if certs is not None else None
        if view is None or not view.request_pem:
            return _text("error: no signing request: make one on Administration/Certificates",
                         404)  # fmt: skip
        return Response(
            view.request_pem,
            content_type="application/pkcs10",
            headers={"Content-Disposition": 'attachment; filename="request.pem"'},
        )

    def reset_page(self, request: Request, user: str | None) -> Response:
        if request.method == "POST":
            # the status first: once "reset" returns, the restart holds the box
            before = self.box.status()
            answer = self.box.execute("reset")
            return self.render(
                "reset.html", request, user, box_status=before, answer=answer, resetting=True
            )
        return self.render("reset.html", request, user, answer=None, resetting=False)


def _severity(word: str) -> Severity | None:
    """The page's and the XML's filter: event|alarm|fault, anything else all."""
    return Severity(word) if word in {s.value for s in Severity} else None
