"""Run-directory plumbing shared by the codec and classifier trainers: starting or resuming a
run, and its CSV log."""

from __future__ import annotations

import csv
import dataclasses
import os
import pickle
from pathlib import Path

import torch


def read_checkpoint(path: Path) -> dict:
    """A training checkpoint (codec or classifier) as saved by the trainers. Loaded with
    torch's weights_only unpickler, so a checkpoint from elsewhere cannot run code; a file that
    is not one raises ValueError with a one-line reason."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except OSError:
        if not path.is_file():
            raise
        raise ValueError(f"{path}: not a readable checkpoint (damaged or truncated)") from None
    except EOFError:
        raise ValueError(f"{path}: not a readable checkpoint (empty or truncated)") from None
    except pickle.UnpicklingError:  # garbage, or objects the safe unpickler refuses to build
        raise ValueError(f"{path}: not a readable checkpoint (not a PyTorch file, or one that "
                         "holds more than tensors and plain data)") from None
    except Exception as e:  # zip or torch format errors
        reason = (str(e).strip().split(". ") or [""])[0] or type(e).__name__
        raise ValueError(f"{path}: not a readable checkpoint ({reason})") from None
    if not isinstance(state, dict):
        raise ValueError(f"{path}: not a codedvision checkpoint")
    return state


class RunLog:
    """RUN_DIR/log.csv with fixed columns; rows may leave columns empty."""

    def __init__(self, path: Path, fields: list[str], quiet: bool = False):
        self.path = Path(path)
        self.fields = fields
        self.quiet = quiet

    def append(self, row: dict) -> None:
        new = not self.path.exists()
        if not new and self._header() != self.fields:  # a log begun before columns were added
            self._rewrite(self._rows())
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
        rows = self._rows()
        keep = [r for r in rows if int(r["step"]) <= step]
        if len(keep) != len(rows):
            self._rewrite(keep)

    def _header(self) -> list[str]:
        with open(self.path, newline="") as f:
            return next(csv.reader(f), [])

    def _rows(self) -> list[dict]:
        with open(self.path, newline="") as f:
            return list(csv.DictReader(f))

    def _rewrite(self, rows: list[dict]) -> None:
        """The log as `rows` under the current columns (ones it lacks stay empty), atomically."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self.fields, restval="", extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)
        os.replace(tmp, self.path)


def save_atomic(obj: dict, path: Path) -> None:
    """torch.save through a temporary file and a rename: never a half-written checkpoint."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def open_run(run_dir: Path, cfg, resume: bool, steps: int | None):
    """Start or resume the run in run_dir; returns (config, checkpoint state or None).

    A resumed run takes its config from the checkpoint (type(cfg).from_dict); a new run refuses
    to clobber an existing checkpoint. `steps` may extend or shorten either run's schedule.
    """
    ckpt_path = Path(run_dir) / "checkpoint.pt"
    state = None
    if resume:
        if not ckpt_path.exists():
            raise FileNotFoundError(f"--resume: no checkpoint at {ckpt_path}")
        state = read_checkpoint(ckpt_path)
        cfg = type(cfg).from_dict(state["train_config"])
    elif ckpt_path.exists():
        raise FileExistsError(f"{ckpt_path} exists: pass --resume to continue that run")
    if steps is not None:
        cfg = dataclasses.replace(cfg, steps=steps)
    return cfg, state
