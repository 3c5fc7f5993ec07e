# ipva bootcode: the signature on a firmware image, sourced by /init (busybox sh).
# The header's bytes 0..111 are signed (appliance/formats/ipvabin.py); the base64 line of a
# signify signature is at offset 128, NUL padded. The keys are the initramfs's own
# (/etc/ipva/keyring/*.pub), never the image's. signify is Debian's, built static
# (firmware/bootbins.py): nothing of the payload, not trusted yet, runs.

SIGNIFY=/bin/signify-openbsd
KEYRING=/etc/ipva/keyring

signify() {
    "$SIGNIFY" "$@"
}

# key number (hex) of a signify record given as base64 (bytes 2..9)
keynum() {
    printf '%s\n' "$1" | base64 -d 2>/dev/null | od -An -tx1 -j2 -N8 | tr -d ' \n'
}

# check_signature FILE: 0 if a key of the keyring signed FILE's header. Otherwise WHY says
# why not: not signed, signed with a key the keyring lacks, or changed after signing.
check_signature() {
    # local: /init's check_slot keeps its own `want` (the digest) across this call
    local sig want pub err
    sig=$(dd if="$1" bs=128 skip=1 count=1 2>/dev/null | tr -d '\000')
    WHY="not signed"
    [ -n "$sig" ] || return 1
    want=$(keynum "$sig")
    WHY="signed with a key this box does not trust (key $want)"
    for pub in "$KEYRING"/*.pub; do
        [ -r "$pub" ] || continue
        [ "$(keynum "$(tail -n 1 "$pub")")" = "$want" ] || continue
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
