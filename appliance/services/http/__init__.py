"""HTTP0: the box's web admin over HTTP and HTTPS (see app.py for the URLs).

    service = HttpService()                     # the VM: ports from HTTP0 /port, /https-port
    service = HttpService(http=Bind("127.0.0.1", 8080), https=None)   # hosted --http
    service.start(admin, box.active)            # admin: an AdminBox (host.py)
    service.stop()

Ports need a reset to change (HTTP0 args are `needs_reset`): the runtime stops the service
before a restart and starts it again on the new box, so the new ports are bound then.
A port that cannot be bound is traced and the box runs on without it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from appliance.config import Config
from appliance.services.http.host import AdminBox
from appliance.services.http.listen import Bind

if TYPE_CHECKING:  # the HTTP stack is imported only when a listener is on (RAM)
    from appliance.services.http.app import AdminApp
    from appliance.services.http.cert import Certificate
    from appliance.services.http.server import Listener

ANY = "0.0.0.0"
FACTORY_PASSWORD_WARNING = (
    "HTTP0: the admin password is the factory default (user admin, password ipva): "
    "change it in Administration/Admin or with config change ADMIN0 /pwd <password>, "
    "config activate, config write"
)


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


class HttpService:
    name = "HTTP0"

    def __init__(self, *, http: Bind | None = None, https: Bind | None = None, fixed: bool = False):
        """`fixed`: listen exactly on `http`/`https` (None: that one is off), whatever
        HTTP0 says (hosted runs, tests); otherwise on HTTP0's ports on every address."""
        self.fixed = fixed
        self._http, self._https = http, https
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
        if self.fixed:
            return self._http, self._https
        port, secure = int(config.value("HTTP0", "port")), int(config.value("HTTP0", "https-port"))
        return (Bind(ANY, port) if port else None, Bind(ANY, secure) if secure else None)

    def start(self, admin: AdminBox, config: Config) -> None:
        http, https = self.binds(config)
        self._bound = (http, https, bool(config.value("HTTP0", "https-only")))
        if http is None and https is None:
            admin.trace("HTTP0: /port and /https-port are 0: no web admin, console only")
            return
        from appliance.services.http.app import AdminApp
        from appliance.services.http.cert import CertError, load_or_make

        self.app = AdminApp(admin)
        if not config.value("ADMIN0", "pwd"):
            admin.trace(FACTORY_PASSWORD_WARNING)
        cert = None
        if https is not None:
            try:
                cert, note = load_or_make(admin.vars(), str(config.value("SYS0", "name")))
                if note:
                    admin.trace(note)
            except CertError as e:
                admin.trace(f"HTTPS: no certificate, HTTPS is off: {e}")
        self.certificate = cert
        secure = self._listen(admin, https, self.app, cert) if cert is not None else None
        plain_app: Any = self.app
        if secure is not None and config.value("HTTP0", "https-only"):
            plain_app = https_redirect(secure.port)(self.app)  # the port really bound
        self._listen(admin, http, plain_app, None)

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


__all__ = ["Bind", "HttpService"]
