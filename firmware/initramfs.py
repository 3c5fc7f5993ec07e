"""The bootcode's initramfs: busybox, /init and its scripts. Small on purpose: the kernel
has every driver built in (firmware/kernel.py), so there are no modules to carry or load.

Python and the runtime are not here: they come from IPVA.BIN's payload, which /init checks
first. /usr, /lib64 and the libc directory are links into the payload's mount point /fw.

The check's keyring (/etc/ipva/keyring/<name>.pub, signify public keys) and signify itself
are here: a slot is trusted only by what the boot disk carries, never by what the image
brings. busybox and signify are static (firmware/bootbins.py): no C library or loader here.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from appliance.formats.signify import PublicKey
from firmware.bootbins import BootBins
from firmware.payload import set_tree_mtime
from firmware.run import run

BOOTCODE_DIR = Path(__file__).parent / "bootcode"
LINKS_INTO_PAYLOAD = {
    "usr": "/fw/usr",
    "lib64": "/fw/lib64",
    "lib/x86_64-linux-gnu": "/fw/lib/x86_64-linux-gnu",
}
SIGNIFY = "bin/signify-openbsd"  # the verifier (run by /etc/signify.sh)
KEYRING_DIR = "etc/ipva/keyring"


def make_initramfs_tree(
    bins: BootBins, tree: Path, bootcode_version: str, keyring: list[PublicKey]
) -> None:
    """Lay out the initramfs root; `keyring`: the keys a slot must be signed with."""
    if tree.exists():
        shutil.rmtree(tree)
    for d in ("bin", "etc", "proc", "sys", "dev", "run", "tmp", "boot", "fw", "lib", "root"):
        (tree / d).mkdir(parents=True)
    busybox = tree / "bin/busybox"
    shutil.copy2(bins.busybox, busybox)
    applets = run([busybox, "--list"], capture=True).stdout.decode().split()
    for applet in applets:
        if applet != "busybox":
            (tree / "bin" / applet).symlink_to("busybox")
    (tree / "sbin").symlink_to("bin")
    for link, target in LINKS_INTO_PAYLOAD.items():
        (tree / link).symlink_to(target)
    shutil.copy2(BOOTCODE_DIR / "init", tree / "init")
    (tree / "init").chmod(0o755)
    shutil.copy2(BOOTCODE_DIR / "fstab", tree / "etc/fstab")  # /init's first `mount -a`
    # the boot-control record's reader and writer, sourced by /init
    shutil.copy2(BOOTCODE_DIR / "bootctl.sh", tree / "etc/bootctl.sh")
    shutil.copy2(BOOTCODE_DIR / "udhcpc.script", tree / "etc/udhcpc.script")
    (tree / "etc/udhcpc.script").chmod(0o755)
    (tree / "etc/bootcode-version").write_text(bootcode_version + "\n")
    shutil.copy2(BOOTCODE_DIR / "signify.sh", tree / "etc/signify.sh")
    shutil.copy2(bins.signify, tree / SIGNIFY)
    (tree / KEYRING_DIR).mkdir(parents=True)
    for key in keyring:
        text = key.to_text(f"ipva keyring: {key.name}")
        (tree / KEYRING_DIR / f"{key.name}.pub").write_text(text)


def make_cpio_zstd(tree: Path, out: Path, epoch: int, level: int = 19) -> None:
    """newc cpio, sorted, owner root, fixed mtimes → zstd (the kernel has RD_ZSTD)."""
    set_tree_mtime(tree, epoch)
    names = sorted(str(p.relative_to(tree)) for p in tree.rglob("*"))
    listing = ("\n".join(names) + "\n").encode()
    cpio = run(
        ["cpio", "--quiet", "-o", "-H", "newc", "-R", "0:0", "--reproducible"],
        cwd=tree, input=listing, capture=True,
    ).stdout  # fmt: skip
    packed = run(["zstd", "-q", f"-{level}", "-T0", "-c"], input=cpio, capture=True).stdout
    out.write_bytes(packed)
