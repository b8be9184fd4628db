"""Training data: lossless patches (and optionally downscaled Caltech-101 train photos), held in
memory as uint8, with the paper's augmentation (random crops, flips, 90-degree rotations,
optional down-scaling). Kodak is never read here.
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def _load_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def load_patches(root: Path, min_side: int) -> list[np.ndarray]:
    """All PNG patches under root/patches (the lossless training crops)."""
    files = sorted((Path(root) / "patches").glob("*.png"))
    if not files:
        raise FileNotFoundError(f"no training patches in {root}/patches")
    out = [_load_rgb(f) for f in files]
    return [a for a in out if min(a.shape[:2]) >= min_side]


# Held-out Caltech-101 train photos (`caltech_holdout`) must fill a square this wide once
# downscaled, whatever the run's patch size, so that every run holds out the same photos.
CALTECH_HOLDOUT_SIDE = 192


def caltech_train_split(root: Path, scale: float, holdout: int = 0
                        ) -> tuple[list[dict], list[dict]]:
    """The rows of Caltech-101's train split in labels.csv, as (trained on, held out): the
    `holdout` held-out photos are spread evenly over the photos whose shorter side, scaled by
    `scale`, is at least CALTECH_HOLDOUT_SIDE (the classes come in order, so every part of the
    list gives some). The val split is never read."""
    with open(Path(root) / "labels.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == "train"]
    if not holdout:
        return rows, []
    big = []
    for i, r in enumerate(rows):
        with Image.open(Path(root) / r["relative_path"]) as im:  # reads the header only
            if min(im.size) * scale >= CALTECH_HOLDOUT_SIDE:
                big.append(i)
    if holdout > len(big):
        raise ValueError(f"caltech_holdout {holdout}: only {len(big)} Caltech-101 train photos "
                         f"are large enough")
    picked = {big[int((j + 0.5) * len(big) / holdout)] for j in range(holdout)}
    return ([r for i, r in enumerate(rows) if i not in picked],
            [r for i, r in enumerate(rows) if i in picked])


def _load_scaled(root: Path, rows: list[dict], scale: float, min_side: int) -> list[np.ndarray]:
    out = []
    for r in rows:
        with Image.open(Path(root) / r["relative_path"]) as im:
            im = im.convert("RGB")
            w, h = im.size
            size = (round(w * scale), round(h * scale))
            if min(size) < min_side:
                continue
            out.append(np.asarray(im.resize(size, Image.Resampling.LANCZOS)))
    return out


def load_caltech_train(root: Path, min_side: int, scale: float = 0.75,
                       limit: int | None = None, holdout: int = 0) -> list[np.ndarray]:
    """Caltech-101 train-split photos, downscaled by `scale` (hides JPEG artefacts), except the
    `holdout` held-out ones (caltech_train_split); photos whose shorter side would fall under
    min_side are dropped. The val split is never read."""
    rows = caltech_train_split(root, scale, holdout)[0]
    return _load_scaled(root, rows[:limit] if limit else rows, scale, min_side)


def load_caltech_held_out(root: Path, scale: float, holdout: int) -> list[np.ndarray]:
    """The `holdout` held-out Caltech-101 train photos of a run with caltech_holdout =
    `holdout` (never trained on), downscaled by `scale` like the trained ones."""
    rows = caltech_train_split(root, scale, holdout)[1]
    return _load_scaled(root, rows, scale, CALTECH_HOLDOUT_SIDE)


def dataset_fingerprint(images: list[np.ndarray]) -> str:
    h = hashlib.sha256()
    for a in images:
        h.update(np.ascontiguousarray(a[::17, ::17]).tobytes())
    return h.hexdigest()[:16]


class PatchSampler:
    """Draws augmented random crops (B,3,P,P) float in [0,1] from in-memory images.

    Every draw is a pure function of the generator state, so a resumed run that restores the
    generator continues exactly.
    """

    def __init__(self, images: list[np.ndarray], patch: int, scale_aug: bool = False):
        self.images = [torch.from_numpy(a.copy()).permute(2, 0, 1).contiguous() for a in images]
        self.patch = patch
        self.scale_aug = scale_aug

    def sample(self, batch: int, gen: torch.Generator) -> torch.Tensor:
        p = self.patch
        out = torch.empty(batch, 3, p, p, dtype=torch.uint8)
        idx = torch.randint(len(self.images), (batch,), generator=gen)
        for b in range(batch):
            img = self.images[int(idx[b])]
            h, w = img.shape[1:]
            src = p
            if self.scale_aug:
                # crop a larger window and shrink it: the paper's scaling augmentation
                f = float(torch.empty(1).uniform_(1.0, 1.5, generator=gen))
                src = min(int(p * f), h, w)
            y = int(torch.randint(h - src + 1, (1,), generator=gen))
            x = int(torch.randint(w - src + 1, (1,), generator=gen))
            crop = img[:, y : y + src, x : x + src]
            if src != p:
                crop = torch.nn.functional.interpolate(
                    crop[None].float(), size=(p, p), mode="area"
                )[0].round().clamp(0, 255).to(torch.uint8)
            k = int(torch.randint(4, (1,), generator=gen))
            if k:
                crop = torch.rot90(crop, k, (1, 2))
            if int(torch.randint(2, (1,), generator=gen)):
                crop = crop.flip(2)
            out[b] = crop
        return out.float().div_(255.0)
