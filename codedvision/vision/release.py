"""Released classifier heads: safetensors + manifest, like the codec's releases.

A head folder holds
- `head.safetensors`: the weights (float16; the input normalisation in float32);
- `manifest.json`: "format": "codedvision-head", the head id (first 4 bytes of the SHA-256 of
  head.safetensors), the HeadConfig, the class names (index order), the model id of the codec
  whose fMaps it was trained on, the evaluation protocol (`eval_side`: images are scaled to this
  shorter side before classification / compression), the validation accuracy, training facts.

Shipped heads go in codedvision/models/<name>/ (package data, like the default codec):
`classifier-fmaps` (the compressed-domain head) and `classifier-rgb` (the decode-then-classify
baseline), made with `codedvision train classifier` + `train export-head` for the shipped codec.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .head import ClassifierHead, HeadConfig

MODELS_DIR = Path(__file__).resolve().parents[1] / "models"
DEFAULT_HEAD_DIRS = {"fmaps": MODELS_DIR / "classifier-fmaps", "rgb": MODELS_DIR / "classifier-rgb"}
WEIGHTS = "head.safetensors"
MANIFEST = "manifest.json"
FORMAT = "codedvision-head"
FLOAT32_KEYS = ("in_mean", "in_std")


class NoHeadError(FileNotFoundError):
    """No classifier head where one was looked for (the message says how to get one)."""


@dataclass
class LoadedHead:
    head: ClassifierHead
    classes: list[str]
    codec_model_id: bytes
    eval_side: int | None
    head_id: str
    manifest: dict
    folder: Path

    @property
    def input(self) -> str:
        return self.head.cfg.input


def export(head: ClassifierHead, out_dir, info: dict, force: bool = False) -> dict:
    """Write head.safetensors + manifest.json to out_dir. `info` must hold "classes" and
    "codec_model_id" (hex); anything else in it (val accuracy, eval_side, training) is kept."""
    out_dir = Path(out_dir)
    if len(info.get("classes", ())) != head.cfg.num_classes:
        raise ValueError("info['classes'] must name every class of the head")
    if "codec_model_id" not in info:
        raise ValueError("info['codec_model_id'] is required")
    if (out_dir / WEIGHTS).exists() and not force:
        raise FileExistsError(f"{out_dir / WEIGHTS} exists (use --force to overwrite)")
    out_dir.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for k, v in head.state_dict().items():
        v = v.detach().contiguous()
        if v.is_floating_point():  # integer buffers, if any, are kept as they are
            v = v.float() if k in FLOAT32_KEYS else v.half()
        tensors[k] = v
    tmp = out_dir / (WEIGHTS + ".tmp")
    save_file(tensors, str(tmp), metadata={"format": FORMAT, "version": "1"})
    os.chmod(tmp, 0o644)
    os.replace(tmp, out_dir / WEIGHTS)
    manifest = {
        "format": FORMAT,
        "head_id": _digest(out_dir / WEIGHTS),
        "config": head.cfg.to_dict(),
        "parameters": head.num_parameters(),
        **info,
    }
    tmp = out_dir / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(tmp, out_dir / MANIFEST)
    return manifest


def _digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).digest()[:4].hex()


def how_to_train(kind: str) -> str:
    flag = "" if kind == "fmaps" else " --input rgb"
    return (f"train one with `codedvision train classifier --data DIR --run-dir RUN{flag}` and "
            f"`codedvision train export-head RUN/best.pt -o HEAD`, then pass "
            f"{'--head' if kind == 'fmaps' else '--rgb-head'} HEAD")


def load(path=None, kind: str = "fmaps") -> LoadedHead:
    """Load a head folder (or its head.safetensors); None: the shipped head of `kind`
    ("fmaps" or "rgb"). Raises NoHeadError when there is none."""
    if path is None:
        folder = DEFAULT_HEAD_DIRS[kind]
        if not (folder / WEIGHTS).is_file():
            what = "compressed-domain (fMaps)" if kind == "fmaps" else "RGB (decode-then-classify)"
            raise NoHeadError(f"no {what} classifier head is shipped yet; {how_to_train(kind)}")
    else:
        folder = Path(path)
        if folder.is_file() and folder.name == WEIGHTS:
            folder = folder.parent
    if not (folder / WEIGHTS).is_file() or not (folder / MANIFEST).is_file():
        raise NoHeadError(f"{folder}: not a classifier head folder ({WEIGHTS} + {MANIFEST})")
    manifest = json.loads((folder / MANIFEST).read_text())
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{folder}: manifest is not a {FORMAT} manifest")
    cfg = HeadConfig.from_dict(manifest["config"])
    head = ClassifierHead(cfg)
    head.load_weights({k: v.float() if v.is_floating_point() else v
                       for k, v in load_file(str(folder / WEIGHTS)).items()}, folder)
    head.for_inference()
    return LoadedHead(head, list(manifest["classes"]), bytes.fromhex(manifest["codec_model_id"]),
                      manifest.get("eval_side"), manifest["head_id"], manifest, folder)
