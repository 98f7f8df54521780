"""Peak extra RSS of one call, measured in a fresh process (shared by the benchmarks).

`peak_extra(fn)` runs one warm-up call, hands freed heap back to the OS (malloc_trim; run the
process with MALLOC_MMAP_THRESHOLD_ fixed so that large freed buffers leave RSS at once), resets
the kernel's peak-RSS mark (/proc/self/clear_refs, 5) and returns the peak RSS of one more call
minus the RSS just before it. tracemalloc would not see torch's allocations. Where clear_refs is
not writable it falls back to ru_maxrss (a lower bound: the load's own peak may hide the call's).
`run_child(cmd)` starts such a process with that environment and reads its JSON line.
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import resource
import subprocess
from pathlib import Path


def _rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _hwm_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def peak_extra(fn) -> dict:
    fn()  # warm-up: one-off allocations, lazy inits
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    exact = True
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        exact = False
    before = _rss_bytes()
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    result = fn()
    del result
    peak = _hwm_bytes() if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"extra": peak - before, "rss_before": before, "peak": peak, "exact": exact, "peak_before": peak_before}


def run_child(cmd: list[str]) -> dict:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")  # fixed: freed large buffers leave RSS
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if proc.returncode:
        raise RuntimeError(f"memory child failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
