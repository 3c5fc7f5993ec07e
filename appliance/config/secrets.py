"""Secrets in the config, sealed with the box's own key (issue 25).

The admin password's Digest verifier (`digest$<user>$<salt>$<md5>$<sha256>`, types.py) logs
in over Digest as well as the password does, and ALARM0 /pwd is a password at another box.
So the config never holds either in the open: every `Password` argument holds
`enc$<key id>$<base64url(nonce | ciphertext | tag)>`, sealed with a key that only this box
has. `config show`, `/cfg.txt`, backups and VARS carry that form, which opens on this box
only: copied back in here (a `config show` line, a backup) it works; on another box it is
refused or, in a restore, skipped with what to do (box.py).

The key: 32 random bytes made at first need and kept in VARS under KEY_VAR, a name with a
colon, so `vars read|create|del` and backups never reach it (varlines.py), like the HTTPS
key. It is committed on its own before anything sealed with it is shown or written, so a
power cut leaves either no key and the old config, or the key and either config.

The cipher is made of the stdlib only (the guest carries no `cryptography`; its `ecdsa` has
no cipher): HMAC-SHA256 as a PRF gives the keystream (counter mode over a 16-byte random
nonce) and, under another derived key, the tag over the context (which argument the value
belongs to), the key id, the nonce and the ciphertext (encrypt-then-MAC). Values are short
(a verifier is ~120 bytes), so speed does not matter.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from appliance.config.model import Config, ConfigError, ObjKey
from appliance.config.schema import MODULES, Arg
from appliance.config.types import SEALED_RE, Password, Unsealed

KEY_VAR = "SEAL:KEY"  # the box's own key in VARS (a colon: never a `vars` variable)
KEY_BYTES = 32
NONCE_BYTES = 16
TAG_BYTES = 16


class SealError(ValueError):
    """A sealed value that does not open here; `foreign`: sealed by another key."""

    def __init__(self, message: str, foreign: bool) -> None:
        super().__init__(message)
        self.foreign = foreign


@dataclass(frozen=True)
class BoxKey:
    """The box's own sealing key. Its repr never shows the bytes."""

    raw: bytes

    @classmethod
    def make(cls) -> BoxKey:
        return cls(os.urandom(KEY_BYTES))

    @classmethod
    def from_var(cls, value: bytes | None) -> BoxKey | None:
        """The key as VARS keeps it (None: not there, or not a key)."""
        return cls(value) if value is not None and len(value) == KEY_BYTES else None

    def __repr__(self) -> str:
        return f"BoxKey({self.id})"

    @property
    def id(self) -> str:
        """8 hex digits naming the key (in every sealed value), so a value from another box
        is told from a damaged one; it says nothing about the key."""
        return self._derive(b"ipva seal: key id").hex()[:8]

    def _derive(self, label: bytes) -> bytes:
        return _hmac_sha256(self.raw, label)

    def _keystream(self, nonce: bytes, n: int) -> bytes:
        k = self._derive(b"ipva seal: encryption")
        blocks = (_hmac_sha256(k, nonce + i.to_bytes(4, "big")) for i in range((n + 31) // 32))
        return b"".join(blocks)[:n]

    def _tag(self, context: str, nonce: bytes, ciphertext: bytes) -> bytes:
        k = self._derive(b"ipva seal: authentication")
        msg = b"\0".join((context.encode(), self.id.encode(), nonce, ciphertext))
        return _hmac_sha256(k, msg)[:TAG_BYTES]

    def seal(self, plain: str, context: str) -> str:
        """`plain` sealed for `context` (which argument it belongs to, e.g. ADMIN0/pwd)."""
        data = plain.encode("utf-8")
        nonce = os.urandom(NONCE_BYTES)
        ct = bytes(a ^ b for a, b in zip(data, self._keystream(nonce, len(data)), strict=True))
        blob = nonce + ct + self._tag(context, nonce, ct)
        return f"enc${self.id}${base64.urlsafe_b64encode(blob).decode().rstrip('=')}"

    def open(self, token: str, context: str) -> str:
        """The plain text of a sealed value; SealError if it is not this box's or changed."""
        import hmac  # here, as in _hmac_sha256: it loads OpenSSL's libcrypto

        m = re.fullmatch(SEALED_RE, token)
        if not m:
            raise SealError("not a sealed value", foreign=False)
        if m[1] != self.id:
            raise SealError(
                f"encrypted by another box (key {m[1]}; this box's key is {self.id})",
                foreign=True,
            )
        try:
            blob = base64.urlsafe_b64decode(m[2] + "=" * (-len(m[2]) % 4))
        except (binascii.Error, ValueError):
            raise SealError("damaged (not base64)", foreign=False) from None
        if len(blob) < NONCE_BYTES + TAG_BYTES:
            raise SealError("damaged (too short)", foreign=False)
        nonce, ct, tag = blob[:NONCE_BYTES], blob[NONCE_BYTES:-TAG_BYTES], blob[-TAG_BYTES:]
        if not hmac.compare_digest(tag, self._tag(context, nonce, ct)):
            raise SealError(f"damaged, or not for {context}", foreign=False)
        data = bytes(a ^ b for a, b in zip(ct, self._keystream(nonce, len(ct)), strict=True))
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise SealError("damaged (not text)", foreign=False) from None


def _hmac_sha256(key: bytes, msg: bytes) -> bytes:
    # imported here: hashlib and hmac load OpenSSL's libcrypto, which a box without secrets
    # does not need before its prompt
    import hashlib
    import hmac

    return hmac.new(key, msg, hashlib.sha256).digest()


def context_of(key: ObjKey, arg: str) -> str:
    """What a sealed value is bound to: its module and argument (ADMIN0/pwd)."""
    return f"{key[0]}/{arg}"


def secret_args(key: ObjKey) -> tuple[Arg, ...]:
    """The Password arguments of an object (none for an unknown module)."""
    return tuple(a for a in _decls(key) if isinstance(a.type, Password))


def _decls(key: ObjKey) -> tuple[Arg, ...]:
    module = MODULES.get(key[0])
    if module is None:
        return ()
    if not key[1]:
        return module.args
    found = module.find_sub(key[1])
    return found[0].args if found else ()


@dataclass(frozen=True)
class Unopened:
    """A sealed value in a config that this box's key does not open."""

    key: ObjKey
    arg: str
    error: SealError

    @property
    def label(self) -> str:
        return f"{self.key[0]} {self.key[1]}".rstrip() + f" /{self.arg}"


def seal_secrets(
    config: Config,
    box_key: Callable[[], BoxKey],
    before: Config | None = None,
    *,
    check: bool = True,
    known_key: Callable[[], BoxKey | None] | None = None,
) -> tuple[Config, list[Unopened]]:
    """`config` with every unsealed secret sealed (box_key() is asked only when there is
    one: it may make the key) and every sealed one checked to open with known_key() (the
    key if there is one; default box_key); only the arguments that differ from
    `before` (None: all). An object whose secrets changed is checked again with them open
    (its module's check: the password's user …; ConfigError; `check=False` for a config
    that was checked when it was stored). What does not open is left as it is and listed:
    the caller decides (refuse, keep the box's own, trace)."""
    objects = dict(config.objects)
    unopened: list[Unopened] = []
    for key, values in config.objects.items():
        old = before.objects.get(key) if before is not None else None
        secrets = [a for a in secret_args(key) if a.name in values]
        if not secrets or old == values:
            continue
        sealed, plain = dict(values), dict(values)
        for a in secrets:
            value, context = values[a.name], context_of(key, a.name)
            if isinstance(value, Unsealed):
                sealed[a.name] = box_key().seal(value.plain, context)
                plain[a.name] = value.plain
                continue
            try:
                plain[a.name] = _open(known_key() if known_key else box_key(), value, context)
            except SealError as e:
                if old is None or old.get(a.name) != value:  # new here: the caller decides
                    unopened.append(Unopened(key, a.name, e))
        if check:
            _check(key, plain)  # e.g. a kept password and a new user (config add ADMIN0 /user)
        objects[key] = sealed
    return Config(objects), unopened


def _open(key: BoxKey | None, value: Any, context: str) -> str:
    if key is None:  # a box without a key has sealed nothing
        m = re.fullmatch(SEALED_RE, str(value))
        raise SealError(
            f"encrypted by another box (key {m[1] if m else '?'}; this box has none yet)",
            foreign=True,
        )
    return key.open(str(value), context)


def has_secrets(config: Config) -> bool:
    """Whether `config` holds a sealed value (then the key must be in VARS with it)."""
    return any(a.name in values for key, values in config.objects.items() for a in secret_args(key))


def _check(key: ObjKey, values: Mapping[str, Any]) -> None:
    """The object's own check, with its secrets open (a Password's user is inside)."""
    module = MODULES[key[0]]
    found = module.find_sub(key[1]) if key[1] else None
    decls, check = (found[0].args, found[0].check) if found else (module.args, module.check)
    problem = check({a.name: values.get(a.name, a.default) for a in decls}) if check else None
    if problem:
        label = f"{key[0]} {key[1]}".rstrip()
        raise ConfigError(f"{label}: {problem}")


def open_secret(box_key: BoxKey | None, value: Any, key: ObjKey, arg: str) -> str | None:
    """A secret argument's value opened: "" if not set, None if it does not open here."""
    if not value:
        return ""
    if isinstance(value, Unsealed):
        return value.plain
    if box_key is None:
        return None
    try:
        return box_key.open(str(value), context_of(key, arg))
    except SealError:
        return None


def keep_own(config: Config, own: Config, unopened: list[Unopened]) -> Config:
    """`config` with each secret that does not open here, and the user it belongs to
    (Password.user_arg), taken from `own` (this box's config); the object's other
    arguments stay as `config` has them."""
    objects = {k: dict(v) for k, v in config.objects.items()}
    for u in unopened:
        decl = next(a for a in secret_args(u.key) if a.name == u.arg)
        assert isinstance(decl.type, Password)
        mine = own.objects.get(u.key, {})
        values = objects.setdefault(u.key, {})
        for name in (u.arg, decl.type.user_arg):
            if name in mine:
                values[name] = mine[name]
            else:
                values.pop(name, None)
        if not values:
            objects.pop(u.key)
    return Config(objects)
