"""RD-optimised choice over the paper schedule's per-lambda snapshots (the paper's Fig. 3b).

Each snapshot is one point (rate in bpp, distortion as MSE) measured on the held-out patches.
A snapshot is worth keeping only if no mix of two others does better at its rate: the chosen
ones are the points on the lower convex hull of the (rate, distortion) cloud, from the lowest
rate to the lowest distortion.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path


def lower_convex_hull(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points on the lower-left convex hull of (rate, distortion), by rate.

    Only the part where distortion falls as rate grows is kept: a point that costs more bits
    for no less distortion is never an RD-optimal choice.
    """
    order = sorted(range(len(points)), key=lambda i: (points[i][0], points[i][1]))
    hull: list[int] = []
    for i in order:
        while len(hull) >= 2:
            (x1, y1), (x2, y2) = points[hull[-2]], points[hull[-1]]
            x3, y3 = points[i]
            # drop the middle point unless it lies strictly below the chord from 1 to 3
            if (x2 - x1) * (y3 - y1) - (y2 - y1) * (x3 - x1) <= 0:
                hull.pop()
            else:
                break
        hull.append(i)
    keep = [hull[0]] if hull else []
    for i in hull[1:]:
        if points[i][1] < points[keep[-1]][1]:
            keep.append(i)
    return keep


def select_snapshots(run_dir: Path) -> dict:
    """Read RUN_DIR/snapshots.csv, write RUN_DIR/hull.json; returns its content."""
    run_dir = Path(run_dir)
    path = run_dir / "snapshots.csv"
    if not path.exists():
        raise FileNotFoundError(f"no snapshots.csv in {run_dir} (train with --preset paper)")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{path} has no snapshots yet")
    points = [(float(r["val_bpp"]), float(r["val_mse"])) for r in rows]
    chosen = set(lower_convex_hull(points))
    result = {
        "snapshots": [{"lambda": float(r["lambda"]), "step": int(r["step"]),
                       "val_bpp": float(r["val_bpp"]), "val_psnr": float(r["val_psnr"]),
                       "snapshot": str(run_dir / "snapshots" / r["snapshot"]),
                       "on_hull": i in chosen} for i, r in enumerate(rows)],
    }
    tmp = run_dir / "hull.json.tmp"
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(run_dir / "hull.json")
    return result
