"""VARS: the config store (key -> bytes) on FLASHMAN0, read at boot.

One `config write` is one `commit()`: a single FLASHMAN transaction, so after a power cut
either all of its keys are on flash or none of them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from appliance.flash.flashman import FlashError, FlashMan
from appliance.flash.format import OWNER_VARS


class Vars:
    def __init__(self, fm: FlashMan) -> None:
        self._fm = fm

    def get(self, key: str) -> bytes | None:
        return self._fm.get(OWNER_VARS, key.encode())

    def keys(self) -> list[str]:
        return sorted(k.decode() for k in self._fm.values(OWNER_VARS))

    def items(self) -> Iterator[tuple[str, bytes]]:
        vals = self._fm.values(OWNER_VARS)
        for k in sorted(vals):
            yield k.decode(), vals[k]

    def __len__(self) -> int:
        return len(self._fm.values(OWNER_VARS))

    def commit(self, updates: Mapping[str, bytes | None]) -> None:
        """Store/delete all keys of `updates` in ONE atomic commit (None deletes)."""
        batch: list[tuple[bytes, bytes | None]] = []
        for key, value in updates.items():
            if not key:
                raise FlashError("VARS: empty key")
            if value is not None and not isinstance(value, bytes | bytearray):
                raise TypeError(f"VARS value for {key!r} must be bytes, not {type(value)}")
            batch.append((key.encode(), None if value is None else bytes(value)))
        self._fm.commit(OWNER_VARS, batch)

    def reset(self) -> None:
        """`mod cmd FLASHMAN0 reset vars`: drop the whole config (one commit)."""
        self._fm.reset_owner(OWNER_VARS)
