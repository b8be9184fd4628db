"""Labelled image sets for the classifier heads, their augmentation, and the input transforms
that define each baseline.

A data set is either
- a labels CSV with columns relative_path,label,split (split "train" or "val"; other splits are
  ignored), paths relative to the data folder; the class order is the folder's classes.txt
  (label index = line number) when it exists, else the sorted labels. Caltech-101 in
  ../shared/data/caltech101 is one: `load_dataset(that folder)` finds its labels.csv.
- a folder per class (DIR/<class>/*.jpg); with DIR/train/<class>/ and DIR/val/<class>/ the split
  is given, otherwise every 5th file of each class (in name order) is held out for validation.

Images are read lazily (the OS caches the files), through the same conversion as the codec
(`to_rgb8`: EXIF orientation, grayscale/palette/alpha/16-bit to 8-bit RGB).

Baselines are input transforms (`degrade`): "none" (uncompressed RGB), "jpeg" (JPEG-compressed
and decoded at a quality) and "codec" (passed through this codec's forward net, quantizer and
backward net at a quality: the pixels `Codec.decode` would give, without the entropy coding,
which is lossless). The compressed-domain path itself is `quantized_fmaps`.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .. import coder
from ..config import quality_to_position
from ..images import to_rgb8

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm",
                  ".gif"}
DEGRADATIONS = ("none", "jpeg", "codec")
RESAMPLE = Image.Resampling.BICUBIC


@dataclass
class Dataset:
    root: Path
    classes: list[str]
    train: list[tuple[Path, int]]
    val: list[tuple[Path, int]]
    source: str  # "csv:<path>" or "folders"

    def describe(self) -> str:
        return (f"{len(self.classes)} classes, {len(self.train)} train / {len(self.val)} val "
                f"images ({self.source})")


def load_dataset(data_dir, labels=None, val_every: int = 5) -> Dataset:
    """Load a labels CSV (`labels`, or DATA_DIR/labels.csv when it exists) or a folder per class."""
    root = Path(data_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such data folder")
    if labels is None and (root / "labels.csv").is_file():
        labels = root / "labels.csv"
    ds = _from_csv(root, Path(labels)) if labels is not None else _from_folders(root, val_every)
    if len(ds.classes) < 2:
        raise ValueError(f"{root}: need at least 2 classes, found {len(ds.classes)}")
    if not ds.train:
        raise ValueError(f"{root}: no training images")
    if not ds.val:
        raise ValueError(f"{root}: no validation images (split 'val')")
    missing = [p for p, _ in ds.train + ds.val if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} listed image(s) missing, e.g. {missing[0]}")
    return ds


def _from_csv(root: Path, labels: Path) -> Dataset:
    try:
        with open(labels, newline="") as f:
            rows = list(csv.DictReader(f))
    except FileNotFoundError:
        raise FileNotFoundError(f"{labels}: no such labels file") from None
    need = {"relative_path", "label", "split"}
    if not rows or not need <= set(rows[0]):
        raise ValueError(f"{labels}: expected a CSV with columns relative_path,label,split")
    names_file = root / "classes.txt"
    if names_file.is_file():
        classes = [ln.strip() for ln in names_file.read_text().splitlines() if ln.strip()]
        unknown = sorted({r["label"] for r in rows} - set(classes))
        if unknown:
            raise ValueError(f"{labels}: label {unknown[0]!r} is not in {names_file}")
    else:
        classes = sorted({r["label"] for r in rows})
    index = {c: i for i, c in enumerate(classes)}
    split = {"train": [], "val": []}
    for r in rows:
        if r["split"] in split:
            split[r["split"]].append((root / r["relative_path"], index[r["label"]]))
    return Dataset(root, classes, split["train"], split["val"], f"csv:{labels}")


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _from_folders(root: Path, val_every: int) -> Dataset:
    if (root / "train").is_dir() and (root / "val").is_dir():
        classes = [d.name for d in _class_dirs(root / "train")]
        index = {c: i for i, c in enumerate(classes)}
        parts = {}
        for name in ("train", "val"):
            parts[name] = []
            for d in _class_dirs(root / name):
                if d.name not in index:
                    raise ValueError(f"{d}: class {d.name!r} has no train folder")
                parts[name] += [(p, index[d.name]) for p in _images_in(d)]
        return Dataset(root, classes, parts["train"], parts["val"], "folders train/ val/")
    classes = [d.name for d in _class_dirs(root) if _images_in(d)]
    train, val = [], []
    for i, c in enumerate(classes):
        for j, p in enumerate(_images_in(root / c)):
            (val if j % val_every == val_every - 1 else train).append((p, i))
    return Dataset(root, classes, train, val, f"folders, every {val_every}th image held out")


# -- images --------------------------------------------------------------------------------------

def load_rgb(path) -> Image.Image:
    return to_rgb8(path)[0]


def resize_shorter(image: Image.Image, side: int | None) -> Image.Image:
    """Scale so that the shorter side is `side` px (None or already there: unchanged)."""
    w, h = image.size
    if side is None or min(w, h) == side:
        return image
    s = side / min(w, h)
    return image.resize((max(1, round(w * s)), max(1, round(h * s))), RESAMPLE)


def to_uint8_tensor(image: Image.Image) -> torch.Tensor:
    """(3,H,W) uint8."""
    return torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1).contiguous()


def pad_to(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Edge-replicate (B,3,H,W) up to multiples of `multiple`, as the codec pads."""
    ph, pw = -x.shape[2] % multiple, -x.shape[3] % multiple
    return F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x


def jpeg_roundtrip(image: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=int(min(max(quality, 1), 100)))
    buf.seek(0)
    with Image.open(buf) as im:
        return im.convert("RGB")


# -- the codec's arithmetic, batched with a quality per image ------------------------------------

def gains(codec, qualities: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Gain and inverse gain (B,M,1,1) for integer qualities (B,), as the codec computes them."""
    k = len(codec.cfg.lambdas)
    pos = torch.tensor([quality_to_position(int(q), k) for q in qualities])
    with torch.no_grad():
        return codec.model.gains(pos)


@torch.no_grad()
def quantized_fmaps(codec, y: torch.Tensor, qualities: torch.Tensor) -> torch.Tensor:
    """What `Codec.fmaps` returns for forward-net output y: round(y * gain) (mean-scale
    models: around the predicted means, corrected by a checkerboard context if the codec has
    one), clamped to the coder's range, times the inverse gain."""
    gain, inv_gain = gains(codec, qualities)
    return codec.model.quantize(y * gain, coder.VALUE_LIMIT) * inv_gain


@torch.no_grad()
def codec_roundtrip(codec, x: torch.Tensor, qualities: torch.Tensor) -> torch.Tensor:
    """The pixels `Codec.decode` gives for images x (B,3,H,W) in [0,1], H and W multiples of the
    codec stride, at per-image qualities; 8-bit levels like a decoded file."""
    x_hat = codec.synthesis(quantized_fmaps(codec, codec.analysis(x), qualities))
    return (x_hat.clamp(0, 1) * 255).round() / 255


class CropSampler:
    """Random training crops (B,3,P,P) uint8 with labels: each image's shorter side is scaled to
    a random size in `resize` (inclusive), then a random PxP crop, flipped half the time; with
    degrade="jpeg" the scaled image is JPEG round-tripped first at a quality drawn from
    `quality_range`. Every draw comes from the generator, so a resumed run continues exactly."""

    def __init__(self, items: list[tuple[Path, int]], crop: int, resize: tuple[int, int],
                 degrade: str = "none", quality_range: tuple[int, int] = (0, 100)):
        if resize[0] < crop:
            raise ValueError(f"resize range {resize} must not go below the crop size {crop}")
        self.items, self.crop, self.resize = items, crop, resize
        self.degrade, self.quality_range = degrade, quality_range

    def sample(self, batch: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.crop
        out = torch.empty(batch, 3, p, p, dtype=torch.uint8)
        labels = torch.empty(batch, dtype=torch.long)
        idx = torch.randint(len(self.items), (batch,), generator=gen)
        for b in range(batch):
            path, label = self.items[int(idx[b])]
            side = int(torch.randint(self.resize[0], self.resize[1] + 1, (1,), generator=gen))
            image = resize_shorter(load_rgb(path), side)
            if self.degrade == "jpeg":
                lo, hi = self.quality_range
                image = jpeg_roundtrip(image, int(torch.randint(lo, hi + 1, (1,), generator=gen)))
            w, h = image.size
            y = int(torch.randint(h - p + 1, (1,), generator=gen))
            x = int(torch.randint(w - p + 1, (1,), generator=gen))
            t = to_uint8_tensor(image)[:, y : y + p, x : x + p]
            if int(torch.randint(2, (1,), generator=gen)):
                t = t.flip(2)
            out[b], labels[b] = t, label
        return out, labels


@torch.no_grad()
def picture_fmaps(forward_net, images: torch.Tensor, pad_multiple: int,
                  fmap_stride: int) -> torch.Tensor:
    """The forward net's output for whole pictures (B,3,H,W) uint8, padded as the codec pads and
    cropped back to the fMap positions that cover the pictures: (B,M,h,w)."""
    from .head import valid_fmap_size

    hh, ww = valid_fmap_size(images.shape[2], images.shape[3], fmap_stride)
    return forward_net(pad_to(images.float() / 255, pad_multiple))[:, :, :hh, :ww]


class FMapCache:
    """The frozen forward net's output, computed once, for training an fMaps head fast.

    Every training image is scaled to each shorter side in `sides` and mirrored, and the forward
    net runs on the whole (stride-padded) picture; the fMap positions covering the picture are
    kept in float16 (about 0.15 MB per image for sides 144 and 192 with 128 fMaps). `sample`
    draws random `window` x `window` windows of those maps: the fMaps of a crop of
    window x fMap-stride px, at a position on the fMap grid, seen with its surroundings (as in a
    whole photo) rather than with a crop's borders. Quantization at a random quality is applied
    afterwards, per step, as for crops computed on the fly; float16 storage moves a value by at
    most 1/2048 of itself, so a few values round the other way than in a file: noise of the
    same kind as the quality draw, irrelevant to training. A step then costs only the head:
    several times faster than running the forward net on every crop.
    """

    def __init__(self, forward_net, items: list[tuple[Path, int]], sides: tuple[int, ...],
                 pad_multiple: int, fmap_stride: int, window: int, progress: bool = False,
                 codec_key=b""):
        from tqdm import tqdm

        # what the maps depend on, for a trainer handed a cache that another one built
        self.settings = self.settings_of(codec_key, sides, fmap_stride, window, items)

        if min(sides) < window * fmap_stride:
            raise ValueError(f"fmap_cache sides {sides} must not go below the crop size "
                             f"{window * fmap_stride}")
        self.window = window
        self.maps: list[torch.Tensor] = []
        labels = []
        for path, label in tqdm(items, desc="caching fMaps", unit="image", disable=not progress):
            image = load_rgb(path)
            for side in sides:
                t = to_uint8_tensor(resize_shorter(image, side))
                y = picture_fmaps(forward_net, torch.stack([t, t.flip(2)]), pad_multiple,
                                  fmap_stride)
                self.maps += list(y.to(torch.float16).unbind(0))
                labels += [label, label]
        self.labels = torch.tensor(labels)

    @staticmethod
    def settings_of(codec_key, sides, fmap_stride: int, window: int, items) -> tuple:
        """codec_key: what identifies the codec's transforms (its model id and precision)."""
        return (codec_key, tuple(sides), fmap_stride, window, tuple((str(p), y) for p, y in items))

    def sample(self, batch: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(B,M,window,window) float32 fMaps (unquantized) and their labels."""
        k = self.window
        idx = torch.randint(len(self.maps), (batch,), generator=gen)
        out = []
        for i in idx.tolist():
            m = self.maps[i]
            y = int(torch.randint(m.shape[1] - k + 1, (1,), generator=gen))
            x = int(torch.randint(m.shape[2] - k + 1, (1,), generator=gen))
            out.append(m[:, y : y + k, x : x + k])
        return torch.stack(out).float(), self.labels[idx]


def load_eval_images(items: list[tuple[Path, int]],
                     side: int | None) -> list[tuple[torch.Tensor, int]]:
    """Whole images for validation, shorter side scaled to `side`: [(uint8 (3,H,W), label)]."""
    return [(to_uint8_tensor(resize_shorter(load_rgb(p), side)), label) for p, label in items]


def accuracy(pred: torch.Tensor, labels: torch.Tensor, num_classes: int) -> tuple[float, float]:
    """(top-1 accuracy, mean per-class accuracy over the classes present)."""
    correct = (pred == labels).float()
    per_class = [correct[labels == c].mean().item() for c in range(num_classes)
                 if (labels == c).any()]
    return correct.mean().item(), float(np.mean(per_class))
