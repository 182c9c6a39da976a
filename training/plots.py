"""The pictures ``lineqa evaluate`` writes: PR curves per class and the confusion matrix (PNG, matplotlib's
Agg canvas, no display and no font download)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from lineqa.training.metrics import ClassCurve


def plot_pr_curves(curves: list[ClassCurve], classes: tuple[str, ...], out_png: Path, *, title: str) -> Path:
    """Precision against recall at IoU 0.5, one line per class with its AP50, and the mean in the title."""
    figure = Figure(figsize=(7, 5.5), dpi=110)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for name, curve in zip(classes, curves, strict=True):
        if curve.truth_count == 0:
            continue
        recall = np.concatenate([[0.0], curve.recall])
        precision = np.concatenate([[1.0], np.maximum.accumulate(curve.precision[::-1])[::-1]])
        axes.plot(recall, precision, linewidth=1.4, label=f"{name} {curve.ap[0]:.3f}")
    aps = [c.ap[0] for c in curves if c.truth_count > 0]
    axes.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision")
    axes.set_title(f"{title}\nmAP50 {np.mean(aps):.3f}" if aps else title)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower left", fontsize=8)
    figure.tight_layout()
    figure.savefig(out_png)
    return out_png


def plot_confusion(matrix: np.ndarray, classes: tuple[str, ...], out_png: Path, *, title: str) -> Path:
    """Counts per (predicted, true) pair, columns normalised for the colour, raw counts printed."""
    labels = [*classes, "background"]
    figure = Figure(figsize=(1.2 + 0.8 * len(labels), 1.0 + 0.7 * len(labels)), dpi=110)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    shares = matrix / np.maximum(matrix.sum(axis=0, keepdims=True), 1)
    axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for (row, column), count in np.ndenumerate(matrix):
        if count:
            colour = "white" if shares[row, column] > 0.5 else "black"
            axes.text(column, row, str(count), ha="center", va="center", fontsize=8, color=colour)
    axes.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
    axes.set_yticks(range(len(labels)), labels, fontsize=8)
    axes.set(xlabel="true", ylabel="predicted", title=title)
    figure.tight_layout()
    figure.savefig(out_png)
    return out_png


def plot_operating_curve(
    thresholds: np.ndarray,
    escapes: np.ndarray,
    rejects: np.ndarray,
    operating_point: float,
    out_png: Path,
    *,
    title: str,
) -> Path:
    """Escape and false-reject rates against the FAIL threshold, with the recipe's threshold marked."""
    figure = Figure(figsize=(7, 4.5), dpi=110)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.plot(thresholds, escapes, label="escape rate (defective part passed)", color="tab:red")
    if not np.isnan(rejects).all():
        axes.plot(thresholds, rejects, label="false-reject rate (good part failed)", color="tab:blue")
    axes.axvline(operating_point, color="black", linestyle="--", linewidth=1, label=f"recipe: {operating_point:g}")
    axes.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="FAIL at any detection with confidence ≥", ylabel="share of parts")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(loc="center right", fontsize=8)
    figure.tight_layout()
    figure.savefig(out_png)
    return out_png
