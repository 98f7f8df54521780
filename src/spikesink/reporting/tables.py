"""Paper-style tables: one DataFrame written as CSV + Markdown + LaTeX, atomically."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from spikesink.io import output_stem, with_extension, write_text


def _format(value) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "-"
    if isinstance(value, float):
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.3g}"
        return f"{value:,.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    if isinstance(value, (list, tuple, np.ndarray)):  # a list column read back from parquet is an array
        return ", ".join(_format(v) for v in value) if len(value) else "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def to_markdown(frame: pd.DataFrame) -> str:
    """A GitHub table with no extra dependency (pandas' to_markdown needs tabulate)."""
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    rows = [
        "| " + " | ".join(_format(v).replace("|", "\\|") for v in row) + " |" for row in frame.itertuples(index=False)
    ]
    return "\n".join([header, rule, *rows]) + "\n"


def to_latex(frame: pd.DataFrame, caption: str = "", label: str = "") -> str:
    def esc(text: str) -> str:
        for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"), ("$", r"\$")):
            text = text.replace(a, b)
        return text

    lines = [
        r"\begin{table}[t]",
        r"\centering",
        r"\small",
        r"\begin{tabular}{" + "l" * len(frame.columns) + "}",
        r"\toprule",
    ]
    lines.append(" & ".join(esc(str(c)) for c in frame.columns) + r" \\")
    lines.append(r"\midrule")
    for row in frame.itertuples(index=False):
        lines.append(" & ".join(esc(_format(v)) for v in row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    if caption:
        lines.append(r"\caption{" + esc(caption) + "}")
    if label:
        lines.append(r"\label{" + label + "}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def write_table(
    frame: pd.DataFrame, stem: str | os.PathLike, caption: str = "", formats=("csv", "md", "tex"), label: str = ""
) -> list[Path]:
    """Write `stem`.csv / .md / .tex. CSV keeps full precision; md and tex are formatted. The LaTeX
    label is tab:<label> (default: the file's stem)."""
    stem = output_stem(stem)
    written = []
    if "csv" in formats:
        csv_frame = frame.copy()
        for column in csv_frame.columns:
            if csv_frame[column].map(lambda v: isinstance(v, (list, tuple, np.ndarray))).any():
                csv_frame[column] = csv_frame[column].map(
                    lambda v: " ".join(map(str, v)) if isinstance(v, (list, tuple, np.ndarray)) else v
                )
        write_text(with_extension(stem, ".csv"), csv_frame.to_csv(index=False, lineterminator="\n"))
        written.append(with_extension(stem, ".csv"))
    if "md" in formats:
        text = (f"{caption}\n\n" if caption else "") + to_markdown(frame)
        write_text(with_extension(stem, ".md"), text)
        written.append(with_extension(stem, ".md"))
    if "tex" in formats:
        write_text(with_extension(stem, ".tex"), to_latex(frame, caption, label=f"tab:{label or stem.name}"))
        written.append(with_extension(stem, ".tex"))
    return written
