"""Atomic writes: a failed writer leaves nothing, and a killed writer's staging folder is swept."""

import os
import signal
import subprocess
import sys

import pytest
from spikesink import io


def test_a_failed_write_leaves_neither_target_nor_staging(tmp_path):
    target = tmp_path / "block_stats.json"
    with pytest.raises(RuntimeError), io.atomic_path(target) as staged:
        staged.write_text("half")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_a_killed_writers_staging_is_removed_by_the_next_write(tmp_path):
    """SIGKILL skips `finally`: the rerun of the same job must sweep what the killed one staged."""
    target = tmp_path / "block_stats.npz"
    script = (
        "import os, signal, sys\n"
        "from spikesink import io\n"
        "with io.atomic_path(sys.argv[1]) as staged:\n"
        "    staged.write_bytes(b'half-written')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    killed = subprocess.run([sys.executable, "-c", script, str(target)], check=False)
    assert killed.returncode == -signal.SIGKILL
    stale = [p.name for p in tmp_path.iterdir()]
    assert len(stale) == 1 and stale[0].startswith(".block_stats.npz.") and not target.exists()

    io.write_npz(target, x=[1, 2, 3])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["block_stats.npz"]


def test_sweeping_never_touches_another_targets_staging(tmp_path):
    neighbour = tmp_path / ".block_stats.npz.gz.abcd1234.tmp"
    neighbour.mkdir()
    io.write_text(tmp_path / "block_stats.npz", "x")
    assert neighbour.exists() and os.path.exists(tmp_path / "block_stats.npz")
