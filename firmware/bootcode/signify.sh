# ipva bootcode: the signature on a firmware image, sourced by /init (busybox sh).
# The header's bytes 0..111 are signed (appliance/formats/ipvabin.py); the base64 line of a
# signify signature is at offset 128, NUL padded. The keys are the initramfs's own
# (/etc/ipva/keyring/*.pub), never the image's. signify is Debian's, built static
# (firmware/bootbins.py): nothing of the payload, not trusted yet, runs.

SIGNIFY=/bin/signify-openbsd
KEYRING=/etc/ipva/keyring
B64=ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/
HEX=0123456789abcdef

signify() {
    "$SIGNIFY" "$@"
}

# KEYNUM: the key number (hex) of a signify record given as base64 (its bytes 2..9), as
# `base64 -d | od` gave it: characters outside base64's alphabet skipped, whole groups of 4
# decoded (fewer bytes: a shorter number). Shell only: under TCG each process costs
# milliseconds, and /init does this for the signature and every key of the keyring.
keynum() {
    local s=$1 i=0 got=0 c n=0 v hex=""
    while [ $got -lt 16 ] && [ $i -lt ${#s} ]; do  # 16 characters: bytes 0..11
        c=${s:$i:1}
        i=$((i + 1))
        v=${B64%%"$c"*}
        [ ${#v} -lt 64 ] || continue
        n=$((n << 6 | ${#v}))
        got=$((got + 1))
        if [ $((got % 4)) = 0 ]; then  # 3 bytes: 6 hex digits
            for v in 20 16 12 8 4 0; do
                hex=$hex${HEX:$((n >> v & 15)):1}
            done
            n=0
        fi
    done
    KEYNUM=${hex:4:16}
}

# check_signature FILE: 0 if a key of the keyring signed FILE's header. Otherwise WHY says
# why not: not signed, signed with a key the keyring lacks, or changed after signing.
check_signature() {
    # local: /init's check_slot keeps its own `want` (the digest) across this call
    local sig want pub key line err
    sig=$(dd if="$1" bs=128 skip=1 count=1 2>/dev/null)  # $(…) drops the NUL padding
    WHY="not signed"
    [ -n "$sig" ] || return 1
    keynum "$sig"
    want=$KEYNUM
    WHY="signed with a key this box does not trust (key $want)"
    [ -n "$want" ] || return 1
    for pub in "$KEYRING"/*.pub; do
        [ -r "$pub" ] || continue
        key="" line=""
        while read -r line || [ -n "$line" ]; do  # the key: the file's last line
            key=$line line=""
        done < "$pub"
        keynum "$key"
        [ "$KEYNUM" = "$want" ] || continue
        printf 'untrusted comment: ipva.bin header\n%s\n' "$sig" > "${TMPDIR:-/tmp}/header.sig"
        head -c 112 "$1" > "${TMPDIR:-/tmp}/header"
        err=$(signify -V -q -p "$pub" -x "${TMPDIR:-/tmp}/header.sig" \
            -m "${TMPDIR:-/tmp}/header" 2>&1) && return 0
        case $err in
        *"verification failed"*) WHY="signature wrong (changed after it was signed)" ;;
        *) WHY="signature not checked: $(echo "$err" | head -n 1)" ;;  # signify did not run
        esac
        return 1
    done
    return 1
}
