"""AES-128 for SRTP (AES-CM): AES-NI machine code where the CPU has it, else pure Python.

This is what makes `has_aesni` in `mod cmd CPU cpu-info` true or false: the runtime's AES
uses the AES-NI path only if the CPU flags offer `aes` AND a self-test of that code (FIPS-197
appendix C.1, run in a child process so a fault cannot kill the box) gives the right answer.

`measure_srtp_mips()` is the box's `srtp-mips`, measured, not guessed:
  protect SRTP packets of one G.711 stream — 12-byte RTP header + 160 bytes payload (20 ms),
  AES-CM-128 keystream over the payload + HMAC-SHA1-80 over header and payload — in a loop
  for at least MEASURE_S seconds; t = seconds per packet. One call is 50 packets/s in each
  direction (protect + unprotect, same cost), so it costs t * 100 CPU-seconds per second;
  times the CPU clock (cpu MHz) that is millions of cycles per second: srtp-mips =
  ceil(t * 100 * MHz). Lower is better; it shows the gain of AES-NI directly.
"""

from __future__ import annotations

import ctypes
import hmac
import math
import struct
import time
from typing import Protocol

from appliance.hal.native import NativeCode, run_in_child

MEASURE_S = 0.2
PACKETS_PER_S = 100  # 50 pps each way for 20 ms G.711
RTP_HEADER = 12
RTP_PAYLOAD = 160

# --- pure Python AES-128 (FIPS-197) ----------------------------------------------------


def _make_sbox() -> bytes:
    sbox = [0] * 256
    p = q = 1
    while True:  # walk the multiplicative group with generator 3 and its inverse
        p = p ^ ((p << 1) & 0xFF) ^ (0x1B if p & 0x80 else 0)
        q ^= q << 1
        q ^= q << 2
        q ^= q << 4
        q &= 0xFF
        if q & 0x80:
            q ^= 0x09
        x = q ^ _rotl8(q, 1) ^ _rotl8(q, 2) ^ _rotl8(q, 3) ^ _rotl8(q, 4)
        sbox[p] = x ^ 0x63
        if p == 1:
            break
    sbox[0] = 0x63
    return bytes(sbox)


def _rotl8(x: int, s: int) -> int:
    return ((x << s) | (x >> (8 - s))) & 0xFF


SBOX = _make_sbox()


def _xtime(a: int) -> int:
    return ((a << 1) ^ 0x1B) & 0xFF if a & 0x80 else a << 1


def expand_key(key: bytes) -> bytes:
    """The 11 round keys of AES-128, 176 bytes."""
    if len(key) != 16:
        raise ValueError("AES-128 needs a 16-byte key")
    w = bytearray(key)
    rcon = 1
    while len(w) < 176:
        t = w[-4:]
        if len(w) % 16 == 0:
            t = bytearray(SBOX[b] for b in t[1:] + t[:1])
            t[0] ^= rcon
            rcon = _xtime(rcon)
        w += bytes(a ^ b for a, b in zip(w[-16:-12], t, strict=True))
    return bytes(w)


def _encrypt_block(rk: bytes, block: bytes) -> bytes:
    s = [b ^ k for b, k in zip(block, rk[:16], strict=True)]
    for rnd in range(1, 11):
        s = [SBOX[b] for b in s]
        s = [s[(i + 4 * (i % 4)) % 16] for i in range(16)]  # ShiftRows (column-major)
        if rnd != 10:
            m = []
            for c in range(4):
                a = s[4 * c : 4 * c + 4]
                t = a[0] ^ a[1] ^ a[2] ^ a[3]
                m += [a[i] ^ t ^ _xtime(a[i] ^ a[(i + 1) % 4]) for i in range(4)]
            s = m
        k = rk[16 * rnd : 16 * rnd + 16]
        s = [b ^ kk for b, kk in zip(s, k, strict=True)]
    return bytes(s)


class Aes(Protocol):
    name: str

    def encrypt_blocks(self, round_keys: bytes, data: bytes) -> bytes: ...


class PureAes:
    name = "python"

    def encrypt_blocks(self, round_keys: bytes, data: bytes) -> bytes:
        return b"".join(
            _encrypt_block(round_keys, data[i : i + 16]) for i in range(0, len(data), 16)
        )


# --- AES-NI ----------------------------------------------------------------------------


def _aesni_code() -> bytes:
    """void enc(const u8 rk[176] /rdi/, const u8 *in /rsi/, u8 *out /rdx/, u64 n /rcx/)."""
    code = bytearray()
    for k in range(11):  # movdqu xmm(k+1), [rdi + 16k]
        reg = k + 1
        code += b"\xf3" + (b"\x44" if reg >= 8 else b"") + b"\x0f\x6f"
        code += bytes([0x80 | ((reg & 7) << 3) | 7]) + struct.pack("<i", 16 * k)
    code += b"\x48\x85\xc9"  # test rcx, rcx
    jz_at = len(code)
    code += b"\x74\x00"  # jz end (patched)
    loop = len(code)
    code += b"\xf3\x0f\x6f\x06"  # movdqu xmm0, [rsi]
    code += b"\x66\x0f\xef\xc1"  # pxor xmm0, xmm1
    for reg in range(2, 11):  # aesenc xmm0, xmm2..xmm10
        code += b"\x66" + (b"\x41" if reg >= 8 else b"") + b"\x0f\x38\xdc"
        code += bytes([0xC0 | (reg & 7)])
    code += b"\x66\x41\x0f\x38\xdd\xc3"  # aesenclast xmm0, xmm11
    code += b"\xf3\x0f\x7f\x02"  # movdqu [rdx], xmm0
    code += b"\x48\x83\xc6\x10"  # add rsi, 16
    code += b"\x48\x83\xc2\x10"  # add rdx, 16
    code += b"\x48\xff\xc9"  # dec rcx
    code += b"\x75" + struct.pack("<b", loop - (len(code) + 2))  # jnz loop
    code[jz_at + 1] = len(code) - (jz_at + 2)
    code += b"\xc3"  # ret
    return bytes(code)


class NativeAes:
    name = "aesni"

    def __init__(self) -> None:
        self._code = NativeCode(
            _aesni_code(), None, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_uint64
        )

    def encrypt_blocks(self, round_keys: bytes, data: bytes) -> bytes:
        if len(round_keys) != 176 or len(data) % 16:
            raise ValueError("176-byte round keys and whole 16-byte blocks")
        out = ctypes.create_string_buffer(len(data))
        self._code.fn(round_keys, data, out, len(data) // 16)
        return out.raw


FIPS197_KEY = bytes(range(16))
FIPS197_PLAIN = bytes.fromhex("00112233445566778899aabbccddeeff")
FIPS197_CIPHER = bytes.fromhex("69c4e0d86a7b0430d8cdb78070b4c55a")


def _selftest_native() -> list[int]:
    out = NativeAes().encrypt_blocks(expand_key(FIPS197_KEY), FIPS197_PLAIN)
    return list(struct.unpack("<2Q", out))


def select_aes(cpu_flags: frozenset[str]) -> tuple[Aes, str]:
    """The AES the runtime will use, and why (for the trace)."""
    if "aes" not in cpu_flags:
        return PureAes(), "no aes in the CPU flags"
    result = run_in_child(_selftest_native)
    if not result.ok:
        return PureAes(), f"AES-NI self-test died ({result.signal})"
    if struct.pack("<2Q", *result.values) != FIPS197_CIPHER:
        return PureAes(), "AES-NI self-test gave a wrong result"
    return NativeAes(), "AES-NI self-test passed"


# --- SRTP cost -------------------------------------------------------------------------


def protect_packet(
    aes: Aes, rk: bytes, auth_key: bytes, header: bytes, payload: bytes, iv: int
) -> bytes:
    """AES-CM keystream XOR the payload, then the 80-bit HMAC-SHA1 tag (RFC 3711 shape)."""
    blocks = math.ceil(len(payload) / 16)
    counters = b"".join(((iv + i) & (2**128 - 1)).to_bytes(16, "big") for i in range(blocks))
    stream = aes.encrypt_blocks(rk, counters)[: len(payload)]
    enc = (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(
        len(payload), "big"
    )
    tag = hmac.new(auth_key, header + enc, "sha1").digest()[:10]
    return header + enc + tag


def measure_srtp_mips(aes: Aes, mhz: float, budget_s: float = MEASURE_S) -> int:
    rk = expand_key(bytes(range(16)))
    auth_key = bytes(20)
    header = bytes(RTP_HEADER)
    payload = bytes(RTP_PAYLOAD)
    n = 0
    start = time.perf_counter()
    while True:
        protect_packet(aes, rk, auth_key, header, payload, n << 16)
        n += 1
        elapsed = time.perf_counter() - start
        if elapsed >= budget_s and n >= 3:
            break
    return math.ceil(elapsed / n * PACKETS_PER_S * max(mhz, 1.0))
