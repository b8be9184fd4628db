"""The vision task engine: classifier head, training, release, classify, show, CLI.

Everything runs on the tiny random codec of conftest.py and a tiny synthetic data set (red vs
blue noisy 64x64 images), on one thread: the real heads are trained on Caltech-101 separately.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from codedvision.cli import main
from codedvision.vision import release as head_release
from codedvision.vision.classify import Classifier, VisionError, classify
from codedvision.vision import data as D
from codedvision.vision.data import CropSampler, load_dataset
from codedvision.vision.head import ClassifierHead, HeadConfig
from codedvision.vision.show import fmap_grid, show
from codedvision.vision.train import (HeadTrainConfig, HeadTrainer, export_head_checkpoint,
                                      load_head_checkpoint)

torch.set_num_threads(1)

COLOURS = {"blue": (30, 40, 200), "red": (200, 30, 40)}


def coloured(name: str, seed: int, size=(64, 64)) -> Image.Image:
    rng = np.random.default_rng(seed)
    w, h = size
    a = np.array(COLOURS[name], float) + rng.normal(0, 25, (h, w, 3))
    y0, x0 = rng.integers(0, h // 2), rng.integers(0, w // 2)  # a grey square somewhere
    a[y0 : y0 + h // 3, x0 : x0 + w // 3] = rng.integers(60, 200)
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "RGB")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """blue/ and red/, 15 images each; every 5th held out: 12 train + 3 val per class."""
    root = tmp_path_factory.mktemp("colours")
    for name in COLOURS:
        (root / name).mkdir()
        for i in range(15):
            seed = (0 if name == "blue" else 100) + i
            coloured(name, seed).save(root / name / f"{i:02d}.png")
    return root


def tiny_config(data: Path, codec_dir: Path, **kw) -> HeadTrainConfig:
    base = dict(data=str(data), codec=str(codec_dir), channels=16, units=1, dropout=0.1,
                crop=64, resize=(64, 72), eval_side=64, batch=8, steps=30, lr=3e-3,
                warmup_steps=3, val_every=10, log_every=5, threads=1, norm_batches=1,
                val_qualities=(10, 90), checkpoint_minutes=60)
    base.update(kw)
    return HeadTrainConfig(**base)


@pytest.fixture(scope="module")
def fmaps_run(tmp_path_factory, data_dir, tiny_model_dir) -> Path:
    run = tmp_path_factory.mktemp("run_fmaps")
    trainer = HeadTrainer(tiny_config(data_dir, tiny_model_dir), run, quiet=True)
    assert trainer.head_cfg.keep_fmaps == 16  # the first group: all 16 of the tiny codec's
    trainer.run()
    return run


@pytest.fixture(scope="module")
def rgb_run(tmp_path_factory, data_dir, tiny_model_dir) -> Path:
    run = tmp_path_factory.mktemp("run_rgb")
    trainer = HeadTrainer(tiny_config(data_dir, tiny_model_dir, input="rgb", steps=20), run,
                          quiet=True)
    assert trainer.head_cfg.keep_fmaps == 0  # an rgb head reads all its forward net's fMaps
    trainer.run()
    return run


@pytest.fixture(scope="module")
def head_dir(tmp_path_factory, fmaps_run) -> Path:
    out = tmp_path_factory.mktemp("heads") / "fmaps"
    export_head_checkpoint(fmaps_run / "best.pt", out)
    return out


@pytest.fixture(scope="module")
def rgb_head_dir(tmp_path_factory, rgb_run) -> Path:
    out = tmp_path_factory.mktemp("heads") / "rgb"
    export_head_checkpoint(rgb_run / "best.pt", out)
    return out


@pytest.fixture(scope="module")
def cvz(tmp_path_factory, tiny_codec) -> dict[str, Path]:
    """A red and a blue .cvz (quality 50) made by the tiny codec, and a red PNG."""
    folder = tmp_path_factory.mktemp("cvz")
    out = {}
    for name in COLOURS:
        out[name] = folder / f"{name}.cvz"
        out[name].write_bytes(tiny_codec.encode(coloured(name, seed=999), quality=50))
    out["png"] = folder / "red.png"
    coloured("red", seed=998).save(out["png"])
    return out


# -- the head --------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [(1, 1), (4, 4), (5, 7), (12, 3)])
def test_fmaps_head_gives_one_logit_per_class_for_any_fmap_size(size):
    head = ClassifierHead(HeadConfig(fmaps=16, num_classes=3, channels=16, units=2)).eval()
    out = head(torch.randn(2, 16, *size))
    assert out.shape == (2, 3) and torch.isfinite(out).all()


def test_default_head_is_small_and_reads_the_first_channel_group():
    """64 wide, 2 units (the paper: 128 wide), and trained heads read the bitstream's first
    group of 32 fMaps by default, so that classifying a file decodes only that group."""
    cfg = HeadConfig(fmaps=128, num_classes=101)
    head = ClassifierHead(cfg)
    assert cfg.channels == 64 and cfg.units == 2 and head.stem[0].out_channels == 64
    assert head.forward_net is None
    assert HeadTrainConfig().keep_fmaps is None and HeadTrainConfig().channels == 64


def test_rgb_head_runs_a_forward_net_and_crops_to_the_image():
    cfg = HeadConfig(fmaps=16, num_classes=2, channels=16, units=1, input="rgb",
                     forward_channels=16)
    head = ClassifierHead(cfg).eval()
    x = torch.rand(1, 3, 48, 64)
    assert head(x).shape == (1, 2)
    assert head.fmaps_of(x, (2, 3)).shape == (1, 16, 2, 3)


def test_head_config_is_validated():
    with pytest.raises(ValueError, match="input"):
        HeadConfig(fmaps=16, num_classes=2, input="pixels")
    with pytest.raises(ValueError, match="2 classes"):
        HeadConfig(fmaps=16, num_classes=1)
    assert HeadConfig.from_dict(HeadConfig(fmaps=8, num_classes=4).to_dict()).fmaps == 8


# -- data ------------------------------------------------------------------------------------

def test_folder_per_class_dataset_holds_out_every_fifth_image(data_dir):
    ds = load_dataset(data_dir)
    assert ds.classes == ["blue", "red"]
    assert len(ds.train) == 24 and len(ds.val) == 6
    assert {label for _, label in ds.val} == {0, 1}


def test_labels_csv_dataset_uses_classes_txt_order(tmp_path):
    (tmp_path / "images" / "b").mkdir(parents=True)
    rows = []
    for i, (label, split) in enumerate([("b", "train"), ("a", "train"), ("b", "val"),
                                        ("a", "val"), ("a", "test")]):
        rel = f"images/b/{i}.jpg"
        Image.new("L", (20, 10), 100).save(tmp_path / rel)  # grayscale JPEG, like Caltech
        rows.append({"relative_path": rel, "label": label, "split": split})
    with open(tmp_path / "labels.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["relative_path", "label", "split"])
        w.writeheader()
        w.writerows(rows)
    (tmp_path / "classes.txt").write_text("b\na\n")
    ds = load_dataset(tmp_path)
    assert ds.classes == ["b", "a"]
    assert [label for _, label in ds.train] == [0, 1] and len(ds.val) == 2
    x, labels = CropSampler(ds.train, 8, (8, 12)).sample(3, torch.Generator().manual_seed(0))
    assert x.shape == (3, 3, 8, 8) and x.dtype == torch.uint8  # grayscale came out as RGB
    (tmp_path / "classes.txt").write_text("b\n")
    with pytest.raises(ValueError, match="not in"):
        load_dataset(tmp_path)


def test_dataset_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such data folder"):
        load_dataset(tmp_path / "nope")
    (tmp_path / "only").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "only" / "x.png")
    with pytest.raises(ValueError, match="at least 2 classes"):
        load_dataset(tmp_path)


# -- training --------------------------------------------------------------------------------

def test_tiny_training_run_learns_red_vs_blue(fmaps_run):
    state = torch.load(fmaps_run / "best.pt", weights_only=True)  # what the trainers read
    assert state["val"]["val_top1"] >= 0.9, state["val"]  # chance is 0.5
    rows = list(csv.DictReader(open(fmaps_run / "log.csv")))
    assert [int(r["step"]) for r in rows] == [5, 10, 15, 20, 25, 30]
    assert {"val_top1_q10", "val_mean_class_q90"} <= set(rows[0])
    assert rows[1]["val_top1"] and not rows[0]["val_top1"]


def test_codec_forward_net_stays_frozen(data_dir, tiny_model_dir, tmp_path):
    trainer = HeadTrainer(tiny_config(data_dir, tiny_model_dir, steps=2), tmp_path, quiet=True)
    before = {k: v.clone() for k, v in trainer.codec.model.state_dict().items()}
    trainer.run()
    after = trainer.codec.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_resume_continues_bit_for_bit(data_dir, tiny_model_dir, tmp_path):
    cfg = tiny_config(data_dir, tiny_model_dir, steps=6, val_every=3, log_every=1)
    straight = HeadTrainer(cfg, tmp_path / "a", quiet=True)
    straight.run()
    first = HeadTrainer(cfg, tmp_path / "b", quiet=True)
    first.run(max_steps=3)
    assert first.step == 3
    with pytest.raises(FileExistsError, match="--resume"):
        HeadTrainer(cfg, tmp_path / "b", quiet=True)
    resumed = HeadTrainer(cfg, tmp_path / "b", resume=True, quiet=True)
    assert resumed.step == 3
    resumed.run()
    assert resumed.step == 6
    a, b = straight.head.state_dict(), resumed.head.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    steps = [int(r["step"]) for r in csv.DictReader(open(tmp_path / "b" / "log.csv"))]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_fmap_cache_windows_are_the_whole_pictures_fmaps(data_dir, tiny_codec):
    from codedvision.vision.data import FMapCache, load_dataset, load_rgb, to_uint8_tensor

    items = load_dataset(data_dir).train[:3]
    net = tiny_codec.model.forward_net
    cache = FMapCache(net, items, (64, 72), tiny_codec.cfg.stride, 16, 2)
    assert len(cache.maps) == 3 * 2 * 2 and cache.labels.tolist() == [0] * 12
    image = to_uint8_tensor(load_rgb(items[0][0]))  # 64x64: the first side, not mirrored
    with torch.no_grad():
        whole = net(image[None].float() / 255)[0]
    assert torch.equal(cache.maps[0], whole.to(torch.float16))
    assert torch.equal(cache.maps[1], net(image.flip(2)[None].float() / 255)[0].half())
    y, labels = cache.sample(5, torch.Generator().manual_seed(0))
    assert y.shape == (5, whole.shape[0], 2, 2) and y.dtype == torch.float32
    assert labels.shape == (5,)
    with pytest.raises(ValueError, match="crop size"):
        FMapCache(net, items, (16,), tiny_codec.cfg.stride, 16, 2)


def test_fmaps_head_trains_from_the_cache_and_resumes_bit_for_bit(data_dir, tiny_model_dir,
                                                                  tmp_path):
    cfg = tiny_config(data_dir, tiny_model_dir, fmap_cache=(64, 80), steps=40, val_every=20)
    straight = HeadTrainer(cfg, tmp_path / "a", quiet=True)
    straight.run()
    assert straight.best["val_top1"] >= 0.9, straight.best  # chance is 0.5
    first = HeadTrainer(cfg, tmp_path / "b", quiet=True)
    first.run(max_steps=25)
    resumed = HeadTrainer(cfg, tmp_path / "b", resume=True, quiet=True)
    resumed.run()
    a, b = straight.head.state_dict(), resumed.head.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="fmaps heads only"):
        HeadTrainConfig(input="rgb", fmap_cache=(144,))


@pytest.mark.parametrize("degrade", ["jpeg", "codec"])
def test_rgb_baselines_are_input_transforms(data_dir, tiny_model_dir, tmp_path, degrade):
    cfg = tiny_config(data_dir, tiny_model_dir, input="rgb", degrade=degrade, steps=2,
                      quality_range=(5, 95), val_qualities=(30,))
    trainer = HeadTrainer(cfg, tmp_path, quiet=True)
    trainer.run()
    assert "val_top1_q30" in trainer.best
    x = torch.rand(2, 3, 64, 64)
    if degrade == "codec":  # the baseline's pixels are a lossy round trip, on 8-bit levels
        out = trainer.inputs(x, torch.tensor([10, 90]))
        assert out.shape == x.shape and not torch.equal(out, x)
        assert torch.equal((out * 255).round(), out * 255)


def test_degrade_needs_an_rgb_head():
    with pytest.raises(ValueError, match="rgb heads only"):
        HeadTrainConfig(degrade="jpeg")


# -- release ---------------------------------------------------------------------------------

def test_export_and_load_round_trip(fmaps_run, head_dir, tiny_codec):
    loaded = head_release.load(head_dir)
    manifest = json.loads((head_dir / "manifest.json").read_text())
    assert manifest["format"] == "codedvision-head"
    assert manifest["classes"] == ["blue", "red"] == loaded.classes
    assert loaded.codec_model_id == tiny_codec.model_id
    assert manifest["val"]["val_top1"] >= 0.9 and manifest["eval_side"] == 64
    assert len(manifest["head_id"]) == 8
    original, _ = load_head_checkpoint(fmaps_run / "best.pt")
    x = torch.randn(2, 16, 4, 5)
    with torch.no_grad():  # float16 weights: close, not equal
        assert torch.allclose(original(x), loaded.head(x), atol=2e-2, rtol=1e-2)
    with pytest.raises(FileExistsError):
        export_head_checkpoint(fmaps_run / "best.pt", head_dir)


def test_head_on_a_subset_of_fmaps_reads_the_first_channels():
    head = ClassifierHead(HeadConfig(fmaps=6, num_classes=3, channels=8, units=1, keep_fmaps=2))
    x = torch.randn(4, 6, 3, 3) * torch.tensor([5, 9, 1, 1, 1, 1.0])[None, :, None, None]
    head.set_normalisation([x])
    assert head.in_std.shape == (2,) and head(x).shape == (4, 3)
    assert 3 < head.in_std[0] < 7 and 6 < head.in_std[1] < 12
    with torch.no_grad():  # the full fMaps or only the first two: the same result
        assert torch.equal(head.eval()(x), head(x[:, :2]))
    with pytest.raises(ValueError, match="keep_fmaps"):
        HeadConfig(fmaps=6, num_classes=3, keep_fmaps=7)


def test_table1_variants_train_and_the_subset_survives_export(data_dir, tiny_model_dir, tmp_path):
    sub = HeadTrainer(tiny_config(data_dir, tiny_model_dir, steps=10, keep_fmaps=4),
                      tmp_path / "sub", quiet=True)
    sub.run()
    assert sub.head.in_mean.shape == (4,)
    export_head_checkpoint(tmp_path / "sub" / "best.pt", tmp_path / "sub-head")
    loaded = head_release.load(tmp_path / "sub-head")
    assert loaded.head.cfg.input_fmaps == 4 and torch.equal(loaded.head.in_std, sub.head.in_std)
    raw = HeadTrainer(tiny_config(data_dir, tiny_model_dir, steps=10, quantized=False),
                      tmp_path / "raw", quiet=True)
    x = torch.rand(2, 3, 64, 64)
    y = raw.codec.analysis(x)
    assert torch.equal(raw.inputs(x, torch.tensor([10, 90])), y)  # no rounding
    raw.run()
    assert "val_top1" in raw.best and "val_top1_q10" not in raw.best
    with pytest.raises(ValueError, match="unquantized"):
        export_head_checkpoint(tmp_path / "raw" / "best.pt", tmp_path / "raw-head")
    with pytest.raises(ValueError, match="fmaps heads only"):
        HeadTrainConfig(input="rgb", keep_fmaps=4)


def test_missing_shipped_head_says_how_to_train(monkeypatch, tmp_path):
    monkeypatch.setitem(head_release.DEFAULT_HEAD_DIRS, "fmaps", tmp_path / "none")
    with pytest.raises(head_release.NoHeadError, match="shipped yet.*train classifier"):
        head_release.load()


# -- classify --------------------------------------------------------------------------------

def test_classify_cvz_uses_fmaps_only(head_dir, tiny_codec, cvz, monkeypatch):
    def no_pixels(*_):
        raise AssertionError("the backward network ran")

    monkeypatch.setattr(tiny_codec.model.backward_net, "forward", no_pixels)
    res = classify([cvz["red"], cvz["blue"]], tiny_codec, head_release.load(head_dir), top_k=5)
    for rec, name in zip(res, ["red", "blue"]):
        assert rec["input"] == "fmaps" and rec["quality"] == 50
        assert len(rec["top"]) == 2  # top-k is capped at the number of classes
        assert sum(t["probability"] for t in rec["top"]) <= 1 + 1e-6
        assert rec["top"][0]["probability"] >= rec["top"][1]["probability"]
        assert rec["top"][0]["label"] == name
    top1 = classify([cvz["red"]], tiny_codec, head_release.load(head_dir), top_k=1)
    assert len(top1[0]["top"]) == 1


def test_cvz_from_another_model_is_refused(head_dir, tiny_codec, factorized_codec, tmp_path):
    other = tmp_path / "other.cvz"
    other.write_bytes(factorized_codec.encode(coloured("red", 3), quality=50))
    with pytest.raises(VisionError, match=f"made by codec model {factorized_codec.model_id.hex()}"):
        classify([other], tiny_codec, head_release.load(head_dir))
    with pytest.raises(VisionError, match="loaded codec"):
        Classifier(factorized_codec, head_release.load(head_dir))


def test_images_need_the_rgb_head(head_dir, rgb_head_dir, tiny_codec, cvz):
    with pytest.raises(VisionError, match="no RGB classifier head"):
        classify([cvz["png"]], tiny_codec, head_release.load(head_dir))
    res = classify([cvz["png"], cvz["red"]], tiny_codec, head_release.load(head_dir), top_k=2,
                   rgb_head=head_release.load(rgb_head_dir))
    assert [r["input"] for r in res] == ["rgb", "fmaps"]
    assert res[0]["width"] == 64 and len(res[0]["top"]) == 2


# -- show ------------------------------------------------------------------------------------

def test_show_writes_a_grid_of_fmap_channels(tiny_codec, cvz, tmp_path):
    out = tmp_path / "grid.png"
    info = show(cvz["red"].read_bytes(), out, tiny_codec, channels=4)
    with Image.open(out) as im:
        im.verify()
    with Image.open(out) as im:
        assert im.format == "PNG" and im.mode == "L"
        # 4 channels of 4x4 fMaps, each enlarged 16x to 64x64, in a 2x2 grid with 2px gaps
        assert im.size == (130, 130) == info["size"]
    with pytest.raises(FileExistsError):
        show(cvz["red"].read_bytes(), out, tiny_codec)
    grid = np.asarray(fmap_grid(torch.zeros(3, 2, 2)))  # constant channels are mid-grey
    assert (grid[:64, :64] == 128).all()


# -- CLI -------------------------------------------------------------------------------------

@pytest.fixture
def runner():
    return CliRunner()


def one_line_error(result, *parts):
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert result.exit_code != 0 and errors, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for p in parts:
        assert any(p in e for e in errors), result.stderr


def test_cli_classify_json(runner, head_dir, rgb_head_dir, tiny_model_dir, cvz):
    result = runner.invoke(main, ["classify", str(cvz["red"]), str(cvz["png"]), "--json",
                                  "--top-k", "1", "--head", str(head_dir), "--rgb-head",
                                  str(rgb_head_dir), "--model", str(tiny_model_dir)],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    recs = [json.loads(ln) for ln in result.stdout.splitlines()]
    assert [r["input"] for r in recs] == ["fmaps", "rgb"]
    assert recs[0]["top"][0]["label"] == "red" and len(recs[1]["top"]) == 1


def test_cli_classify_text(runner, head_dir, tiny_model_dir, cvz):
    result = runner.invoke(main, ["classify", str(cvz["blue"]), "--head", str(head_dir),
                                  "--model", str(tiny_model_dir)], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith(f"{cvz['blue']}: blue ") and "fMaps" in result.stdout


def test_cli_classify_without_a_shipped_head(runner, monkeypatch, tmp_path, cvz, tiny_model_dir):
    for kind in ("fmaps", "rgb"):
        monkeypatch.setitem(head_release.DEFAULT_HEAD_DIRS, kind, tmp_path / kind)
    result = runner.invoke(main, ["classify", str(cvz["red"]), "--model", str(tiny_model_dir)],
                           catch_exceptions=False)
    one_line_error(result, "no compressed-domain (fMaps) classifier head is shipped yet",
                   "codedvision train classifier")
    result = runner.invoke(main, ["classify", str(cvz["png"])], catch_exceptions=False)
    one_line_error(result, "no RGB (decode-then-classify) classifier head is shipped yet")


def test_cli_classify_errors_are_one_line(runner, head_dir, tiny_model_dir, cvz, tmp_path,
                                          factorized_codec):
    other = tmp_path / "other.cvz"
    other.write_bytes(factorized_codec.encode(coloured("red", 3), quality=50))
    result = runner.invoke(main, ["classify", str(other), str(tmp_path / "missing.cvz"),
                                  str(cvz["red"]), "--head", str(head_dir), "--model",
                                  str(tiny_model_dir)], catch_exceptions=False)
    one_line_error(result, "other.cvz was made by codec model", "missing.cvz: no such file")
    assert "red" in result.stdout and "1 of 3" in result.stderr  # the good file still ran
    result = runner.invoke(main, ["classify", str(cvz["red"]), "--head", str(tmp_path)],
                           catch_exceptions=False)
    one_line_error(result, "not a classifier head folder")


def test_cli_show(runner, tiny_model_dir, cvz, tmp_path):
    out = tmp_path / "fm.png"
    args = ["show", str(cvz["red"]), "-o", str(out), "--channels", "9", "--model",
            str(tiny_model_dir)]
    result = runner.invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size == (196, 196)  # 3x3 tiles of 64 px
    one_line_error(runner.invoke(main, args, catch_exceptions=False), "exists")
    one_line_error(runner.invoke(main, ["show", str(cvz["png"]), "-o", str(tmp_path / "x.png"),
                                        "--model", str(tiny_model_dir)],
                                 catch_exceptions=False), "red.png")


def test_cli_train_classifier_and_export_head(runner, data_dir, tiny_model_dir, tmp_path):
    config = tmp_path / "cfg.json"
    cfg = tiny_config(data_dir, tiny_model_dir, steps=3, val_every=3).to_dict()
    config.write_text(json.dumps(cfg))
    run = tmp_path / "run"
    result = runner.invoke(main, ["train", "classifier", "--config", str(config), "--run-dir",
                                  str(run)], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    assert "stopped at step 3" in result.stdout and (run / "best.pt").is_file()
    result = runner.invoke(main, ["train", "classifier", "--run-dir", str(run), "--resume",
                                  "--steps", "4"], catch_exceptions=False)
    assert result.exit_code == 0 and "stopped at step 4" in result.stdout, result.stderr
    one_line_error(runner.invoke(main, ["train", "classifier", "--run-dir", str(run), "--resume",
                                        "--input", "rgb"], catch_exceptions=False),
                   "--resume continues")
    one_line_error(runner.invoke(main, ["train", "classifier", "--run-dir", str(tmp_path / "r2")],
                                 catch_exceptions=False), "--data is required")
    one_line_error(runner.invoke(main, ["train", "classifier", "--data", str(data_dir),
                                        "--run-dir", str(tmp_path / "r3"), "--input", "fmaps",
                                        "--degrade", "jpeg"], catch_exceptions=False),
                   "rgb heads only")
    one_line_error(runner.invoke(main, ["train", "classifier", "--data", str(data_dir),
                                        "--run-dir", str(tmp_path / "r4"), "--input", "rgb",
                                        "--cache-fmaps"], catch_exceptions=False),
                   "fmaps heads only")
    result = runner.invoke(main, ["train", "classifier", "--config", str(config), "--run-dir",
                                  str(tmp_path / "r5"), "--cache-fmaps", "--steps", "2"],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    saved = json.loads((tmp_path / "r5" / "train_config.json").read_text())
    assert saved["fmap_cache"] == cfg["resize"]
    out = tmp_path / "head"
    result = runner.invoke(main, ["train", "export-head", str(run / "best.pt"), "-o", str(out)],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    assert "exported fmaps head" in result.stdout and (out / "head.safetensors").is_file()


def test_cli_error_in_a_real_process_has_no_traceback(head_dir, tiny_model_dir, tmp_path,
                                                      factorized_codec):
    other = tmp_path / "other.cvz"
    other.write_bytes(factorized_codec.encode(coloured("blue", 4), quality=20))
    proc = subprocess.run(
        [sys.executable, "-m", "codedvision.cli", "classify", str(other), "--head", str(head_dir),
         "--model", str(tiny_model_dir)],
        capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "made by codec model" in errors[0], proc.stderr


# -- the training inputs are what the codec really produces ---------------------------------

@pytest.mark.parametrize("quality", [0, 37, 100])
def test_training_fmaps_equal_decoded_fmaps(tiny_codec, quality):
    from codedvision.vision.data import quantized_fmaps, to_uint8_tensor

    image = coloured("red", 5)
    x = to_uint8_tensor(image)[None].float() / 255
    with torch.no_grad():
        trained_on = quantized_fmaps(tiny_codec, tiny_codec.analysis(x),
                                     torch.tensor([quality]))
    decoded = tiny_codec.fmaps(tiny_codec.encode(image, quality=quality))
    assert torch.equal(trained_on, decoded)


def test_codec_baseline_pixels_equal_decoded_pixels(tiny_codec):
    from codedvision.vision.data import codec_roundtrip, to_uint8_tensor

    image = coloured("blue", 6)
    x = to_uint8_tensor(image)[None].float() / 255
    sim = codec_roundtrip(tiny_codec, x, torch.tensor([40]))
    real = to_uint8_tensor(tiny_codec.decode(tiny_codec.encode(image, quality=40)))
    assert torch.equal((sim[0] * 255).round().to(torch.uint8), real)


# -- benchmark smoke run ----------------------------------------------------------------------

def test_benchmark_smoke_run(data_dir, tiny_model_dir, head_dir, rgb_head_dir, tmp_path,
                             load_benchmark):
    bench = load_benchmark("vision_benchmark")
    res = bench.main(["--data", str(data_dir), "--model", str(tiny_model_dir), "--head",
                      str(head_dir), "--rgb-head", str(rgb_head_dir), "--qualities",
                      "5,35,65,95", "--limit", "4", "--threads", "1", "--out", str(tmp_path),
                      "--quiet"])
    saved = json.loads((tmp_path / "vision_benchmark_limit4.json").read_text())
    assert saved["meta"]["images"] == 4 and saved["points"] == json.loads(json.dumps(res["points"]))
    by_path = {}
    for r in saved["points"]:
        by_path.setdefault(r["path"], []).append(r)
        assert 0 <= r["top1"] <= 1 and r["seconds_median"] > 0 and r["images"] == 4
        # the first quality and the uncompressed path are also timed in a row
        assert set(r["seconds_median_steady"]) == ({"1"} if r["quality"] in (None, 5) else set())
    assert {p: len(v) for p, v in by_path.items()} == {"fmaps": 4, "decoded": 4, "jpeg": 4,
                                                       "rgb": 1}
    fm = [r["bpp"] for r in by_path["fmaps"]]
    assert fm == sorted(fm)  # higher quality, more bits
    with Image.open(tmp_path / "accuracy_vs_bpp_limit4.png") as im:
        assert im.format == "PNG"


def test_table1_benchmark_smoke_run(data_dir, tiny_model_dir, tmp_path, load_benchmark,
                                    monkeypatch):
    bench = load_benchmark("vision_table1")
    base = tiny_config(data_dir, tiny_model_dir, fmap_cache=(64,)).to_dict()
    (tmp_path / "base.json").write_text(json.dumps(base))
    args = ["--work", str(tmp_path / "runs"), "--data", str(data_dir), "--model",
            str(tiny_model_dir), "--steps", "3", "--fmaps", "4,16", "--unquantized", "4",
            "--config", str(tmp_path / "base.json"), "--out", str(tmp_path / "out"), "--quiet"]
    built = []
    monkeypatch.setattr(D.FMapCache, "__init__", _counting(D.FMapCache.__init__, built))
    res = bench.main(args)
    assert len(built) == 1  # the heads share one fMap cache
    first = HeadTrainer(HeadTrainConfig.from_dict({**base, "steps": 3}),
                        tmp_path / "runs" / "fmaps4_quantized", resume=True, quiet=True)
    with pytest.raises(ValueError, match="shared fMap cache"):  # ... only where it fits
        HeadTrainer(tiny_config(data_dir, tiny_model_dir, fmap_cache=(64,), crop=48),
                    tmp_path / "other", quiet=True, cache=first.cache)
    assert [(r["fmaps"], r["quantized"]) for r in res["rows"]] == [(4, True), (16, True),
                                                                   (4, False)]
    assert all(r["steps"] == 3 and 0 <= r["val_top1"] <= 1 for r in res["rows"])
    assert "| 4 | yes |" in (tmp_path / "out" / "table1.md").read_text()
    again = bench.main(args)  # finished runs are read back, not retrained
    assert again["rows"][0]["val_top1"] == res["rows"][0]["val_top1"]


def _counting(fn, calls: list):
    def wrapped(*a, **kw):
        calls.append(1)
        return fn(*a, **kw)
    return wrapped


def test_cli_classify_loads_only_the_heads_its_files_need(runner, monkeypatch, tmp_path,
                                                          rgb_head_dir, cvz):
    for kind in ("fmaps", "rgb"):
        monkeypatch.setitem(head_release.DEFAULT_HEAD_DIRS, kind, tmp_path / kind)
    result = runner.invoke(main, ["classify", str(cvz["png"]), "--rgb-head", str(rgb_head_dir)],
                           catch_exceptions=False)  # no .cvz: no fMaps head, no codec needed
    assert result.exit_code == 0, result.stderr
    assert "RGB" in result.stdout


def test_shipped_heads_belong_to_the_shipped_codec():
    """A new default codec must come with retrained heads (a head reads one codec's fMaps)."""
    from codedvision.codec import Codec
    from codedvision.demo import SAMPLE

    codec = Codec()
    fm, rgb = head_release.load(None, "fmaps"), head_release.load(None, "rgb")
    assert fm.codec_model_id == codec.model_id and fm.input == "fmaps"
    assert rgb.input == "rgb" and fm.classes == rgb.classes and len(fm.classes) == 101
    image = Image.open(SAMPLE).convert("RGB")
    image = image.resize((fm.eval_side * image.width // image.height, fm.eval_side))
    clf = Classifier(codec, fm, rgb, top_k=3)
    for rec in (clf.classify_bytes(codec.encode(image, quality=50), "sample.cvz"),
                clf.classify_image(image, "sample.png")):
        assert len(rec["top"]) == 3 and rec["top"][0]["label"] in fm.classes


def test_heads_saved_with_an_fmap_index_load_or_fail_in_one_line(fmaps_run, tmp_path):
    """Heads exported before the first-K rule carry an `fmap_index` buffer: the identity
    (no channel subset) still loads, a chosen subset is refused with a one-line error."""
    head, state = load_head_checkpoint(fmaps_run / "best.pt")
    old = dict(state["head"])
    k = head.cfg.input_fmaps
    fresh = ClassifierHead(head.cfg)
    fresh.load_weights({**old, "fmap_index": torch.arange(k)}, "old.pt")
    assert torch.equal(fresh.in_std, head.in_std)
    with pytest.raises(ValueError, match="channel subset chosen by an earlier"):
        fresh.load_weights({**old, "fmap_index": torch.arange(k).flip(0)}, "old.pt")
    with pytest.raises(ValueError, match="do not fit the head's config"):
        ClassifierHead(HeadConfig(fmaps=16, num_classes=3, channels=8, units=1)).load_weights(
            old, "other.pt")


def test_an_fmaps_head_trains_on_a_mean_scale_codec(data_dir, mean_scale_model_dir, tmp_path):
    """Crops and whole val pictures whose fMaps are no multiple of the hyperprior's grid."""
    for cache in ((), (80,)):
        t = HeadTrainer(tiny_config(data_dir, mean_scale_model_dir, steps=4, val_every=4,
                                    crop=48, eval_side=72, fmap_cache=cache),
                        tmp_path / f"run{len(cache)}", quiet=True)
        t.run()
        assert 0 <= t.best["val_top1"] <= 1
