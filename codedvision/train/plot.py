"""Learning-curve plot of a training run's log.csv (loss, bpp, PSNR; validation per quality,
and its MS-SSIM when the log has it)."""

from __future__ import annotations

import csv
from pathlib import Path


def plot_log(run_dir: Path, out: Path | None = None) -> Path:
    """Write RUN_DIR/log.png (or `out`) from RUN_DIR/log.csv; returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    with open(run_dir / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    out = Path(out) if out else run_dir / "log.png"
    step = [int(r["step"]) for r in rows]
    panels = [("loss", "training loss"), ("bpp", "rate (estimated bpp)"), ("psnr", "PSNR (dB)")]
    if any(r.get("val_msssim_db_mid") for r in rows):
        panels.append(("msssim_db", "held-out MS-SSIM (dB)"))
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4))
    for ax, (key, label) in zip(axes, panels):
        if key in rows[0]:
            ax.plot(step, [float(r[key]) for r in rows], lw=0.8, alpha=0.6, label="train batches")
        if key != "loss":
            for q in ("low", "mid", "high"):
                pts = [(int(r["step"]), float(r[f"val_{key}_{q}"])) for r in rows
                       if r.get(f"val_{key}_{q}")]
                if pts:
                    ax.plot(*zip(*pts), marker="o", ms=3, label=f"val, {q} quality")
        ax.set_xlabel("step")
        ax.set_title(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if all(float(r["loss"]) > 0 for r in rows):  # decoder-only runs log -PSNR (negative)
        axes[0].set_yscale("log")
    fig.tight_layout()
    tmp = out.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(out)
    return out
