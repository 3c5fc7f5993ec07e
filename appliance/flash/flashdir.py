"""FLASHDIR0: the object directory (the LDAP-like store the PBX objects live in).

Items are keyed by an integer id and hold an attribute string like
``(cn=pwtest)(h323=pwtest)(loc=Sindelfingen)(node=root)``; each change is one FLASHMAN
transaction of the LDAP owner. The config backup carries them as lines
``mod cmd FLASHDIR0 add-item 101 (cn=pwtest)(h323=pwtest)(loc=Sindelfingen)(node=root)``.
Loaded at boot; the boot trace shows the size granted (see flashman's RAM rule).
"""

from __future__ import annotations

from collections.abc import Iterator

from appliance.flash.flashman import SEG, FlashError, FlashMan, Trace
from appliance.flash.format import OWNER_LDAP

MiB = 1 << 20


class FlashDirError(FlashError):
    """add-item of an existing id, replace/delete of a missing one, bad attributes."""


def _key(item_id: int) -> bytes:
    if not 0 <= item_id <= 0xFFFFFFFF:
        raise FlashDirError(f"item id {item_id} out of range")
    return item_id.to_bytes(4, "big")  # big endian: byte order is numeric order


def _check_attrs(attrs: str) -> bytes:
    if not attrs or "\n" in attrs or "\r" in attrs:
        raise FlashDirError(f"bad item attributes {attrs!r}")
    return attrs.encode()


class FlashDir:
    def __init__(self, fm: FlashMan, trace: Trace) -> None:
        self._fm = fm
        o = fm.owners[OWNER_LDAP]
        trace("start flashdir FLASHDIR0")
        trace(f"fdir: segments={o.configured}->{o.maximum}({o.maximum * SEG / MiB:.1f}MB)")
        if fm.mounted:  # else finish_mount() says it, once LDAP is replayed
            fm.check_ldap_size()

    def get(self, item_id: int) -> str | None:
        v = self._fm.get(OWNER_LDAP, _key(item_id))
        return None if v is None else v.decode()

    def __contains__(self, item_id: int) -> bool:
        return self._fm.get(OWNER_LDAP, _key(item_id)) is not None

    def __len__(self) -> int:
        return len(self._fm.values(OWNER_LDAP))

    def items(self) -> Iterator[tuple[int, str]]:
        vals = self._fm.values(OWNER_LDAP)
        for k in sorted(vals):
            yield int.from_bytes(k, "big"), vals[k].decode()

    def add_item(self, item_id: int, attrs: str) -> None:
        key = _key(item_id)
        if self._fm.get(OWNER_LDAP, key) is not None:
            raise FlashDirError(f"item {item_id} exists")
        self._fm.commit(OWNER_LDAP, [(key, _check_attrs(attrs))])

    def replace(self, item_id: int, attrs: str) -> None:
        key = _key(item_id)
        if self._fm.get(OWNER_LDAP, key) is None:
            raise FlashDirError(f"no item {item_id}")
        self._fm.commit(OWNER_LDAP, [(key, _check_attrs(attrs))])

    def put(self, item_id: int, attrs: str) -> None:
        """Add or replace (what a backup restore does)."""
        self._fm.commit(OWNER_LDAP, [(_key(item_id), _check_attrs(attrs))])

    def delete(self, item_id: int) -> bool:
        """Delete an item; False if there was none (nothing written)."""
        key = _key(item_id)
        if self._fm.get(OWNER_LDAP, key) is None:
            return False
        self._fm.commit(OWNER_LDAP, [(key, None)])
        return True

    def reset(self) -> None:
        """`mod cmd FLASHMAN0 reset ldap`: drop the whole directory (one commit)."""
        self._fm.reset_owner(OWNER_LDAP)

    def backup_lines(self) -> Iterator[str]:
        """The directory as the config backup's `mod cmd FLASHDIR0 add-item` lines."""
        for item_id, attrs in self.items():
            yield f"mod cmd FLASHDIR0 add-item {item_id} {attrs}"
