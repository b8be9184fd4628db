"""Rate-distortion plots (PNG), drawn with matplotlib's Agg canvas (no display, no pyplot state)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

METRIC_LABELS = {"psnr": "PSNR RGB (dB)", "ms_ssim_db": "MS-SSIM RGB (dB)"}


def _usable(xs: Sequence, ys: Sequence) -> tuple[list[float], list[float]]:
    pts = [
        (x, y)
        for x, y in zip(xs, ys)
        if x is not None and y is not None and math.isfinite(x) and math.isfinite(y)
    ]
    pts.sort()
    return [p[0] for p in pts], [p[1] for p in pts]


def plot_rd(
    path: Path,
    metric: str,
    curves: Sequence[dict],
    references: Sequence[dict] = (),
    title: str = "",
) -> Path:
    """Draw bpp against quality and save it as a PNG.

    curves: our codecs, {"label", "bpp", "values"} with one entry per setting (solid lines).
    references: published curves in the same form, drawn dashed; only the part inside our bpp
    range is shown, so that a 5 bpp reference point does not squash our curves.
    metric: "psnr" or "ms_ssim_db", for the axis label.
    """
    # Wide enough for the legend to sit beside the axes: with a dozen published curves it
    # would otherwise cover ours.
    fig = Figure(figsize=(10, 5.5), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ours = [(c["label"], *_usable(c["bpp"], c["values"])) for c in curves]
    ours = [c for c in ours if c[1]]
    visible_y: list[float] = []
    for label, x, y in ours:
        ax.plot(x, y, "o-", label=label, linewidth=1.6, markersize=4)
        visible_y += y
    x_max = max((max(x) for _, x, _ in ours), default=None)
    # Published curves take their colours from another palette, so that none is mistaken for
    # one of ours of the same colour.
    palette = colormaps["tab20b"]
    for i, ref in enumerate(references):
        x, y = _usable(ref["bpp"], ref["values"])
        if not x:
            continue
        ax.plot(x, y, "--", color=palette(i % palette.N), label=f"{ref['label']} (published)",
                linewidth=1.0, alpha=0.8)
        visible_y += [v for u, v in zip(x, y) if x_max is None or u <= x_max * 1.08]
    if x_max is not None:
        ax.set_xlim(0, x_max * 1.08)
    if visible_y:
        ax.set_ylim(min(visible_y) - 0.5, max(visible_y) + 0.5)
    if not ours and not references:
        ax.text(0.5, 0.5, f"no {METRIC_LABELS.get(metric, metric)} values to plot\n"
                "(MS-SSIM needs images with both sides > 160 px)",
                ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("rate (bpp)")
    ax.set_ylabel(METRIC_LABELS.get(metric, metric))
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if ours or references:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path
