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

# bc_load FILE: 0 if FILE is a valid copy (magic, CRC, format and ranges as decode() checks
# them); its fields are then in BC_L_SEQ BC_L_ACTIVE BC_L_STATE BC_L_TRIES BC_L_GOOD
# BC_L_FAILED. One od for every field, one for the stored CRC: under emulation each process
# costs milliseconds of the boot (issue 27), and this ran ~40 of them.
bc_load() {
    local f=$1 want
    set -- $(od -An -v -tu1 -N 20 "$f")
    [ $# -eq 20 ] && [ "$1 $2 $3 $4 $5 $6 $7 $8" = "73 80 86 65 66 67 84 76" ] || return 1
    want=$(od -An -tx4 -j 508 -N 4 "$f")
    [ "$(head -c 508 "$f" | crc32)" = "${want##* }" ] || return 1
    shift 8  # bytes 8..19: format (2), seq (4), active state tries good failed, reserved
    [ "$1 $2" = "1 0" ] && [ "${12}" = 0 ] || return 1
    BC_L_SEQ=$(($3 + ($4 << 8) + ($5 << 16) + ($6 << 24)))
    BC_L_ACTIVE=$7 BC_L_STATE=$8 BC_L_TRIES=$9 BC_L_GOOD=${10} BC_L_FAILED=${11}
    [ "$7" -le 1 ] && [ "$8" -le 1 ] || return 1
    case ${10} in 0 | 1 | 255) return 0 ;; esac
    return 1
}

bc_read() {
    BC_OK=0
    best=-1
    for lba in $BC_LBAS; do
        f="$BC_TMP/bootctl.$lba"
        dd if="$1" of="$f" bs=512 skip="$lba" count=1 2>/dev/null
        if bc_load "$f" && [ "$BC_L_SEQ" -gt "$best" ]; then
            best=$BC_L_SEQ
            BC_SEQ=$BC_L_SEQ BC_ACTIVE=$BC_L_ACTIVE BC_STATE=$BC_L_STATE BC_TRIES=$BC_L_TRIES
            BC_GOOD=$BC_L_GOOD BC_FAILED=$BC_L_FAILED
        fi
    done
    [ "$best" -ge 0 ] && BC_OK=1
    return 0
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
    bc_load "$BC_TMP/bootctl.8" && s8=$BC_L_SEQ
    bc_load "$BC_TMP/bootctl.9" && s9=$BC_L_SEQ
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
