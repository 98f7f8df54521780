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


def test_outputs_written_together_land_together_or_not_at_all(tmp_path):
    first, second = tmp_path / "sinks.npz", tmp_path / "block_stats.json"
    with pytest.raises(RuntimeError), io.outputs_together():
        io.write_text(first, "done")
        assert not first.exists(), "an output landed before the job finished"
        raise RuntimeError("killed between two outputs")
    assert list(tmp_path.iterdir()) == []

    with io.outputs_together():
        io.write_text(first, "a")
        with io.outputs_together():  # nested blocks: the outermost one decides
            io.write_text(second, "b")
        assert not second.exists()
    assert first.read_text() == "a" and second.read_text() == "b"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["block_stats.json", "sinks.npz"]
