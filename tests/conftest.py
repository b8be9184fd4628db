"""Shared fixtures: tiny exported models, a real photo, small synthetic images.

The tiny models are random (untrained) but complete releases: every codec path (networks,
gains, frozen tables, exact integer hyper-synthesis, container) runs exactly as with the
shipped model, only much faster. Tests that need a trained model's behaviour (quality ordering,
the Pillow plugin, the demo) use the shipped default model, on small images.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import codedvision
from codedvision import release
from codedvision.codec import Codec
from codedvision.config import ModelConfig
from codedvision.model import CodedVisionModel

REPO = Path(__file__).resolve().parents[1]
KODAK_PHOTO = REPO.parent / "shared" / "data" / "kodak" / "kodim01.png"
SAMPLE_PHOTO = Path(codedvision.__file__).resolve().parent / "data" / "sample.png"

# One intra-op thread: on a small, busy machine (a training run holds the cores) a second
# thread makes every small convolution wait for it, 100x slower. The thread-count test sets
# its own counts.
torch.set_num_threads(1)


def _export_tiny(folder: Path, entropy_model: str, mean_scale: bool = False,
                 checkerboard: bool = False, fmaps: int = 16) -> Path:
    torch.manual_seed(0)
    cfg = ModelConfig(channels=16, fmaps=fmaps, hyper_channels=16, entropy_model=entropy_model,
                      mean_scale=mean_scale, checkerboard=checkerboard)
    model = CodedVisionModel(cfg)
    if mean_scale:  # the means (and the signed input) start at zero: give them a say
        last, first = model.hyper_synthesis.net[-1], model.hyper_analysis.net[0]
        with torch.no_grad():
            last.weight[fmaps:] = torch.randn_like(last.weight[fmaps:]) * 0.05
            last.bias[fmaps:] = torch.randn(fmaps) * 3
            first.weight[:, fmaps:] = torch.randn_like(first.weight[:, fmaps:]) * 0.05
    if checkerboard:  # the context's corrections start at zero too
        with torch.no_grad():
            for group in model.context.groups:
                group.params[-1].weight.normal_(0, 0.05)
    release.export(model, folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """Release folder of a tiny random hyperprior model."""
    return _export_tiny(tmp_path_factory.mktemp("tiny_hyperprior"), "hyperprior")


@pytest.fixture(scope="session")
def tiny_codec(tiny_model_dir) -> Codec:
    return Codec(tiny_model_dir)


@pytest.fixture(scope="session")
def mean_scale_model_dir(tmp_path_factory) -> Path:
    """Release folder of a tiny random mean-scale hyperprior model (non-zero means)."""
    return _export_tiny(tmp_path_factory.mktemp("tiny_mean_scale"), "hyperprior", True)


@pytest.fixture(scope="session")
def mean_scale_codec(mean_scale_model_dir) -> Codec:
    return Codec(mean_scale_model_dir)


@pytest.fixture(scope="session")
def checkerboard_model_dir(tmp_path_factory) -> Path:
    """Release folder of a tiny random mean-scale model with a checkerboard context, 48 fMaps
    (two file groups: 32 and 16), non-zero context corrections."""
    return _export_tiny(tmp_path_factory.mktemp("tiny_checkerboard"), "hyperprior", True, True,
                        fmaps=48)


@pytest.fixture(scope="session")
def checkerboard_codec(checkerboard_model_dir) -> Codec:
    return Codec(checkerboard_model_dir)


@pytest.fixture(scope="session")
def factorized_model_dir(tmp_path_factory) -> Path:
    """Release folder of a tiny random factorized-prior model."""
    return _export_tiny(tmp_path_factory.mktemp("tiny_factorized"), "factorized")


@pytest.fixture(scope="session")
def factorized_codec(factorized_model_dir) -> Codec:
    return Codec(factorized_model_dir)


@pytest.fixture(scope="session")
def default_model_dir(tmp_path_factory) -> Path:
    """A private copy of the shipped default model.

    The shipped model may be replaced while the suite runs (it is being retrained); tests that
    encode in one place and decode in another (a subprocess) load this copy so that both sides
    see the same weights.
    """
    folder = tmp_path_factory.mktemp("default_model")
    for name in (release.WEIGHTS, release.MANIFEST):
        shutil.copy2(release.DEFAULT_MODEL_DIR / name, folder / name)
    return folder


@pytest.fixture(scope="session")
def default_codec() -> Codec:
    """The shipped default model, as `codedvision.load()` returns it (cached)."""
    return codedvision.load()


@pytest.fixture(scope="session")
def photo_path() -> Path:
    """A real photo: Kodak kodim01 when the shared data set is present, else the shipped sample."""
    path = KODAK_PHOTO if KODAK_PHOTO.is_file() else SAMPLE_PHOTO
    assert path.is_file(), f"no test photo: neither {KODAK_PHOTO} nor {SAMPLE_PHOTO} exists"
    return path


@pytest.fixture(scope="session")
def photo(photo_path) -> Image.Image:
    """The photo as an 8-bit RGB PIL image (768x512 for both candidates)."""
    with Image.open(photo_path) as im:
        return im.convert("RGB")


@pytest.fixture(scope="session")
def small_photo(photo) -> Image.Image:
    """A 96x80 crop of the photo: fast with any model, still a real image."""
    return photo.crop((200, 150, 296, 230))


def synthetic(width: int, height: int, seed: int = 0) -> Image.Image:
    """A colour gradient with some noise, as an RGB PIL image."""
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx * 255 / max(width, 1), yy * 255 / max(height, 1),
                     (xx + yy) * 127 / max(width + height, 1)], axis=-1)
    noise = np.random.default_rng(seed).normal(0, 8, (height, width, 3))
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8), "RGB")


@pytest.fixture(scope="session")
def load_benchmark():
    """Import benchmarks/<name>.py (a script folder, not a package): load_benchmark(name)."""
    import importlib.util

    def load(name: str):
        spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load
