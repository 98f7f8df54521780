"""The figure style: seaborn's paper / whitegrid theme written out, so no figure job imports seaborn."""

import subprocess
import sys

import matplotlib
import pytest

matplotlib.use("Agg")


def test_the_written_out_theme_equals_seaborns():
    sns = pytest.importorskip("seaborn")
    import matplotlib.pyplot as plt

    from spikesink.reporting.plotting import SEABORN_PAPER_WHITEGRID

    with plt.rc_context():
        sns.set_theme(context="paper", style="whitegrid", font_scale=1.1)
        expected = {key: plt.rcParams[key] for key in SEABORN_PAPER_WHITEGRID}
    with plt.rc_context(SEABORN_PAPER_WHITEGRID):
        ours = {key: plt.rcParams[key] for key in SEABORN_PAPER_WHITEGRID}
    for key, value in expected.items():
        if isinstance(value, float):
            assert ours[key] == pytest.approx(value), key
        elif key == "axes.prop_cycle":
            colors = [matplotlib.colors.to_hex(c["color"]) for c in ours[key]]
            assert colors == [matplotlib.colors.to_hex(c["color"]) for c in value]
        else:
            assert str(ours[key]) == str(value), key


def test_a_figure_job_does_not_import_seaborn():
    code = (
        "import sys\n"
        "from spikesink.reporting.plotting import apply_style, placeholder_figure\n"
        "import spikesink.analyses.lifecycle.figure\n"
        "apply_style()\n"
        "print('seaborn' in sys.modules, 'scipy.stats' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]
