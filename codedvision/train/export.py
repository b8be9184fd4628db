"""`codedvision train export`: turn a training checkpoint into a released model."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..config import ModelConfig
from ..model import CodedVisionModel
from ..release import MANIFEST, export, resolve
from .data import load_patches
from .runlog import read_checkpoint


def load_checkpoint_model(checkpoint: Path, average: bool = True
                          ) -> tuple[CodedVisionModel, dict]:
    """Rebuild the model of a checkpoint from its saved config; returns (model, checkpoint).
    The weights are the run's moving average if it keeps one (`ema_decay`) and `average`,
    else the training weights."""
    state = read_checkpoint(checkpoint)
    if "model_config" not in state:
        raise ValueError(f"{checkpoint}: not a codec checkpoint (no model_config)")
    model = CodedVisionModel(ModelConfig.from_dict(state["model_config"]))
    model.load_state_dict(averaged_weights(state) if average and "ema" in state
                          else state["model"])
    return model.eval(), state


def averaged_weights(state: dict) -> dict:
    """The model weights in a checkpoint's moving average (a torch AveragedModel's state)."""
    prefix = "module."
    return {k[len(prefix):]: v for k, v in state["ema"].items() if k.startswith(prefix)}


def load_trained(path, average: bool = True) -> tuple[CodedVisionModel, str]:
    """A trained model from a checkpoint.pt or a released model folder (None: the shipped
    one), in eval mode, with a short description of where it came from (for a checkpoint:
    its moving average's weights if it keeps one and `average`, see load_checkpoint_model)."""
    return load_trained_state(path, average)[:2]


def load_trained_state(path, average: bool = True
                       ) -> tuple[CodedVisionModel, str, dict | None]:
    """load_trained, plus the checkpoint it read (None for a release folder), for callers
    that also want the run's config or its other weights without reading the file again."""
    if path is not None and Path(path).is_file() and Path(path).suffix == ".pt":
        model, state = load_checkpoint_model(Path(path), average)
        return model, checkpoint_description(path, state, average), state
    from ..release import load_release

    model, _, _, model_id = load_release(path)
    return model.eval(), f"release {model_id.hex()}", None


def checkpoint_description(path, state: dict, average: bool) -> str:
    """How load_trained names a checkpoint's weights: its path, step and which weights."""
    weights = "moving average" if average and "ema" in state else "training weights"
    return f"{path} (step {state['step']}, {weights})"


ORDER_PATCHES = 64  # training patches that rank the fMap channels at export


def sort_fmaps(model: CodedVisionModel, patches_dir: Path) -> dict:
    """Reorder the model's fMaps most-spread first (`CodedVisionModel.spread_order` over the
    first ORDER_PATCHES training patches), so that the first channel groups of a file hold
    the most informative fMaps. Returns the manifest's note on the order."""
    images = load_patches(Path(patches_dir), 1)[:ORDER_PATCHES]
    s = model.cfg.stride
    xs = [torch.from_numpy(a[: a.shape[0] // s * s, : a.shape[1] // s * s].copy())
          .permute(2, 0, 1)[None].float() / 255 for a in images]
    order = model.spread_order(xs)
    model.permute_fmaps(order)
    return {"by": "decreasing spread of y*gain at the middle quality anchor",
            "images": len(xs), "data": str(patches_dir),
            "checkpoint_channels": order.tolist()}  # release channel i = checkpoint's [i]


def training_data(tc: dict) -> list[str]:
    """The data folders a run trained on: its patches, and Caltech-101 only if it drew from it
    (a config names caltech_dir even when caltech_fraction is 0)."""
    caltech = tc.get("caltech_dir") if tc.get("caltech_fraction", 0) > 0 else None
    return [d for d in (tc["patches_dir"], caltech) if d]


def warm_start(tc: dict) -> dict | None:
    """Where a run's weights began when it started from trained ones (`init_from`): the
    released model's id or the checkpoint's path, the training steps behind them (their own
    and, recursively, those they began from; None when unknown) and how that lineage was
    first initialised. None for a run that started afresh; a source no longer at hand is
    only named."""
    source = tc.get("init_from")
    if not source:
        return None
    path = Path(source)
    try:
        if path.is_file() and path.suffix == ".pt":
            state = read_checkpoint(path)
            start, steps = {"from_checkpoint": str(path)}, state["step"]
            before = state["train_config"]
            earlier = warm_start(before)
        else:
            manifest = json.loads((resolve(path) / MANIFEST).read_text())
            training = manifest.get("training", {})
            start, steps = {"from_model": manifest["model_id"]}, training.get("steps")
            before, earlier = training.get("train_config", {}), training.get("warm_start")
    except (FileNotFoundError, KeyError, ValueError):
        return {"from_path": str(path), "its_steps": None, "from_init": None}
    if not earlier:
        return {**start, "its_steps": steps, "from_init": before.get("init", "default")
                if before else None}
    behind = earlier.get("its_steps")
    total = (None if steps is None or behind is None
             else steps + behind + earlier.get("decoder_only_steps", 0))
    return {**start, "its_steps": total, "from_init": earlier.get("from_init")}


def export_checkpoint(checkpoint: Path, out_dir: Path, force: bool = False,
                      info: dict | None = None) -> dict:
    """Export `checkpoint` (a training run's checkpoint.pt) to a release folder, its fMaps
    sorted most-spread first (see sort_fmaps) when the training patches are at hand."""
    model, state = load_checkpoint_model(checkpoint)
    tc = state["train_config"]
    if model.cfg.checkerboard:  # its context model works per group: the order is part of it
        order = {"by": "as trained (a checkerboard model's groups fix the order)"}
    else:
        try:
            order = sort_fmaps(model, Path(tc["patches_dir"]))
        except FileNotFoundError:
            order = {"by": "as trained (training patches not found at export)"}
    training = {
        "steps": state["step"],
        "batch": tc["batch"],
        "patch": tc["patch"],
        "data": training_data(tc),
        "train_config": tc,
    }
    lineage = warm_start(tc)
    if lineage:
        training["warm_start"] = lineage
    if state.get("rollbacks"):  # the divergence guard's (Trainer._roll_back)
        training["rollbacks"] = state["rollbacks"]
    if "ema" in state:
        training["weights"] = (f"moving average of the training weights (decay "
                               f"{tc['ema_decay']} per step, updated over the run's last "
                               f"{int(state['ema']['n_averaged'])} steps)")
    return export(model, out_dir, {"training": training, "fmap_order": order, **(info or {})},
                  force=force)
