"""The CSV log of a training run (codec or classifier head), shared by both trainers."""

from __future__ import annotations

import csv
from pathlib import Path


class RunLog:
    """RUN_DIR/log.csv with fixed columns; rows may leave columns empty."""

    def __init__(self, path: Path, fields: list[str], quiet: bool = False):
        self.path = Path(path)
        self.fields = fields
        self.quiet = quiet

    def append(self, row: dict) -> None:
        new = not self.path.exists()
        with open(self.path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self.fields, restval="", extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow(row)
        if not self.quiet:
            print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in row.items()), flush=True)

    def truncate_after(self, step: int) -> None:
        """Drop rows logged after `step`: a run resumed from that step logs them again."""
        if not self.path.exists():
            return
        with open(self.path, newline="") as f:
            rows = list(csv.DictReader(f))
        keep = [r for r in rows if int(r["step"]) <= step]
        if len(keep) != len(rows):
            with open(self.path, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=self.fields, restval="", extrasaction="ignore")
                w.writeheader()
                w.writerows(keep)
