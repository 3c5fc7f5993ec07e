"""Issue 25: what the box shows of its admin password logs in nowhere.

`config show`, `/cfg.txt`, `mod cmd CFG0 backup` and the console carry ADMIN0 /pwd only
sealed with the box's own key (appliance/config/secrets.py). Nothing of it — the sealed
value or any part of it, taken as a password or as Digest's H(user:realm:pwd) — logs in
over Digest (MD5, SHA-256) or Basic; the right password does, from urllib, requests and
curl. A backup restored on the same box keeps the login; on another box it keeps that
box's own and says so; the key itself never leaves the box.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from httpbox import (
    USER,
    HostedHttpBox,
    authed,
    challenge_for,
    request,
)

from appliance.config.secrets import KEY_VAR

PASSWORD = "Sealed-pw1"
CURL = shutil.which("curl")


@pytest.fixture
def box(tmp_path: Path) -> Iterator[HostedHttpBox]:
    b = HostedHttpBox(tmp_path / "a")
    for line in (f"config change ADMIN0 /pwd {PASSWORD}", "config activate", "config write"):
        assert not b.console_line(line).startswith("error"), line
    yield b
    b.close()


def shown(box: HostedHttpBox) -> dict[str, str]:
    """Everywhere the box shows its config, and what it shows there."""
    return {
        "console config show": box.console_line("config show"),
        "console config show saved": box.console_line("config show saved"),
        "console backup": box.console_line("mod cmd CFG0 backup"),
        "/!config show": authed(box.http_url, "GET", "/!config%20show", password=PASSWORD).text,
        "/cfg.txt": authed(box.http_url, "GET", "/cfg.txt", password=PASSWORD).text,
    }


def digest_from_ha1(base: str, algorithm: str, ha1: str, uri: str = "/!version") -> int:
    """A Digest login made from a value taken as H(user:realm:pwd), as the old
    password-equivalent verifier allowed; the answer's status."""
    c = challenge_for(base, algorithm)
    h = hashlib.sha256 if algorithm == "SHA-256" else hashlib.md5
    cnonce = os.urandom(8).hex()
    ha2 = h(f"GET:{uri}".encode()).hexdigest()
    response = h(f"{ha1}:{c['nonce']}:00000001:{cnonce}:auth:{ha2}".encode()).hexdigest()
    header = (
        f'Digest username="{USER}", realm="{c["realm"]}", nonce="{c["nonce"]}", uri="{uri}", '
        f'algorithm={algorithm}, qop=auth, nc=00000001, cnonce="{cnonce}", '
        f'response="{response}", opaque="{c.get("opaque", "")}"'
    )
    return request(base, "GET", uri, headers={"Authorization": header}).status


def basic(base: str, password: str) -> int:
    import base64

    token = base64.b64encode(f"{USER}:{password}".encode()).decode()
    return request(base, "GET", "/!version", headers={"Authorization": f"Basic {token}"}).status


def test_nothing_the_box_shows_logs_in_and_the_password_does(box: HostedHttpBox) -> None:
    texts = shown(box)
    values = {v for t in texts.values() for v in re.findall(r"/pwd (\S+)$", t, re.M)}
    assert values, texts
    candidates = values | {part for v in values for part in v.split("$")}
    for value in sorted(candidates):
        for algorithm in ("MD5", "SHA-256"):
            assert digest_from_ha1(box.http_url, algorithm, value) == 401, (algorithm, value)
            assert authed(box.http_url, "GET", "/!version", algorithm=algorithm,
                          password=value).status == 401  # fmt: skip
        assert basic(box.https_url, value) == 401, value
        box.console_line("mod cmd HTTP0 unlock")  # the guesses above start lockouts
    for where, text in texts.items():
        assert PASSWORD not in text and "digest$" not in text, where
        assert KEY_VAR not in text, where
        found = re.findall(r"^config change ADMIN0 /pwd (\S+)$", text, re.M)
        assert found and all(v.startswith("enc$") for v in found), (where, text)
    # the password itself, from the clients the tests already use (see test_http_csrf.py)
    assert (
        authed(box.http_url, "GET", "/!version", algorithm="MD5", password=PASSWORD).status == 200
    )
    assert basic(box.https_url, PASSWORD) == 200
    manager = urllib.request.HTTPPasswordMgrWithDefaultRealm()
    manager.add_password(None, box.http_url, USER, PASSWORD)
    opener = urllib.request.build_opener(urllib.request.HTTPDigestAuthHandler(manager))
    with opener.open(box.http_url + "/!version", timeout=10) as r:
        assert r.status == 200
    requests = pytest.importorskip("requests")
    from requests.auth import HTTPDigestAuth

    r = requests.get(box.http_url + "/!version", auth=HTTPDigestAuth(USER, PASSWORD), timeout=10)
    assert r.status_code == 200, r.text
    if CURL is not None:
        done = subprocess.run(
            [CURL, "-sS", "--max-time", "20", "-o", "/dev/null", "-w", "%{http_code}",
             "--digest", "-u", f"{USER}:{PASSWORD}", box.http_url + "/!version"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.stdout == "200", done.stderr


def test_a_shown_line_typed_back_keeps_the_login(box: HostedHttpBox) -> None:
    line = next(x for x in box.console_line("config show").splitlines() if "ADMIN0" in x)
    assert box.console_line("config change ADMIN0 /pwd Other-pw1") == ""
    assert box.console_line(line) == ""  # copied from config show: the same password again
    box.console_line("config activate")
    assert authed(box.http_url, "GET", "/!version", password=PASSWORD).status == 200


def test_a_backup_restored_on_the_same_box_keeps_the_login(box: HostedHttpBox) -> None:
    backup = authed(box.http_url, "GET", "/cfg.txt", password=PASSWORD)
    for line in ("config change ADMIN0 /pwd Other-pw1", "config activate", "config write"):
        box.console_line(line)
    r = authed(box.http_url, "PUT", "/cfg.txt", backup.body, password="Other-pw1")
    assert r.status == 200 and "not restored" not in r.text, r.text
    box.console_line("reset")
    assert authed(box.http_url, "GET", "/!version", password=PASSWORD).status == 200
    assert authed(box.http_url, "GET", "/!version", password="Other-pw1").status == 401


def test_a_backup_from_another_box_keeps_this_boxs_login_and_says_so(
    box: HostedHttpBox, tmp_path: Path
) -> None:
    box.console_line("config change SYS0 /name from-a")
    box.console_line(f"config add ADMIN0 /user admin /pwd {PASSWORD}")  # config add keeps /name
    box.console_line("config write")
    backup = authed(box.http_url, "GET", "/cfg.txt", password=PASSWORD)
    a_line = next(x for x in backup.text.splitlines() if x.startswith("config change ADMIN0"))
    other = HostedHttpBox(tmp_path / "b")
    try:
        for line in ("config change ADMIN0 /pwd B-secret1", "config activate", "config write"):
            other.console_line(line)
        refused = other.console_line(a_line)
        assert refused.startswith("error:") and "encrypted by another box" in refused, refused
        assert "config add ADMIN0 /pwd <password>" in refused
        r = authed(other.http_url, "PUT", "/cfg.txt", backup.body, password="B-secret1")
        assert r.status == 200 and "config restored" in r.text, r.text
        assert "ADMIN0 /pwd not restored: encrypted by another box" in r.text
        assert "this box's own was kept" in r.text and "config add ADMIN0 /pwd" in r.text
        other.console_line("reset")
        assert "config change SYS0 /name from-a" in other.console_line("config show")
        assert authed(other.http_url, "GET", "/!version", password="B-secret1").status == 200
        assert authed(other.http_url, "GET", "/!version", password=PASSWORD).status == 401
    finally:
        other.close()


def test_the_key_never_leaves_the_box(box: HostedHttpBox) -> None:
    refused = box.console_line(f"vars read {KEY_VAR}")
    assert refused.startswith("error:") and "the box's own keys" in refused, refused
    assert box.console_line(f"vars create {KEY_VAR} p 00").startswith("error:")
    assert box.console_line(f"vars del {KEY_VAR}").startswith("error:")
    assert KEY_VAR not in box.console_line("vars read")
    head = "vars check - # 16r1sr1 IPVA[1601001], Bootcode[1601001], HW[x]"
    bad = f"{head}\nvars create {KEY_VAR} pb 00\n"
    r = authed(box.http_url, "PUT", "/cfg.txt", bad.encode(), password=PASSWORD)
    assert r.status == 400 and "line 2" in r.text, r.text
    b = box.runtime.box
    assert b is not None and b.get_var(KEY_VAR) is not None  # it is there, and stays


def test_a_factory_reset_makes_a_new_key(box: HostedHttpBox) -> None:
    backup = authed(box.http_url, "GET", "/cfg.txt", password=PASSWORD)
    box.console_line("mod cmd CFG0 factory-reset yes")
    box.console_line("reset")
    b = box.runtime.box
    assert b is not None and b.get_var(KEY_VAR) is None
    r = authed(box.http_url, "PUT", "/cfg.txt", backup.body)  # the factory password
    assert r.status == 200 and "ADMIN0 /pwd not restored" in r.text, r.text
