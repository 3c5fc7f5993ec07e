"""Which requests may change the box: the web admin's defence against cross-site request
forgery (CSRF) and DNS rebinding. README.md ("Scripting the box") tells users the rules.

1. The Host header must name the box: an IP address, `localhost`, or the box's name
   (SYS0 /name). A page on a rebinding DNS name reaches the box under its own name.
2. Reading is a GET or HEAD of a URL that changes nothing (`is_read_only`): the pages,
   the backup, the trace, box_info.xml, the CF files and the console commands that only
   show things (`config show`, `mod cmd … info` …). Reading needs only the login.
3. Anything else changes the box. A foreign `Origin` (`null` too) or a `Sec-Fetch-Site`
   other than same-origin/none is refused at once. A request that comes from a browser
   (`is_browser`) must then carry a proof a foreign page cannot make:
   - the session's token: the box's own forms carry it in their action URL (`?csrf=`);
     it is an HMAC of the session cookie (SameSite=Strict, HttpOnly), which a foreign page
     can neither read nor guess;
   - or the `X-IPVA-Script` header: a foreign page cannot send a custom header without a
     CORS preflight, and the box answers none.
   A URL typed into the address bar is no proof: `Sec-Fetch-Site: none` is sent for a link
   opened from a mail or chat program too, and plain HTTP carries no Sec-Fetch-* at all.
   A request is from a browser when it carries anything browsers always send and scripts
   do not: a User-Agent starting with `Mozilla/` (every browser's does, and a page cannot
   change it), Origin, Referer, Cookie, a Sec-Fetch-* header, Upgrade-Insecure-Requests.
   curl, wget, Python's urllib and requests, PHP and monitoring plugins send none of these,
   so a script's `GET /!config write` with credentials works as on a real box.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os

from werkzeug.wrappers import Request

from appliance.config import GrammarError, split_words

TOKEN_ARG = "csrf"  # the forms' query argument
SCRIPT_HEADER = "X-IPVA-Script"
_COOKIE = {False: "ipva_session", True: "__Host-ipva_session"}  # __Host-: Secure, Path=/
_BROWSER_HEADERS = ("Origin", "Referer", "Cookie", "Upgrade-Insecure-Requests")
# `mod cmd <module> <command>` commands that only show something (any module's)
READ_ONLY_MOD_CMDS = frozenset(
    {
        "info",
        "show",
        "list",
        "backup",
        "link",
        "mac",
        "addr",
        "counters",
        "cpu-info",
        "aes",
        "xml-count",
        "xml-info",
    }
)
READ_ONLY_LINES = frozenset({"help", "?", "version"})
# what a refused browser request is told, and what to do instead
REFUSED = (
    "error: refused: a request that changes the box came from a browser without the "
    "page's token (another site's page cannot send it; a page from before a reset has an "
    "old one: reload it); use the box's own pages, the console, or a script (curl, urllib "
    "…), or send the header X-IPVA-Script: 1"
)
FOREIGN = "error: refused, the request came from another site's page ({})"


def host_ok(host: str, box_name: str) -> bool:
    """Whether a Host header (with its port) names this box."""
    name = host.strip().lower()
    if name.startswith("["):  # [v6]:port
        name = name[1:].partition("]")[0]
    elif name.count(":") == 1:
        name = name.partition(":")[0]
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        pass
    return name.rstrip(".") in ("localhost", box_name.lower())


def is_read_only(request: Request) -> bool:
    """A GET/HEAD that changes nothing (see the module's docstring)."""
    if request.method not in ("GET", "HEAD"):
        return False
    if not request.path.startswith("/!"):
        return True  # every GET URL but /! reads (app.AdminApp's URL map)
    try:
        words = [w.text.lower() for w in split_words(request.path[2:])]
    except GrammarError:
        return False
    if len(words) == 1 and words[0] in READ_ONLY_LINES:
        return True
    if len(words) >= 2 and words[0] == "config" and words[1] == "show":
        return True
    return len(words) >= 4 and words[:2] == ["mod", "cmd"] and words[3] in READ_ONLY_MOD_CMDS


def is_browser(request: Request) -> bool:
    h = request.headers
    if h.get("User-Agent", "").startswith("Mozilla/"):
        return True
    if any(k in h for k in _BROWSER_HEADERS):
        return True
    return any(k.lower().startswith("sec-fetch-") for k in h.keys())


class Sessions:
    """The browser sessions' cookie and the token derived from it (no state on the box:
    the token is an HMAC of the cookie under a key of this boot)."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key or os.urandom(32)

    @staticmethod
    def cookie_name(https: bool) -> str:
        return _COOKIE[https]

    def session(self, request: Request) -> str | None:
        value = request.cookies.get(self.cookie_name(request.scheme == "https"), "")
        return value if len(value) == 32 and all(c in "0123456789abcdef" for c in value) else None

    @staticmethod
    def new_session() -> str:
        return os.urandom(16).hex()

    def token(self, session: str) -> str:
        return hmac.new(self._key, session.encode(), hashlib.sha256).hexdigest()[:32]

    def token_ok(self, request: Request) -> bool:
        session = self.session(request)
        given = request.args.get(TOKEN_ARG, "")
        return session is not None and hmac.compare_digest(
            self.token(session).encode(), given.encode("utf-8", "replace")
        )


def refusal(request: Request, sessions: Sessions) -> str | None:
    """Why a logged-in request may not run (an `error:` text), or None: it may."""
    if is_read_only(request):
        return None
    own = f"{request.scheme}://{request.host}"
    origin = request.headers.get("Origin")
    if origin is not None and origin != own:
        return FOREIGN.format(f"Origin: {origin[:80]}")
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        return FOREIGN.format(f"Sec-Fetch-Site: {site[:20]}")
    if not is_browser(request):
        return None
    if SCRIPT_HEADER in request.headers or sessions.token_ok(request):
        return None
    return REFUSED
