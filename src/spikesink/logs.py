"""Logging for rule scripts: everything to the rule's log file, warnings and progress to the terminal."""

from __future__ import annotations

import atexit
import logging
import os
import resource
import sys
import time

from spikesink.allocator import keep_freed_memory


def setup_logging(log_path: str | os.PathLike | None = None, level: int = logging.INFO) -> logging.Logger:
    root = logging.getLogger()
    root.handlers.clear()
    root.setLevel(level)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    if log_path:
        os.makedirs(os.path.dirname(os.fspath(log_path)) or ".", exist_ok=True)
        file_handler = logging.FileHandler(log_path, mode="w", encoding="utf-8")
        file_handler.setFormatter(fmt)
        root.addHandler(file_handler)
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.WARNING if log_path else level)
    console.setFormatter(fmt)
    root.addHandler(console)
    logging.captureWarnings(True)
    return logging.getLogger("spikesink")


def snakemake_logger(snakemake) -> logging.Logger:
    """Call first in every rule script: logs go to `log:`, torch uses the rule's threads and glibc
    keeps freed memory for reuse (spikesink.allocator).

    torch is not imported here (figure and table scripts must not pay for it): the thread
    count goes to the OpenMP/MKL environment, which torch reads when a later import loads it.
    """
    threads = str(max(1, int(snakemake.threads)))
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = threads
    if "torch" in sys.modules:  # already imported (e.g. by a caller): set it directly
        sys.modules["torch"].set_num_threads(int(threads))
    tuned = keep_freed_memory()
    logger = setup_logging(snakemake.log[0] if len(snakemake.log) else None)
    logger.info(
        "rule %s, threads %s, wildcards %s, malloc tuned %s",
        snakemake.rule,
        snakemake.threads,
        dict(snakemake.wildcards),
        tuned,
    )
    _log_uncaught(logger)
    atexit.register(_log_usage, logger)
    return logger


def process_usage() -> dict:
    """This process's wall seconds since it started, CPU seconds (user + system, its children's
    included: pip, a solver) and peak resident memory."""
    import psutil  # a Snakemake dependency

    process = psutil.Process()
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "wall_s": time.time() - process.create_time(),
        "cpu_s": own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime,
        "peak_rss_mb": max(own.ru_maxrss, children.ru_maxrss) / 1024,  # kB on Linux
    }


USAGE_LINE = "job usage: wall {wall_s:.2f} s, cpu {cpu_s:.2f} s, peak rss {peak_rss_mb:.0f} MB"


def _log_usage(logger: logging.Logger) -> None:
    """The job's own cost, last line of its log (benchmarks/default_run.py adds them up): exact,
    unlike Snakemake's `benchmark:` CPU, which samples the process tree and misses short jobs."""
    logger.info(USAGE_LINE.format(**process_usage()))


def _log_uncaught(logger: logging.Logger) -> None:
    """A job that fails writes its traceback to the rule's log (and, through the console handler,
    to the terminal) instead of to the terminal only."""

    def hook(kind, value, traceback):
        logger.error("the job failed", exc_info=(kind, value, traceback))

    sys.excepthook = hook


def append_usage(log_path: str | os.PathLike) -> None:
    """The usage line appended to a log another logger wrote (the trainer's own)."""
    with open(log_path, "a", encoding="utf-8") as handle:
        handle.write(f"{time.strftime('%H:%M:%S')} INFO spikesink: {USAGE_LINE.format(**process_usage())}\n")
