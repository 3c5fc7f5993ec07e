"""The admin's WSGI application: the box's URLs, its pages, the login in front of them.

URLs (as on the box, see shared/reference/box-network-admin.md):
    /!<console line>          any console command, answered as text (the console's own
                              interpreter); an `error:` answer is a 400 with that text
    /CMD0/box_info.xml        status as XML (<sys version="…" …>)
    /cfg.txt                  GET: the backup; PUT: restore it (`curl --digest -T cfg.txt`)
    /ipva.bin                 PUT/POST: a firmware image into the other slot (firmware.py)
    /maintenance/upload/firmware   the Upload page's firmware form (multipart, streamed)
    /log.txt, /crash_dump.txt the trace buffer, the post-mortem record
    /DRIVE/CF0/…              the compact flash's files, read-only (drive.py)
    /general/info …           the admin pages (PAGES), server-rendered HTML
Everything but General/Info, box_info.xml and the style sheet needs the admin login (see
auth.py). Requests that change something are refused when a browser says they come from
another site (Sec-Fetch-Site / Origin), so a foreign page cannot drive the box through
the browser's stored login.
"""

from __future__ import annotations

import ipaddress
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from appliance.config import ConfigError, GrammarError, quote, split_words
from appliance.config.store import parse_line
from appliance.config.types import FACTORY_PASSWORD, check_password
from appliance.events import acting
from appliance.owner import BoxRestarting
from appliance.services.http import auth, drive, firmware
from appliance.services.http.host import AdminBox, BoxStatus, FirmwareRefused, RestoreRefused
from appliance.services.http.logins import Logins

HERE = Path(__file__).parent
MAX_BODY = 4 << 20  # a backup (config + FLASHDIR items) or a form; larger is a 413
MAX_COMMAND = 1024  # as the console's line limit
MAX_FORM_PARTS = 32  # the largest form (Configuration/IP) has 11 fields
# the bodies larger than MAX_BODY some URLs take
BODY_LIMITS = {"/ipva.bin": firmware.MAX_PUT, "/maintenance/upload/firmware": firmware.MAX_FORM}


@dataclass(frozen=True)
class Page:
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
    Page("/administration/compact-flash", "Administration", "Compact Flash"),
    Page("/administration/admin", "Administration", "Admin"),
    Page("/reset", "Reset", "Reset"),
)
_PAGE = {p.path: p for p in PAGES}


def _text(body: str, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    if body and not body.endswith("\n"):
        body += "\n"
    return Response(body, status, headers or {}, content_type="text/plain; charset=utf-8")


def box_info_xml(status: BoxStatus) -> bytes:
    """`/CMD0/box_info.xml`: <sys version="label IPVA[build], Bootcode[b], HW[h]" …>."""
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
    sys = ET.Element("sys", attrs)
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
            "state": s.state, "running": "true" if s.running else "false",
        })  # fmt: skip
    return ET.tostring(sys, encoding="utf-8", xml_declaration=True) + b"\n"


def _cross_site(request: Request) -> bool:
    """A browser request started by another site's page (CSRF), by the browser's word."""
    if request.headers.get("Sec-Fetch-Site", "") == "cross-site":
        return True
    origin = request.headers.get("Origin")
    if origin and origin != "null":
        host = request.host
        return origin.split("://", 1)[-1] != host
    return False


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
                Rule("/ipva.bin", endpoint="firmware", methods=["PUT", "POST"]),
                Rule("/maintenance/upload/firmware", endpoint="firmware_form", methods=["POST"]),
                Rule("/log.txt", endpoint="log"),
                Rule("/crash_dump.txt", endpoint="crash_dump"),
                Rule("/static/style.css", endpoint="style"),
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
        request.max_content_length = limit
        request.max_form_memory_size = MAX_BODY
        request.max_form_parts = MAX_FORM_PARTS
        try:
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
        return response(environ, start_response)

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
        if endpoint == "page" and _PAGE[path.rstrip("/") or "/"].public:
            return self.page(request, None)
        handlers: dict[str, Callable[[Request, str], Response]] = {
            "cfg": self.cfg,
            "log": lambda r, u: _text(self.box.trace_text()),
            "crash_dump": lambda r, u: _text(self.box.crash_dump_text()),
            "page": self.page,
            "drive": drive.CfDrive(self.box.cf_volume).serve,
            "firmware": self.firmware_put,
            "firmware_form": self.firmware_form,
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
            for value in auth.challenges(self.nonces, https, verdict.stale if verdict else False):
                response.headers.add("WWW-Authenticate", value)
            return response
        self.lockout.succeeded(client)
        self.logins.succeeded(verdict.user, client)
        if request.method not in ("GET", "HEAD") or request.path.startswith("/!"):
            if _cross_site(request):
                return _text("error: refused, the request came from another site's page", 403)
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

    def cfg(self, request: Request, user: str) -> Response:
        if request.method == "GET":
            return _text(
                self.box.backup_text(),
                headers={"Content-Disposition": 'attachment; filename="cfg.txt"'},
            )
        body = request.get_data(cache=False)  # bounded by max_content_length
        ok, message = self.restore(body)
        return _text(message if ok else f"error: {message}", 200 if ok else 400)

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
        html = self.templates.get_template(template).render(
            pages=PAGES,
            page=page,
            user=user,
            status=box_status or self.box.status(),
            factory_password=FACTORY_PASSWORD,
            **context,
        )
        return Response(
            html,
            status,
            content_type="text/html; charset=utf-8",
            headers={
                "Cache-Control": "no-store",
                "X-Frame-Options": "DENY",
                "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
            },
        )

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
            "/administration/compact-flash": self.cf_page,
            "/administration/admin": self.admin_page,
            "/reset": self.reset_page,
        }[path]
        return handler(request, user)

    def simple_page(self, template: str) -> Callable[[Request, str | None], Response]:
        return lambda request, user: self.render(template, request, user)

    def info_page(self, request: Request, user: str | None) -> Response:
        return self.render("info.html", request, user)

    def ip_page(self, request: Request, user: str | None) -> Response:
        messages: list[str] = []
        errors: list[str] = []
        form = request.form if request.method == "POST" else None
        action = form.get("action", "") if form else ""
        if form is not None and action == "apply":
            lines, problems = ip_lines(self.box.running().lines(), form)
            errors += problems
            if not errors:
                errors += self.check_lines(lines)
            if not errors:
                for line in lines:
                    answer = self.box.execute(line)
                    if answer.startswith("error:"):
                        errors.append(answer)
                        break
                    if answer:
                        messages.append(answer)
                if not errors:
                    messages.append(self.box.execute("config activate"))
        elif form is not None and action == "write":
            answer = self.box.execute("config write")
            (errors if answer.startswith("error:") else messages).append(answer)
        return self.render(
            "ip.html",
            request,
            user,
            status=400 if errors else 200,
            ip=ip_values(self.box.running().lines()),
            messages=messages,
            errors=errors,
        )

    def check_lines(self, lines: list[str]) -> list[str]:
        """All the lines of one form, tried on a copy first: all are taken or none."""
        config = self.box.running()
        for line in lines:
            try:
                config = parse_line(config, line)
            except (ConfigError, GrammarError) as e:
                return [f"error: {e}"]
        return []

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
            if not check_password(account.stored, old, account.user):
                errors.append("the current password is wrong")
            elif new != again:
                errors.append("the new password and its repetition differ")
            elif new == FACTORY_PASSWORD:
                errors.append("choose a password other than the factory one")
            else:
                for line in (f"config change ADMIN0 /pwd {quote(new)}", "config activate"):
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
                        self.box.trace(f"HTTP0: admin password changed by {user}")
        return self.render(
            "admin.html", request, user, status=400 if errors else 200, errors=errors, done=done
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


# -- Configuration/IP: form <-> config lines ------------------------------------------


def ip_values(lines: list[str]) -> dict[str, str]:
    """The form's fields from the running config's `config show` lines."""
    values = {"dhcp": "client", "dhcp_if": "ETH0"}
    for line in lines:
        words = [w.text for w in split_words(line)]
        module = words[2]
        sub = words[3] if len(words) > 3 and not words[3].startswith("/") else ""
        rest = words[4:] if sub else words[3:]
        pairs = dict(zip(rest[0::2], rest[1::2], strict=False))  # no flags in these modules
        if module == "IP0" and sub in ("ETH0", "ETH1"):
            values[f"{sub.lower()}_addr"] = pairs.get("/addr", "")
            values[f"{sub.lower()}_mask"] = pairs.get("/mask", "")
        elif module == "IP0" and sub == "RT0" and pairs.get("/dest", "0.0.0.0") == "0.0.0.0":
            values["gateway"] = pairs.get("/gateway", "")
        elif module == "DHCP0":
            values["dhcp"] = pairs.get("/mode", "client")
            values["dhcp_if"] = pairs.get("/interface", "ETH0")
        elif module == "DNS0":
            values["dns1"] = pairs.get("/server1", "")
            values["dns2"] = pairs.get("/server2", "")
    return values


def ip_lines(current: list[str], form: Any) -> tuple[list[str], list[str]]:
    """The `config` lines a submitted Configuration/IP form stands for, or what is wrong."""
    now = ip_values(current)
    lines: list[str] = []
    errors: list[str] = []

    def field(name: str, what: str) -> str:
        value = form.get(name, "").strip()
        if value:
            try:
                ipaddress.IPv4Address(value)
            except ValueError:
                errors.append(f"{what}: {value!r} is not an IPv4 address like 192.168.0.10")
        return value

    dhcp = form.get("dhcp", "client")
    if dhcp not in ("client", "off"):
        errors.append("DHCP: choose client or off")
    dhcp_if = form.get("dhcp_if", "ETH0")
    if dhcp_if not in ("ETH0", "ETH1"):
        errors.append("DHCP interface: ETH0 or ETH1")
    for port in ("eth0", "eth1"):
        addr = field(f"{port}_addr", f"{port.upper()} address")
        mask = field(f"{port}_mask", f"{port.upper()} mask")
        if addr and not mask:
            errors.append(f"{port.upper()}: give a mask with the address (e.g. 255.255.255.0)")
        if addr:
            lines.append(f"config change IP0 {port.upper()} /addr {addr} /mask {mask}")
        elif now.get(f"{port}_addr") or now.get(f"{port}_mask"):
            lines.append(f"config rem IP0 {port.upper()} /addr /mask")
    gateway = field("gateway", "Gateway")
    if gateway:
        lines.append(f"config change IP0 RT0 /dest 0.0.0.0 /mask 0.0.0.0 /gateway {gateway}")
    elif now.get("gateway"):
        lines.append("config rem IP0 RT0")
    dns = [field("dns1", "DNS server 1"), field("dns2", "DNS server 2")]
    if any(dns) or now.get("dns1") or now.get("dns2"):
        lines.append(
            f"config change DNS0 /server1 {dns[0] or '0.0.0.0'} /server2 {dns[1] or '0.0.0.0'}"
        )
    if dhcp == "off":
        lines.append("config change DHCP0 /mode off")
    else:
        lines.append(f"config change DHCP0 /mode client /interface {dhcp_if}")
    return lines, errors
