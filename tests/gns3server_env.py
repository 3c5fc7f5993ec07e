"""gns3-server in its own virtualenv, made by the suite once per user and version
(~/.cache/ipva/gns3-server-<version>), and tests/gns3node.py run in it.

A separate venv, not a test extra of ours: gns3-server pins its own web stack (FastAPI,
pydantic 2, SQLAlchemy, aiohttp, cryptography …), which would then have to agree with the
product's dependencies in one environment, and none of it belongs in the product's runtime.
"""

from __future__ import annotations

import fcntl
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from firmware.run import user_cache_dir

GNS3_SERVER_VERSION = "3.0.6"  # PyPI; its `Appliance` schema takes registry versions 1-6
NODE_SCRIPT = Path(__file__).with_name("gns3node.py")


def gns3_python() -> Path:
    """The venv's python, with gns3-server installed (made on first use, under a lock)."""
    venv = user_cache_dir() / f"gns3-server-{GNS3_SERVER_VERSION}"
    python = venv / "bin" / "python"
    done = venv / ".installed"
    venv.parent.mkdir(parents=True, exist_ok=True)
    with (venv.parent / f".{venv.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
            pip = [str(python), "-m", "pip", "install", "-q", f"gns3-server=={GNS3_SERVER_VERSION}"]
            proc = subprocess.run(pip, capture_output=True, text=True, stdin=subprocess.DEVNULL)
            if proc.returncode != 0:
                raise RuntimeError(
                    f"pip could not install gns3-server {GNS3_SERVER_VERSION} into {venv}: "
                    f"{proc.stderr.strip()[-2000:]}"
                )
            done.write_text(GNS3_SERVER_VERSION)
    return python


def run_node_script(*args: str | Path) -> tuple[int, dict[str, Any], str]:
    """(exit code, its JSON answer or {}, stderr) of `gns3node.py ARGS` in gns3-server's venv."""
    proc = subprocess.run(
        [str(gns3_python()), str(NODE_SCRIPT), *map(str, args)],
        capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=600,
    )  # fmt: skip
    try:
        answer = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        answer = {}
    return proc.returncode, answer, proc.stderr
