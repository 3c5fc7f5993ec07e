#!/bin/bash
# Install the innovaphone Virtual Appliance @VERSION@ as a libvirt domain from the files
# beside this script: copies the four qcow2 disks to DIR, points the domain XML at them and
# runs `virsh define`. Run it as a user allowed to manage the libvirt connection (root for
# qemu:///system).
set -euo pipefail

NAME="@NAME@"
DEFAULT_DIR="@IMAGE_DIR@"
DIR=""
NETWORK="default"
XML="@IDE_XML@"
CONNECT="${LIBVIRT_DEFAULT_URI:-qemu:///system}"
DISKS=(@DISKS@)
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

usage() {
    cat <<USAGE
usage: $0 [--virtio] [--name NAME] [--dir DIR] [--network NETWORK] [--connect URI]

  --virtio   virtio-scsi disks and a virtio NIC (@VIRTIO_XML@), for QEMUs
             without PCnet (RHEL-family qemu-kvm); default: IDE and PCnet ($XML)
  --name     domain name (default: $NAME)
  --dir      where the disks go (default: $DEFAULT_DIR, or /var/lib/libvirt/images/NAME)
  --network  libvirt network for the NIC (default: $NETWORK; see virsh net-list --all)
  --connect  libvirt URI (default: $CONNECT)
USAGE
}

die() { echo "error: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
        --virtio) XML="@VIRTIO_XML@"; shift ;;
        --name) NAME="${2:?--name needs a value}"; shift 2 ;;
        --dir) DIR="${2:?--dir needs a value}"; shift 2 ;;
        --network) NETWORK="${2:?--network needs a value}"; shift 2 ;;
        --connect) CONNECT="${2:?--connect needs a value}"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done

[[ "$NAME" =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]] || die "--name: letters, digits, . _ - only, got '$NAME'"
[[ "$NETWORK" =~ ^[A-Za-z0-9._-]+$ ]] || die "--network: letters, digits, . _ - only, got '$NETWORK'"
[ "$NAME" = "@NAME@" ] || DEFAULT_DIR="$(dirname "$DEFAULT_DIR")/$NAME"
DIR="${DIR:-$DEFAULT_DIR}"
[[ "$DIR" = /* ]] || die "--dir must be an absolute path (libvirt needs absolute disk paths), got '$DIR'"
[[ "$DIR" != *[\"\&\<\>\|]* ]] || die "--dir must not contain \" & < > |"
for f in "$XML" "${DISKS[@]}"; do
    [ -f "$HERE/$f" ] || die "$HERE/$f missing: unpack the whole libvirt/ directory"
done
command -v virsh >/dev/null || die "virsh not found: install libvirt-clients (Debian) or libvirt-client (RHEL)"
VIRSH=(virsh --connect "$CONNECT")
"${VIRSH[@]}" uri >/dev/null 2>&1 || die "cannot connect to $CONNECT (is libvirtd running, may you use it?)"
if "${VIRSH[@]}" dominfo "$NAME" >/dev/null 2>&1; then
    die "domain '$NAME' exists already: pick another --name or remove it (virsh undefine $NAME)"
fi
"${VIRSH[@]}" net-info "$NETWORK" >/dev/null 2>&1 \
    || die "network '$NETWORK' not found (virsh net-list --all)"
for d in "${DISKS[@]}"; do
    [ ! -e "$DIR/$d" ] || die "$DIR/$d exists already: remove it or choose another --dir"
done

mkdir -p "$DIR"
for d in "${DISKS[@]}"; do
    cp --sparse=always "$HERE/$d" "$DIR/$d"
    echo "copied $d to $DIR"
done

# the shipped XML names the default disk directory, domain name and network: point them at
# this installation
tmp="$(mktemp)"
trap 'rm -f "$tmp"' EXIT
sed -e "s|file=\"@IMAGE_DIR@/|file=\"$DIR/|" \
    -e "s|<name>@NAME@</name>|<name>$NAME</name>|" \
    -e "s|network=\"default\"|network=\"$NETWORK\"|" \
    "$HERE/$XML" > "$tmp"
"${VIRSH[@]}" define "$tmp"
echo "defined domain '$NAME' from $XML, disks in $DIR, NIC on network '$NETWORK'"
echo "start it with: virsh --connect $CONNECT start $NAME; console: virsh --connect $CONNECT console $NAME"
