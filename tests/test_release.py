"""Released models: export, load back, the default model, the model id."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest
import torch

import codedvision
from codedvision import release
from codedvision.codec import Codec
from codedvision.config import ModelConfig
from codedvision.model import CodedVisionModel

from conftest import synthetic


def _manifest(folder):
    return json.loads((folder / release.MANIFEST).read_text())


@pytest.mark.parametrize("folder", ["tiny_model_dir", "factorized_model_dir"])
def test_export_then_load_round_trips(request, folder):
    folder = request.getfixturevalue(folder)
    codec = Codec(folder)
    manifest = _manifest(folder)
    assert ModelConfig.from_dict(manifest["config"]) == codec.cfg
    assert manifest["parameters"] == codec.model.num_parameters()
    image = synthetic(40, 24)
    assert codec.decode(codec.encode(image, 50)).size == (40, 24)
    # the same release loaded again codes identically
    assert Codec(folder).encode(image, 50) == codec.encode(image, 50)


def test_loaded_weights_are_the_exported_weights_in_float16(tmp_path):
    torch.manual_seed(1)
    model = CodedVisionModel(ModelConfig(channels=8, fmaps=8, hyper_channels=8))
    release.export(model, tmp_path, info={"note": "test"})
    loaded = Codec(tmp_path)
    assert _manifest(tmp_path)["note"] == "test"
    for name, value in model.state_dict().items():
        got = loaded.model.state_dict()[name]
        want = value.float() if name.startswith("log_") else value.half().float()
        assert torch.equal(got, want), name


def test_export_refuses_to_overwrite_without_force(tmp_path, tiny_model_dir):
    torch.manual_seed(2)
    model = CodedVisionModel(ModelConfig(channels=8, fmaps=8, hyper_channels=8))
    release.export(model, tmp_path)
    before = (tmp_path / release.WEIGHTS).read_bytes()
    with pytest.raises(FileExistsError):
        release.export(model, tmp_path)
    assert (tmp_path / release.WEIGHTS).read_bytes() == before
    release.export(model, tmp_path, force=True)
    assert not list(tmp_path.glob("*.tmp"))


def test_model_id_is_first_4_bytes_of_sha256_of_weights(tiny_model_dir, tiny_codec):
    digest = hashlib.sha256((tiny_model_dir / release.WEIGHTS).read_bytes()).digest()
    assert _manifest(tiny_model_dir)["model_id"] == digest[:4].hex()
    assert tiny_codec.model_id == digest[:4]
    assert tiny_codec.encode(synthetic(8, 8), 50)[4:8] == digest[:4]


def test_default_model_manifest_id_matches_its_weights():
    folder = release.DEFAULT_MODEL_DIR
    digest = hashlib.sha256((folder / release.WEIGHTS).read_bytes()).digest()
    assert _manifest(folder)["model_id"] == digest[:4].hex()


def test_load_returns_the_cached_default_model(default_codec):
    codec = codedvision.load()
    assert codec is default_codec and codec is codedvision.load()
    assert isinstance(codec, Codec)
    assert codec.model_id.hex() == codec.manifest["model_id"]
    assert codec.manifest["config"] == codec.cfg.to_dict()


def test_load_with_a_path_loads_that_release(tiny_model_dir, tiny_codec):
    codec = codedvision.load(tiny_model_dir)
    assert codec.model_id == tiny_codec.model_id
    assert codedvision.load(tiny_model_dir / release.WEIGHTS).model_id == tiny_codec.model_id


def test_loading_a_folder_without_a_model_fails_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a codedvision model folder"):
        Codec(tmp_path)


def test_different_weights_give_different_model_ids(tiny_model_dir, factorized_model_dir):
    assert Codec(tiny_model_dir).model_id != Codec(factorized_model_dir).model_id


def test_every_relative_link_in_the_readme_and_docs_points_to_a_file():
    """The committed results the docs quote are one click away: no link resolves to nothing."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    pages = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    broken = [f"{page.name}: {target}" for page in pages
              for target in re.findall(r"\]\(([^)#\s]+)", page.read_text())
              if "://" not in target and not (page.parent / target).exists()]
    assert not broken


def test_release_script_refuses_bad_arguments_before_touching_anything(tmp_path):
    """benchmarks/release_candidate.sh: usage errors exit 2 with a message, nothing written."""
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "release_candidate.sh"
    work = str(tmp_path / "work")
    for args, message in (([], "RUN NAME"), ([str(tmp_path / "no-run"), "x", work], "not found")):
        r = subprocess.run(["bash", str(script), *args], capture_output=True, text=True)
        assert r.returncode == 2 and message in r.stderr, r.stderr
    assert not (tmp_path / "work").exists()
