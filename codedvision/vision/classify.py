"""Classify files: .cvz straight from their fMaps, ordinary images by decode-then-classify.

    from codedvision.vision import classify, load_head
    results = classify(["a.cvz", "b.jpg"], codec, load_head(), top_k=5,
                       rgb_head=load_head(kind="rgb"))

- A .cvz file (recognised by its magic bytes) is entropy decoded to fMaps (`Codec.fmaps`: no
  backward network, no pixels; only the channel groups that hold the fMaps the head reads),
  cropped to the positions that cover the image, and classified
  by the fMaps head. The file must come from the codec model the head was trained on.
- Any other image (JPEG, PNG, ...) is read as the codec reads images, scaled so that its shorter
  side is the head's `eval_side`, and classified by the RGB head (ForwardNet copy + the same
  head: the decode-then-classify baseline). Without an RGB head that is an error.

A .cvz is classified at the size it was compressed at; the head was trained on photos whose
shorter side is about `eval_side`, and a note says so when the file is far from that.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from ..container import MAGIC, FormatError
from ..images import InputError, open_image
from .data import load_rgb, pad_to, resize_shorter, to_uint8_tensor
from .head import valid_fmap_size
from .release import LoadedHead, how_to_train


class VisionError(ValueError):
    """A file cannot be classified with the given codec and heads (one-line message)."""


class Classifier:
    """A codec plus an fMaps head and/or an RGB head, ready to classify files."""

    def __init__(self, codec=None, head: LoadedHead | None = None,
                 rgb_head: LoadedHead | None = None, top_k: int = 5):
        if head is None and rgb_head is None:
            raise VisionError("no classifier head given")
        if head is not None:
            if head.input != "fmaps":
                raise VisionError(f"{head.folder}: an {head.input} head, not an fMaps head")
            if codec is None:
                raise VisionError("an fMaps head needs the codec its fMaps come from")
            if codec.model_id != head.codec_model_id:
                raise VisionError(
                    f"the head {head.folder} works on fMaps of codec model "
                    f"{head.codec_model_id.hex()}, but the loaded codec is "
                    f"{codec.model_id.hex()} (pass --model for that codec)")
            if codec.cfg.fmaps != head.head.cfg.fmaps:
                raise VisionError("the codec's fMap count differs from the head's")
        if rgb_head is not None and rgb_head.input != "rgb":
            raise VisionError(f"{rgb_head.folder}: an {rgb_head.input} head, not an RGB head")
        if top_k < 1:
            raise ValueError("top_k must be at least 1")
        self.codec, self.head, self.rgb_head, self.top_k = codec, head, rgb_head, top_k

    def _top(self, logits: torch.Tensor, classes: list[str]) -> list[dict]:
        probs = torch.softmax(logits[0].double(), 0)
        p, i = probs.topk(min(self.top_k, len(classes)))
        return [{"label": classes[int(k)], "index": int(k), "probability": round(float(v), 6)}
                for v, k in zip(p, i)]

    @torch.no_grad()
    def classify_bytes(self, data: bytes, name: str = "<bytes>") -> dict:
        t0 = time.perf_counter()
        if data[: len(MAGIC)] == MAGIC:
            rec = self._classify_cvz(data, name)
        else:
            rec = self._classify_image(data, name)
        rec["seconds"] = round(time.perf_counter() - t0, 6)
        return rec

    def classify_file(self, path) -> dict:
        """Classify one file (timed from reading its bytes to the labels)."""
        t0 = time.perf_counter()
        path = Path(path)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise InputError(f"{path}: no such file") from None
        except IsADirectoryError:
            raise InputError(f"{path}: is a directory") from None
        rec = self.classify_bytes(data, str(path))
        rec["seconds"] = round(time.perf_counter() - t0, 6)
        return rec

    def _classify_cvz(self, data: bytes, name: str) -> dict:
        if self.head is None:
            raise VisionError(f"{name}: a .cvz file needs an fMaps head; " + how_to_train("fmaps"))
        header = self.codec.header(data)
        if header.model_id != self.head.codec_model_id:
            raise VisionError(
                f"{name} was made by codec model {header.model_id.hex()}, but the classifier "
                f"head works on fMaps of model {self.head.codec_model_id.hex()}; decompress it "
                f"with its model and classify the image, or use a head trained for that model")
        fmaps = self.codec.fmaps(data, channels=self.head.head.cfg.input_fmaps)
        valid = valid_fmap_size(header.height, header.width, self.head.head.cfg.stride)
        logits = self.head.head(fmaps, valid)
        notes = []
        side = self.head.eval_side
        if side and not side / 1.5 <= min(header.width, header.height) <= side * 1.5:
            notes.append(f"the head was trained on photos with a shorter side of about {side} "
                         f"px; this one is {header.width}x{header.height}, accuracy may be lower")
        return {"file": name, "input": "fmaps", "width": header.width, "height": header.height,
                "quality": header.quality,
                "bpp": round(len(data) * 8 / (header.width * header.height), 5),
                "top": self._top(logits, self.head.classes), "notes": notes}

    def _classify_image(self, data: bytes, name: str) -> dict:
        if self.rgb_head is None:
            raise VisionError(f"{name}: not a .cvz file, and no RGB classifier head is loaded "
                              f"(compress it first, or {how_to_train('rgb')})")
        import io

        return self.classify_image(open_image(io.BytesIO(data), name)[0], name)  # converts it

    @torch.no_grad()
    def classify_image(self, image, name: str = "<image>") -> dict:
        """Classify a PIL image (or anything `to_rgb8` reads) with the RGB head."""
        if self.rgb_head is None:
            raise VisionError(f"{name}: no RGB classifier head is loaded ({how_to_train('rgb')})")
        image = load_rgb(image)
        width, height = image.size
        image = resize_shorter(image, self.rgb_head.eval_side)
        x = to_uint8_tensor(image)[None].float() / 255
        h, w = x.shape[2:]
        stride = self.rgb_head.head.cfg.stride
        logits = self.rgb_head.head(pad_to(x, stride), valid_fmap_size(h, w, stride))
        return {"file": name, "input": "rgb", "width": width, "height": height,
                "top": self._top(logits, self.rgb_head.classes), "notes": []}


def classify(paths, codec=None, head: LoadedHead | None = None, top_k: int = 5,
             rgb_head: LoadedHead | None = None) -> list[dict]:
    """Classify files; one dict per file: file, input ("fmaps"/"rgb"), width, height, top (a
    list of {label, index, probability}, best first), seconds, notes (and quality, bpp for .cvz).
    Raises on the first file that cannot be classified."""
    clf = Classifier(codec, head, rgb_head, top_k)
    return [clf.classify_file(p) for p in paths]


__all__ = ["Classifier", "FormatError", "VisionError", "classify"]
