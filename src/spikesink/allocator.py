"""glibc malloc settings for the workflow's jobs: keep freed memory for reuse instead of giving it
back to the kernel after every free.

PyTorch on CPU frees and allocates the same activation-sized blocks (~1-30 MB) every step. glibc
hands memory above its trim threshold back to the kernel, and every later allocation of it then
page-faults afresh. Fixing the mmap threshold at glibc's own dynamic ceiling (32 MiB on 64-bit) and
raising the trim threshold keeps those blocks in the heap: a Section 4 training step takes about
5 % less time (`benchmarks/bench_allocator.py`); larger blocks are still mapped and unmapped, so a
job's peak memory stays its peak working set plus at most TRIM_THRESHOLD of freed heap.

`SPIKESINK_MALLOC_TUNING=0` (or `false`, `no`, `off`) leaves glibc's defaults. Elsewhere than glibc (musl, macOS) this does
nothing.
"""

from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # DEFAULT_MMAP_THRESHOLD_MAX of 64-bit glibc
TRIM_THRESHOLD = 1 << 30
OPT_OUT = "SPIKESINK_MALLOC_TUNING"
OFF = ("0", "false", "no", "off")


def keep_freed_memory() -> bool:
    """Apply the settings above to this process; True when glibc took them."""
    if os.environ.get(OPT_OUT, "1").strip().lower() in OFF or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # setting either one also turns off glibc's dynamic mmap threshold, which is why both are set
    return mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
