"""HTTP0: the box's web admin over HTTP and HTTPS (app.py has the URLs, auth.py the login).

`HttpService` is one entry of the boot list (appliance/services/__init__.py). Where it
listens is the platform's answer for HTTP0's ports (`platform.http_listen`): in the VM
every address on /port (80) and /https-port (443); hosted the addresses given with
`ipva run --hosted --http HOST:PORT --https HOST:PORT`, else none. `config activate` of a
changed HTTP0 rebinds at once (after the answer to that request has gone out); a port that
cannot be bound is traced and the box runs on without it; 0 turns a listener off. The
HTTP stack (cheroot, Werkzeug, Jinja2) is imported only when a listener is on.

The web admin starts in a thread of its own (`http-start`), off the boot's path: the box
reaches its prompt while the HTTP stack is imported and, on a fresh flash, the certificate
is made. Its last boot-trace line says it is up (`HTTP0: web admin on …`), or why not
(`HTTP0: /port and /https-port are 0: …`, `HTTP0: no listener could be opened: …`,
`HTTP0: the web admin did not start (…)`): what tests and tools wait for before they use
HTTP (`wait_started()` hosted; the harness waits for the line). A stop (reset, close) while
it starts ends the start at its next step and never leaves a listener behind; a `config
activate` of HTTP0 meanwhile rebinds once it is up. The certificate is read and stored as
jobs on the box's owner (the flash is the console's too), and made in between, off it.
Both threads (`http-start`, `http-rebind`) are the service's: stop() ends and joins them.
The start's imports run while the DHCP client asks for its first lease (the boot does not
wait for it: services/network.py); the listeners open once the box's first addresses are in
(NetworkService.when_addressed, at most ADDRESS_WAIT_S), so the certificate names them and
`HTTP0: web admin on …` still comes after the `ETH0 IP address …` line: whoever waits for
it (the harness) can reach the box on its address.

Until ADMIN0 /pwd is changed, the boot trace, General/Info and box_info.xml say that the
factory password is in use.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from appliance.config import Activation, Config
from appliance.hal.cf import CfVolume
from appliance.modcmd import Command, ModCmdError
from appliance.owner import BoxRestarting, join_checked
from appliance.service import BaseService, CommandRunner
from appliance.services.http.boxadmin import BoxAdmin
from appliance.services.http.certificates import X509Module
from appliance.services.http.host import AdminBox
from appliance.services.http.listen import Bind
from appliance.services.network import NetworkService

if TYPE_CHECKING:  # the HTTP stack is imported only when a listener is on (RAM)
    from appliance.box import Box
    from appliance.services.http.app import AdminApp
    from appliance.services.http.cert import Certificate
    from appliance.services.http.server import Listener

FACTORY_PASSWORD_WARNING = (
    "HTTP0: the admin password is the factory default (user admin, password ipva): "
    "change it in Administration/Admin or with config change ADMIN0 /pwd <password>, "
    "config activate, config write"
)
# the trace lines that end a start (the harness waits for one: hypervisors/qemu/machine.py)
UP_PREFIX = "HTTP0: web admin on "
NO_PORTS = "HTTP0: /port and /https-port are 0: no web admin, console only"
NO_LISTENER = "HTTP0: no listener could be opened: no web admin, console only"
START_TIMEOUT_S = 60  # wait_started(): imports + a new certificate under TCG take seconds
# the start waits this long at most for the first addresses (the network's own bound,
# DHCP_WAIT_S, ends that wait before; this one only guards against a network that never says)
ADDRESS_WAIT_S = 30.0


class StartCancelled(Exception):
    """The box stops while its web admin starts: the start ends, nothing is left bound."""


def https_redirect(https_port: int) -> Callable[[Any], Any]:
    """HTTP0 /https-only: every HTTP request is sent to the same path over HTTPS."""

    def wrap(app: Any) -> Any:
        def redirect(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
            host = environ.get("HTTP_HOST", "").rsplit(":", 1)[0] or environ["SERVER_NAME"]
            suffix = "" if https_port == 443 else f":{https_port}"
            location = f"https://{host}{suffix}{environ.get('REQUEST_URI', '/')}"
            start_response("301 Moved Permanently", [("Location", location)])
            return [b""]

        return redirect

    return wrap


class HttpListeners:
    """The listeners of one box: start on a config, rebind to a changed one, stop."""

    def __init__(
        self,
        listen: Callable[[int, bool], tuple[str, int] | None],
        cancelled: Callable[[], bool] = lambda: False,
        addressed: Callable[[], object] = lambda: None,
    ) -> None:
        """`cancelled`: the box is stopping (a start then ends with StartCancelled before
        the next step, listeners stopped). `addressed`: returns once the box's first
        addresses are in (or it is stopping); a start calls it after its imports."""
        self.listen = listen
        self.cancelled = cancelled
        self.addressed = addressed
        self.listeners: list[Listener] = []
        self.app: AdminApp | None = None
        self.certificate: Certificate | None = None
        self._bound: tuple[Bind | None, Bind | None, bool] = (None, None, False)

    def rebind(self, admin: AdminBox, config: Config) -> bool:
        """`config activate` changed HTTP0: listen on the new ports (True if it did)."""
        http, https = self.binds(config)
        if (http, https, bool(config.value("HTTP0", "https-only"))) == self._bound:
            return False
        self.stop()
        self.start(admin, config)
        return True

    def binds(self, config: Config) -> tuple[Bind | None, Bind | None]:
        plain = self.listen(int(config.value("HTTP0", "port")), False)
        secure = self.listen(int(config.value("HTTP0", "https-port")), True)
        return (Bind(*plain) if plain else None, Bind(*secure) if secure else None)

    def _check(self) -> None:
        if self.cancelled():
            raise StartCancelled("the box is stopping")

    def start(self, admin: AdminBox, config: Config, warning: str = "") -> None:
        """Listen as `config` says; the last line traced says how it went. `warning` is
        traced just before the `web admin on` line when a listener is up (the factory
        password's), so that line ends the start. StartCancelled: the box is stopping
        (stop() the listeners)."""
        http, https = self.binds(config)
        self._bound = (http, https, bool(config.value("HTTP0", "https-only")))
        if http is None and https is None:
            admin.trace(NO_PORTS)
            return
        from appliance.services.http.app import AdminApp
        from appliance.services.http.cert import CertError, load_or_make

        self.addressed()
        self._check()
        self.app = AdminApp(admin)
        cert = None
        if https is not None:
            try:
                # admin.vars() reads and commits as jobs on the box's owner
                own = [a.addr.partition("/")[0] for a in admin.status().addresses if a.addr]
                name = str(config.value("SYS0", "name"))
                cert, note = load_or_make(admin.vars(), name, own)
                if note:
                    admin.trace(note)
            except CertError as e:
                admin.trace(f"HTTPS: no certificate, HTTPS is off: {e}")
        self.certificate = cert
        self._check()
        secure = self._listen(admin, https, self.app, cert) if cert is not None else None
        plain_app: Any = self.app
        if secure is not None and config.value("HTTP0", "https-only"):
            plain_app = https_redirect(secure.port)(self.app)  # the port really bound
        self._check()
        self._listen(admin, http, plain_app, None)
        self._check()
        if not self.listeners:
            admin.trace(NO_LISTENER)
            return
        if warning:
            admin.trace(warning)
        where = ", ".join(
            f"{x.bind.host}:{x.port} ({'https, TLS 1.2/1.3' if x.https else 'http'})"
            for x in self.listeners
        )
        admin.trace(f"{UP_PREFIX}{where}")

    def _listen(
        self, admin: AdminBox, bind: Bind | None, app: Any, cert: Certificate | None
    ) -> Listener | None:
        from appliance.services.http.server import BindError, Listener

        if bind is None:
            return None
        listener = Listener(bind, app, cert)
        try:
            listener.start()
        except BindError as e:
            admin.trace(f"HTTP0: {e}; that listener is off (HTTP0 /port, /https-port)")
            return None
        self.listeners.append(listener)
        return listener

    def use(self, cert: Certificate) -> None:
        """A new certificate (X509): HTTPS serves it from the next handshake, no restart."""
        self.certificate = cert
        for listener in self.listeners:
            if listener.https:
                listener.use(cert)

    def urls(self, host: str = "127.0.0.1") -> dict[str, str]:
        """scheme → base URL of each running listener (with the port actually bound)."""
        return {
            ("https" if x.https else "http"): f"{'https' if x.https else 'http'}://{host}:{x.port}"
            for x in self.listeners
        }

    def stop(self) -> None:
        for listener in self.listeners:
            listener.stop()
        self.listeners = []


class HttpService(BaseService):
    name = "http"
    config_modules: tuple[str, ...] = ("HTTP0",)

    def __init__(
        self,
        runner: CommandRunner | None = None,
        cf_volume: Callable[[], CfVolume | None] = lambda: None,
    ) -> None:
        """`runner` runs console lines for `/!…` and the forms (the runtime); without one
        (a box made in a unit test) the service has its commands but serves nothing.
        `cf_volume` is the CF card /DRIVE/CF0 serves (the CF service's)."""
        self.runner = runner
        self.cf_volume = cf_volume
        self.listeners: HttpListeners | None = None
        self.admin: BoxAdmin | None = None
        self._lock = threading.Lock()  # start/rebind/stop one at a time
        self._stopping = threading.Event()  # stop() was called: a start under way ends
        self._started = threading.Event()  # the start thread is done (up or not)
        # the box's first addresses are in (the network says so), or stop() was called
        self._addressed = threading.Event()
        self._starter: threading.Thread | None = None
        self._rebinders: list[threading.Thread] = []  # one per activate; the newest wins
        self._wanted: Config | None = None  # the newest active config: what to listen as
        # mod cmd X509: the certificate HTTPS serves (requests, installs, expiry alarm)
        self.x509 = X509Module(self._certificate, self._use_certificate)

    def _certificate(self) -> Certificate | None:
        return self.listeners.certificate if self.listeners is not None else None

    def _use_certificate(self, cert: Certificate) -> None:
        with self._lock:  # not while a start or rebind swaps the listeners
            if self.listeners is not None:
                self.listeners.use(cert)

    def start(self, box: Box) -> None:
        """Starts the web admin in the `http-start` thread and returns: the boot goes on
        to its prompt meanwhile (see the module's docstring). With both ports off there
        is nothing to start: that line is traced at once, in its place in the boot."""
        self.x509.start(box)
        if self.runner is None:
            self._started.set()
            return
        self.admin = BoxAdmin(box, self.runner, self.cf_volume, lambda: self.x509)
        network = box.service(NetworkService)
        if network is None:
            self._addressed.set()
        else:
            network.when_addressed(self._addressed.set)
        self.listeners = HttpListeners(
            box.platform.http_listen,
            self._stopping.is_set,
            lambda: self._addressed.wait(ADDRESS_WAIT_S),
        )
        self._wanted = box.active
        if self.listeners.binds(box.active) == (None, None):  # nothing to import or make
            self.listeners.start(self.admin, box.active)  # traces NO_PORTS, at once
            self._started.set()
            return
        self._starter = threading.Thread(target=self._start, name="http-start", daemon=True)
        self._starter.start()

    def _start(self) -> None:
        config: Config | None = None
        try:
            with self._lock:
                if self.listeners is None or self.admin is None or self._wanted is None:
                    return  # stopped before this thread ran
                config = self._wanted
                warning = "" if config.value("ADMIN0", "pwd") else FACTORY_PASSWORD_WARNING
                listeners, admin = self.listeners, self.admin
                self._guarded(listeners, admin, lambda: listeners.start(admin, config, warning))
        finally:
            self._started.set()
        self._after_start()
        if self._wanted is not config:  # config activate changed HTTP0 meanwhile
            self._rebind()

    def _after_start(self) -> None:
        """The certificate now served: its expiry looked at (alarm 70), and a signed one
        the update server left in X509/REQUESTRESPONSE taken."""
        box = self.x509.box
        if box is None or self._stopping.is_set():
            return
        self.x509.check_expiry()
        try:
            box.owner.call(lambda: self.x509.take_responses(box))
        except (BoxRestarting, ModCmdError) as e:
            if not isinstance(e, BoxRestarting):
                box.trace(f"X509: {e}")

    def wait_started(self, timeout: float = START_TIMEOUT_S) -> bool:
        """Whether the start is done (its last trace line written) within `timeout`."""
        return self._started.wait(timeout)

    def apply(self, box: Box, activation: Activation) -> list[str]:
        """A changed HTTP0 rebinds; in a thread, since the request that activated it may
        be served by the very listener that goes (its answer goes out first). While the
        web admin still starts, the rebind waits for it. A signed certificate the update
        server stored in X509/REQUESTRESPONSE is taken (its lines end in config activate)."""
        if self._started.is_set():
            self.x509.take_responses(box)
        if self.listeners is not None and any(a.startswith("HTTP0") for a in activation.applied):
            self._wanted = box.active
            rebinder = threading.Thread(target=self._rebind, name="http-rebind", daemon=True)
            self._rebinders = [t for t in self._rebinders if t.is_alive()] + [rebinder]
            rebinder.start()
        return []

    def _rebind(self) -> None:
        """Listen as the newest active config says (two quick activates: the last wins)."""
        with self._lock:
            if self._stopping.is_set() or not self._started.is_set():
                return  # the start, still under way, rebinds when it is done
            if self.listeners is None or self.admin is None or self._wanted is None:
                return
            listeners, admin, config = self.listeners, self.admin, self._wanted
            self._guarded(listeners, admin, lambda: listeners.rebind(admin, config))

    @staticmethod
    def _guarded(listeners: HttpListeners, admin: AdminBox, listen: Callable[[], object]) -> None:
        """A start or rebind of the listeners: when it fails nothing stays bound, and the
        web admin never takes the box down with it (the console goes on without it)."""
        try:
            listen()
        except (StartCancelled, BoxRestarting):
            listeners.stop()  # the box goes down
        except Exception as e:
            listeners.stop()
            admin.trace(
                f"HTTP0: the web admin did not start ({type(e).__name__}: {e}); "
                "the console works, please report this"
            )

    def stop(self) -> None:
        """Ends a start still under way at its next step (an import or a certificate in
        progress finishes first), then stops the listeners; never waits for the runtime's
        lock (the start gives up on it once this is set)."""
        self._stopping.set()
        self._addressed.set()  # a start waiting for the first addresses goes on, and ends
        self.x509.stop()  # its worker may hand a new certificate to the listeners
        with self._lock:
            if self.listeners is not None:
                self.listeners.stop()
            self.listeners = None
        # only their last check is left by now (or a certificate being made)
        for thread in (self._starter, *self._rebinders):
            late = join_checked(thread, START_TIMEOUT_S)
            if late and self.admin is not None:
                self.admin.trace(f"HTTP0: {late}")

    def urls(self, host: str = "127.0.0.1") -> dict[str, str]:
        return self.listeners.urls(host) if self.listeners is not None else {}

    def commands(self) -> list[Command]:
        return [
            Command("HTTP0", "info", "listeners, certificate, logins refused", self.info),
            Command("HTTP0", "unlock", "lift every lockout of failed logins", self.unlock),
            Command(
                "CMD0",
                "xml-info",
                "the box's device name as XML (update servers read "
                "it: their {name} in certificate requests)",
                self.cmd0_info,
            ),  # fmt: skip
            *self.x509.commands(),
        ]

    def cmd0_info(self, box: Box, args: list[str]) -> str:
        """`mod cmd CMD0 xml-info`: php-update-server's `admin` query; its certificate
        requests read `<info name=…>` (General/Admin's device name, SYS0 /name here) and fail
        without it. Its other attributes on the real box are not public: name only."""
        from appliance import xmltext

        return xmltext.element("info", {"name": box.name})

    def unlock(self, box: Box, args: list[str]) -> str:
        """`mod cmd HTTP0 unlock`: the admin's way back from a lockout (auth.Lockout)."""
        app = self.listeners.app if self.listeners is not None else None
        n = app.lockout.clear() if app is not None else 0
        return f"HTTP0: {n} lockout{'s' if n != 1 else ''} lifted"

    def info(self, box: Box, args: list[str]) -> str:
        """`mod cmd HTTP0 info`: what the web admin listens on, its certificate, refusals."""
        from appliance import xmltext

        listeners = self.listeners.listeners if self.listeners is not None else []
        parts = [
            xmltext.element(
                "listener",
                {
                    "scheme": "https" if x.https else "http",
                    "addr": x.bind.host,
                    "port": str(x.port),
                    "errors": str(x.errors),
                },
            )
            for x in listeners
        ]
        cert = self.listeners.certificate if self.listeners is not None else None
        if cert is not None:
            parts.append(
                xmltext.element(
                    "cert", {"sha256": cert.fingerprint(), "kept": "yes" if cert.kept else "no"}
                )
            )
        app = self.listeners.app if self.listeners is not None else None
        locked = app.lockout.locked_clients() if app is not None else []
        parts += [xmltext.element("locked", {"addr": c, "seconds": f"{s:.0f}"}) for c, s in locked]
        return "<info>" + "".join(parts) + "</info>"


__all__ = ["Bind", "HttpService"]
