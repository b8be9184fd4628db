"""`codedvision train export`: turn a training checkpoint into a released model."""

from __future__ import annotations

from pathlib import Path

import torch

from ..config import ModelConfig
from ..model import CodedVisionModel
from ..release import export


def load_checkpoint_model(checkpoint: Path) -> tuple[CodedVisionModel, dict]:
    """Rebuild the model of a checkpoint from its saved config; returns (model, checkpoint)."""
    state = torch.load(Path(checkpoint), map_location="cpu", weights_only=False)
    model = CodedVisionModel(ModelConfig.from_dict(state["model_config"]))
    model.load_state_dict(state["model"])
    return model.eval(), state


def export_checkpoint(checkpoint: Path, out_dir: Path, force: bool = False,
                      info: dict | None = None) -> dict:
    """Export `checkpoint` (a training run's checkpoint.pt) to a release folder."""
    model, state = load_checkpoint_model(checkpoint)
    tc = state["train_config"]
    training = {
        "steps": state["step"],
        "batch": tc["batch"],
        "patch": tc["patch"],
        "data": [d for d in (tc["patches_dir"], tc.get("caltech_dir")) if d],
        "train_config": tc,
    }
    return export(model, out_dir, {"training": training, **(info or {})}, force=force)
