"""Keep freed host memory in the training process (`train.keep_freed_memory`, default on).

XLA's CPU runtime mallocs every step's temporary buffers and frees them when the step ends. glibc hands
blocks of ≥ 128 KiB (and whole per-thread arenas) back to the kernel on free, so the next step page-faults
every page of them again: on the project's 2-core machine that kernel time was 27–42 % of the parity
preset's DeltaNet, diag and S5 steps (getrusage system time). `keep_freed_memory()`
tells glibc (mallopt) to serve every block from one arena that it never shrinks, so a step reuses the
pages of the step before. The process then keeps its peak heap until it exits.

It changes the allocator of the whole process, so train() calls it before JAX starts its backend (the
runtime's threads pick their arena at their first malloc). Elsewhere (e.g. in a notebook), call it first.
No effect outside Linux / glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

# mallopt parameters (glibc malloc.h)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8
KEEP_BYTES = 1 << 30  # blocks up to 1 GiB come from the heap; up to 1 GiB of free heap is kept

_applied = False


def keep_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse (module docstring); True where it applied (Linux / glibc).
    Calling it again does nothing more."""
    global _applied
    if _applied:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    ok = all(mallopt(param, value) == 1 for param, value in (
        (M_ARENA_MAX, 1), (M_MMAP_THRESHOLD, KEEP_BYTES), (M_TRIM_THRESHOLD, KEEP_BYTES)))
    _applied = ok
    return ok
