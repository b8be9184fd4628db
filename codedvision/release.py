"""Released models: export a trained model to safetensors + manifest, and load one back.

A release folder holds
- `model.safetensors`: the float weights (float16, `net.*`) and the frozen coding data
  (`coding.*`: integer frequency tables, the integer hyper-synthesis, the scale-index constants);
- `manifest.json`: the model config, the model id, training facts and measured figures.

The model id is the first 4 bytes of the SHA-256 of `model.safetensors`; every .cvz file names
the model that made it. No pickle anywhere, and no separate "update" step: what is exported
is what codes.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from .config import ModelConfig
from .intnet import freeze_layers
from .model import CodedVisionModel

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "models" / "default"
WEIGHTS = "model.safetensors"
MANIFEST = "manifest.json"


def coding_tensors(model: CodedVisionModel) -> dict[str, torch.Tensor]:
    """Everything the coder needs beyond the networks, frozen as integers (and two float64s)."""
    out: dict[str, torch.Tensor] = {}
    if model.cfg.entropy_model == "hyperprior":
        zf, zr = model.z_model.tables()
        yf, yr = model.y_model.tables()
        out["coding.z_freqs"], out["coding.z_radius"] = torch.from_numpy(zf), torch.from_numpy(zr)
        out["coding.y_freqs"], out["coding.y_radius"] = torch.from_numpy(yf), torch.from_numpy(yr)
        nets = [("hs", model.hyper_synthesis.net)]
        if model.cfg.checkerboard:
            for g, group in enumerate(model.context.groups):
                nets += [(f"cb{g}.ctx", group.context), (f"cb{g}.par", group.params)]
        for prefix, net in nets:
            for k, v in freeze_layers(net, prefix).items():
                out[f"coding.{k}"] = v
        out["coding.scale_log_min"] = torch.tensor([model.y_model.log_min], dtype=torch.float64)
        out["coding.scale_log_step"] = torch.tensor([model.y_model.log_step], dtype=torch.float64)
    else:
        yf, yr = model.y_model.tables()
        out["coding.y_freqs"], out["coding.y_radius"] = torch.from_numpy(yf), torch.from_numpy(yr)
    return out


def export(model: CodedVisionModel, out_dir: Path, info: dict | None = None,
           force: bool = False) -> dict:
    """Write a release of `model` to out_dir; returns the manifest."""
    out_dir = Path(out_dir)
    if (out_dir / WEIGHTS).exists() and not force:
        raise FileExistsError(f"{out_dir / WEIGHTS} exists (use --force to overwrite)")
    out_dir.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for k, v in model.state_dict().items():
        v = v.detach().float().contiguous()
        # gains are tiny and set the bitstream's scale: keep them in float32
        tensors[f"net.{k}"] = v if k.startswith("log_") else v.half()
    tensors.update(coding_tensors(model))
    tmp = out_dir / (WEIGHTS + ".tmp")
    save_file(tensors, str(tmp), metadata={"format": "codedvision-model", "version": "1"})
    os.chmod(tmp, 0o644)  # safetensors writes 0600; a release is meant to be shared
    os.replace(tmp, out_dir / WEIGHTS)
    manifest = {
        "model_id": model_id(out_dir / WEIGHTS).hex(),
        "config": model.cfg.to_dict(),
        "parameters": model.num_parameters(),
        **(info or {}),
    }
    write_manifest(out_dir, manifest)
    return manifest


def write_manifest(out_dir: Path, manifest: dict) -> None:
    tmp = Path(out_dir) / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(tmp, Path(out_dir) / MANIFEST)


def model_id(weights: Path) -> bytes:
    return hashlib.sha256(Path(weights).read_bytes()).digest()[:4]


def resolve(path: str | os.PathLike | None) -> Path:
    """The release folder for `path` (a folder, or its model.safetensors); None: the default."""
    p = DEFAULT_MODEL_DIR if path is None else Path(path)
    if p.is_file() and p.name == WEIGHTS:
        p = p.parent
    if not (p / WEIGHTS).is_file() or not (p / MANIFEST).is_file():
        raise FileNotFoundError(f"{p}: not a codedvision model folder ({WEIGHTS} + {MANIFEST})")
    return p


def load_release(path: str | os.PathLike | None = None):
    """Load a release: (model in eval mode, coding tensors, manifest, model id)."""
    folder = resolve(path)
    manifest = json.loads((folder / MANIFEST).read_text())
    cfg = ModelConfig.from_dict(manifest["config"])
    tensors = load_file(str(folder / WEIGHTS))
    model = CodedVisionModel(cfg)
    state = {k[4:]: v.float() for k, v in tensors.items() if k.startswith("net.")}
    model.load_state_dict(state)
    model.eval()
    coding = {k[7:]: v for k, v in tensors.items() if k.startswith("coding.")}
    return model, coding, manifest, model_id(folder / WEIGHTS)


def frozen_table_arrays(coding: dict, name: str) -> tuple[np.ndarray, np.ndarray]:
    return coding[f"{name}_freqs"].numpy(), coding[f"{name}_radius"].numpy()
