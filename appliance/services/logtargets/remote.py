"""The network targets: SYSLOG (UDP), TCP and HTTP (services-logging.wiki, Log Server).

Each send runs on the target's Sender thread with a short timeout; an OSError means "not
delivered, try again later". Connections are opened on first use and after a failure.
"""

from __future__ import annotations

import socket

from appliance.services.logtargets.sender import LogRecord, Rejected

TIMEOUT_S = 3.0  # one connect/send; the Sender retries later, the box never waits on it
# "Standard" posts to a fixed path on another box, which stores it on its CF card; the real
# box's path is not public, this is ours (the receiving side is LOG0's `/LOG0/log` in HTTP)
STANDARD_PATH = "/LOG0/log"


class SyslogTarget:
    """UDP datagrams, one record each (RFC 3164), to addr:514 by default."""

    def __init__(self, addr: str, port: int, facility: int) -> None:
        self.name = f"syslog {addr}:{port}"
        self.address = (addr, port)
        self.facility = facility
        self._sock: socket.socket | None = None

    def send(self, record: LogRecord) -> None:
        if self._sock is None:
            self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.sendto(record.syslog_line(self.facility).encode("utf-8"), self.address)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class TcpTarget:
    """One TCP connection, records LF-terminated (syslog over TCP, non-transparent framing)."""

    def __init__(self, addr: str, port: int, facility: int) -> None:
        self.name = f"tcp {addr}:{port}"
        self.address = (addr, port)
        self.facility = facility
        self._sock: socket.socket | None = None

    def send(self, record: LogRecord) -> None:
        data = (record.syslog_line(self.facility) + "\n").encode("utf-8")
        try:
            if self._sock is None:
                self._sock = socket.create_connection(self.address, timeout=TIMEOUT_S)
            self._sock.sendall(data)
        except OSError:
            self.close()  # reconnect on the retry
            raise

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class HttpTarget:
    """One request per record: Standard (POST to the fixed path), External POST (to /path)
    or External GET (the record as query arguments of /path)."""

    def __init__(self, addr: str, port: int, facility: int, method: str, path: str) -> None:
        self.method = method
        self.path = STANDARD_PATH if method == "standard" else ("/" + path.lstrip("/"))
        self.name = f"http {method} {addr}:{port}{self.path}"
        self.addr, self.port = addr, port
        self.facility = facility

    def request_of(self, record: LogRecord) -> tuple[str, str, bytes | None]:
        """(method, URL path, body) for one record."""
        line = record.syslog_line(self.facility)
        if self.method == "get":
            import urllib.parse  # here: a box without an HTTP GET log target never loads it

            query = urllib.parse.urlencode(
                {"host": record.host, "facility": f"local{self.facility}", "severity": "6",
                 "time": str(int(record.time)), "msg": record.text}
            )  # fmt: skip
            sep = "&" if "?" in self.path else "?"
            return "GET", f"{self.path}{sep}{query}", None
        return "POST", self.path, line.encode("utf-8")

    def send(self, record: LogRecord) -> None:
        # here, not with the module: http.client (with email and ssl) costs a tenth of a
        # second of the boot under emulation, and only an HTTP log target needs it
        import http.client

        method, url, body = self.request_of(record)
        conn = http.client.HTTPConnection(self.addr, self.port, timeout=TIMEOUT_S)
        try:
            headers = {"Content-Type": "text/plain; charset=utf-8"} if body is not None else {}
            conn.request(method, url, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
        except (http.client.HTTPException, OSError) as e:
            raise OSError(f"{self.name}: {e}") from e
        finally:
            conn.close()
        if 400 <= response.status < 500:
            raise Rejected(f"{self.name}: HTTP {response.status} {response.reason}")
        if response.status >= 300:
            raise OSError(f"{self.name}: HTTP {response.status} {response.reason}")

    def close(self) -> None:
        pass
