# The boot-control record in busybox sh: sourced by /init. The layout and the rules are
# appliance/hal/bootctl.py (its docstring is the spec); tests/unit/test_bootctl.py
# runs these functions in busybox against the Python twin, on every state and on torn copies.
#
# bc_read DEV     sets BC_OK (1: a valid copy), BC_SEQ BC_ACTIVE BC_STATE BC_TRIES BC_GOOD
#                 BC_FAILED from the newest valid copy
# bc_decide       sets BC_ACTION (start|try|give-up), BC_SLOT, BC_WRITE (1: write first)
#                 and updates BC_* to what is to be written
# bc_fall_back N  the chosen slot N failed its check: BC_* make the other slot good
# bc_write DEV    writes BC_* as seq + 1 into the older copy, flushed
BC_LBAS="8 9"
BC_TMP=${BC_TMP:-/run}

bc_u() {  # bc_u FILE OFFSET BYTES: unsigned little-endian field
    od -An -t "u$3" -j "$2" -N "$3" "$1" | tr -d ' \n'
}

bc_valid() {  # bc_valid FILE: magic, CRC, format and ranges as decode() checks them
    [ "$(head -c 8 "$1")" = "IPVABCTL" ] || return 1
    [ "$(head -c 508 "$1" | crc32)" = "$(od -An -t x4 -j 508 -N 4 "$1" | tr -d ' \n')" ] \
        || return 1
    [ "$(bc_u "$1" 8 2)" = 1 ] && [ "$(bc_u "$1" 19 1)" = 0 ] || return 1
    [ "$(bc_u "$1" 14 1)" -le 1 ] && [ "$(bc_u "$1" 15 1)" -le 1 ] || return 1
    case "$(bc_u "$1" 17 1)" in 0 | 1 | 255) return 0 ;; esac
    return 1
}

bc_read() {
    BC_OK=0
    BC_OLDER=8
    best=-1
    for lba in $BC_LBAS; do
        f="$BC_TMP/bootctl.$lba"
        dd if="$1" of="$f" bs=512 skip="$lba" count=1 2>/dev/null
        if bc_valid "$f"; then
            seq=$(bc_u "$f" 10 4)
            if [ "$seq" -gt "$best" ]; then best=$seq; newest=$f; fi
        fi
    done
    [ "$best" -ge 0 ] || return 0
    f=$newest
    BC_OK=1
    BC_SEQ=$best
    BC_ACTIVE=$(bc_u "$f" 14 1)
    BC_STATE=$(bc_u "$f" 15 1)
    BC_TRIES=$(bc_u "$f" 16 1)
    BC_GOOD=$(bc_u "$f" 17 1)
    BC_FAILED=$(bc_u "$f" 18 1)
}

bc_decide() {
    BC_WRITE=0
    if [ "$BC_OK" != 1 ]; then
        BC_ACTION=start BC_SLOT=0
        return
    fi
    if [ "$BC_STATE" = 1 ]; then
        if [ "$BC_TRIES" -gt 0 ]; then
            BC_ACTION=try BC_SLOT=$BC_ACTIVE BC_TRIES=$((BC_TRIES - 1)) BC_WRITE=1
            return
        fi
        back=$BC_GOOD
        [ "$back" = 255 ] && back=$((1 - BC_ACTIVE))
        BC_FAILED=$BC_ACTIVE BC_ACTIVE=$back BC_STATE=0 BC_TRIES=0 BC_GOOD=$back
        BC_ACTION=give-up BC_SLOT=$back BC_WRITE=1
        return
    fi
    BC_ACTION=start BC_SLOT=$BC_ACTIVE
}

bc_fall_back() {
    [ "$BC_OK" = 1 ] || return 0
    BC_ACTIVE=$((1 - $1)) BC_STATE=0 BC_TRIES=0 BC_GOOD=$((1 - $1)) BC_FAILED=$1
}

bc_le() {  # bc_le VALUE BYTES: hex, little endian
    v=$1 n=$2
    while [ "$n" -gt 0 ]; do
        printf '%02x' $((v & 255))
        v=$((v >> 8)) n=$((n - 1))
    done
}

bc_write() {
    # the older (or invalid) copy gets seq + 1; the newest stays untouched until then
    target=8
    s8=-1 s9=-1
    bc_valid "$BC_TMP/bootctl.8" && s8=$(bc_u "$BC_TMP/bootctl.8" 10 4)
    bc_valid "$BC_TMP/bootctl.9" && s9=$(bc_u "$BC_TMP/bootctl.9" 10 4)
    [ "$s8" -gt "$s9" ] && target=9
    newest=$s8
    [ "$s9" -gt "$newest" ] && newest=$s9
    [ "$newest" -lt 0 ] && newest=0
    BC_SEQ=$((newest + 1))
    out="$BC_TMP/bootctl.$target"
    {
        printf 'IPVABCTL'
        { printf '0100'; bc_le "$BC_SEQ" 4
          bc_le "$BC_ACTIVE" 1; bc_le "$BC_STATE" 1; bc_le "$BC_TRIES" 1; bc_le "$BC_GOOD" 1
          bc_le "$BC_FAILED" 1; printf '00'
        } | xxd -r -p
        head -c 488 /dev/zero
    } > "$out.body"
    crc=$(crc32 < "$out.body")
    { cat "$out.body"; bc_le "0x$crc" 4 | xxd -r -p; } > "$out"
    rm -f "$out.body"
    dd if="$out" of="$1" bs=512 seek="$target" count=1 conv=notrunc,fsync 2>/dev/null
}
