"""spikesink.allocator: glibc keeps a freed 8 MiB block in the heap once tuned, and gives it back
to the kernel at once under its defaults (the block is mapped on its own and unmapped at free)."""

import os
import subprocess
import sys

import pytest

CHILD = """
import ctypes, os, sys
from spikesink.allocator import keep_freed_memory
tuned = keep_freed_memory()
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, (ctypes.c_size_t,)
libc.free.argtypes = (ctypes.c_void_p,)
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
size = 8 << 20
block = libc.malloc(size)
ctypes.memset(block, 1, size)  # touch every page
held = rss()
libc.free(block)
print(tuned, (held - rss()) / size)
"""


def run_child(opt_out: str | None) -> tuple[bool, float]:
    env = {"SPIKESINK_MALLOC_TUNING": opt_out} if opt_out is not None else {}
    out = subprocess.run(
        [sys.executable, "-c", CHILD], env={**os.environ, **env}, capture_output=True, text=True, check=True
    ).stdout.split()
    return out[0] == "True", float(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_tuned_glibc_keeps_a_freed_block_and_the_opt_out_leaves_the_defaults():
    tuned, given_back = run_child(None)
    assert tuned and given_back < 0.1  # the freed 8 MiB stay resident, ready for the next step
    for off in ("0", "off", "False"):
        default, given_back = run_child(off)
        assert not default and given_back > 0.9  # unmapped at free: the next allocation faults afresh
