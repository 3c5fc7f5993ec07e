"""Where a listener listens: `Bind(host, port)`; port 0 asks the kernel for a free one."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Bind:
    """A listener's address and port."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> Bind:
        """`HOST:PORT` (`127.0.0.1:8080`, `:8080` for every address); ValueError if not."""
        host, sep, port = text.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:8080)")
        return cls(host.strip("[]") or "0.0.0.0", int(port))
