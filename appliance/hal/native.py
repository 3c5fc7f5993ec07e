"""Run a few bytes of x86-64 machine code: in-process, or in a child that may die.

Some probes execute an instruction that faults where the feature is missing (RDPMC of
VMware's pseudo counters without `monitor_control.pseudo_perfctr = TRUE`, AESENC on a CPU
without AES-NI). `run_in_child` forks, runs the code there and reports the signal that
killed the child instead of killing the box. Code is placed in an anonymous mapping with
PROT_EXEC (mmap module) and called through ctypes with the System V ABI; ctypes is imported
when the first code is mapped (a box off VMware calls none before its prompt).
"""

from __future__ import annotations

import mmap
import os
import signal
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import ctypes

CHILD_TIMEOUT_S = 5.0


class NativeCode:
    """Machine code mapped executable; `fn` is a ctypes function pointer to its start."""

    def __init__(self, code: bytes, restype: type[ctypes._SimpleCData[Any]] | None,
                 *argtypes: type[ctypes._SimpleCData[Any]]) -> None:  # fmt: skip
        import ctypes  # here: its import costs a cold boot that calls no machine code

        prot = mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC
        self._map = mmap.mmap(-1, max(len(code), mmap.PAGESIZE), prot=prot)
        self._map.write(code)
        address = ctypes.addressof(ctypes.c_char.from_buffer(self._map))
        self.fn = ctypes.CFUNCTYPE(restype, *argtypes)(address)


@dataclass(frozen=True)
class ChildResult:
    """What run_in_child's child reported, or why it did not (a signal, a timeout)."""

    values: tuple[int, ...]  # what the child reported (u64 each); () if it died
    signal: str | None = None  # e.g. "SIGILL" if the code faulted

    @property
    def ok(self) -> bool:
        return self.signal is None and bool(self.values)


def run_in_child(work: Callable[[], list[int]], timeout: float = CHILD_TIMEOUT_S) -> ChildResult:
    """Fork; the child runs `work()` and sends back its u64 results; a fault kills only it."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: no Python cleanup, no shared buffers flushed twice
        os.close(r)
        try:
            values = work()
            os.write(w, struct.pack(f"<{len(values)}Q", *(v & (2**64 - 1) for v in values)))
            os._exit(0)
        except BaseException:
            os._exit(1)
    os.close(w)
    deadline = time.monotonic() + timeout
    status = None
    while status is None:
        done, st = os.waitpid(pid, os.WNOHANG)
        if done:
            status = st
        elif time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(r)
            return ChildResult((), "timeout")
        else:
            time.sleep(0.005)
    data = b""
    while chunk := os.read(r, 4096):
        data += chunk
    os.close(r)
    if os.WIFSIGNALED(status):
        return ChildResult((), signal.Signals(os.WTERMSIG(status)).name)
    if os.WEXITSTATUS(status) != 0:
        return ChildResult((), f"exit {os.WEXITSTATUS(status)}")
    return ChildResult(struct.unpack(f"<{len(data) // 8}Q", data[: len(data) // 8 * 8]))


# uint64_t rdpmc(uint32_t ecx): mov ecx,edi; rdpmc; shl rdx,32; or rax,rdx; ret
RDPMC_CODE = bytes.fromhex("89f90f3348c1e2204809d0c3")
