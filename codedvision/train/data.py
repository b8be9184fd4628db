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


def load_caltech_train(root: Path, min_side: int, scale: float = 0.75,
                       limit: int | None = None) -> list[np.ndarray]:
    """Caltech-101 train-split photos, downscaled by `scale` (hides JPEG artefacts); photos whose
    shorter side would fall under min_side are dropped. The val split is never read."""
    rows = list(csv.DictReader(open(Path(root) / "labels.csv")))
    rows = [r for r in rows if r["split"] == "train"]
    if limit:
        rows = rows[:limit]
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
