"""Training pipeline: a tiny run lowers the loss, resume is bit-exact, export codes."""

from __future__ import annotations

import copy
import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from codedvision.cli import main
from codedvision.codec import Codec
from codedvision.config import ModelConfig
from codedvision.train.codec import TrainConfig, Trainer, paper_lambda, paper_preset
from codedvision.train.hull import lower_convex_hull
from codedvision.train.export import export_checkpoint
from codedvision.train.runlog import read_checkpoint


def synthetic_photos(root, count: int, size: int):
    """`count` synthetic size x size 'photos' (smooth gradients, an edged block, noise) in the
    patches layout under `root`."""
    (root / "patches").mkdir()
    rng = np.random.RandomState(size)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for i in range(count):
        base = np.stack([np.sin(xx * (i + 1) * 3), np.cos(yy * (i + 2) * 2), xx * yy], -1)
        img = (base * 0.5 + 0.5) * 200 + rng.randn(size, size, 3) * 8
        img[size * 2 // 5 + i : size * 3 // 5, size // 5 : size // 2] = rng.randint(0, 255, 3)
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(root / "patches" / f"p{i}.png")
    return root


@pytest.fixture(scope="module")
def patch_dir(tmp_path_factory):
    """Six small synthetic photos."""
    return synthetic_photos(tmp_path_factory.mktemp("patches"), 6, 96)


def tiny_config(patch_dir, **kw) -> TrainConfig:
    base = dict(
        model=ModelConfig(channels=8, fmaps=8, hyper_channels=8),
        patches_dir=str(patch_dir), caltech_dir=None, holdout=2, patch=64, batch=2,
        steps=1000, lr=1e-3, warmup_steps=1, ae_steps=0, ramp_steps=1, threads=1,
        log_every=5, val_every=10, checkpoint_minutes=60.0,
    )
    base.update(kw)
    return TrainConfig(**base)


def _val_loss(t: Trainer) -> float:
    """The RD loss on the fixed held-out crops (noise seeded inside validate)."""
    t.model.eval()
    torch.manual_seed(0)
    with torch.no_grad():
        out = t.model(t.val_x, t.val_pos)
        return t.model.rd_loss(out, t.val_pos, t.cfg.patch**2)[0].item()


def test_tiny_training_run_lowers_the_loss(patch_dir, tmp_path):
    t = Trainer(tiny_config(patch_dir), tmp_path / "run", quiet=True)
    before = _val_loss(t)
    losses = [t.train_step()["loss"] for _ in range(80)]
    assert all(np.isfinite(losses))
    # the network starts from a mid-grey output (networks.py), so this is real learning
    assert _val_loss(t) < 0.8 * before


def test_resume_continues_bit_for_bit(patch_dir, tmp_path):
    straight = Trainer(tiny_config(patch_dir), tmp_path / "a", quiet=True)
    straight.run(max_steps=6)
    first = Trainer(tiny_config(patch_dir), tmp_path / "b", quiet=True)
    first.run(max_steps=3)
    resumed = Trainer(tiny_config(patch_dir), tmp_path / "b", resume=True, quiet=True)
    assert resumed.step == 3
    resumed.run(max_steps=3)
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_the_moving_average_is_validated_checkpointed_exported_and_resumed(patch_dir, tmp_path,
                                                                           load_benchmark):
    from codedvision.train.export import load_checkpoint_model

    straight = Trainer(tiny_config(patch_dir, ema_decay=0.9), tmp_path / "a", quiet=True)
    straight.run(max_steps=6)
    raw, avg = straight.model.state_dict(), straight.ema.module.state_dict()
    assert int(straight.ema.n_averaged) == 6
    assert not all(torch.equal(raw[k], avg[k]) for k in raw)  # an average, not a copy
    # validation reads the average (the weights that export ships)
    assert straight.eval_model is straight.ema.module
    # a run stopped and resumed keeps the same average, bit for bit, and the same training
    first = Trainer(tiny_config(patch_dir, ema_decay=0.9), tmp_path / "b", quiet=True)
    first.run(max_steps=3)
    resumed = Trainer(tiny_config(patch_dir), tmp_path / "b", resume=True, quiet=True)
    resumed.run(max_steps=3)
    for a, b in ((raw, resumed.model.state_dict()), (avg, resumed.ema.module.state_dict())):
        assert all(torch.equal(a[k], b[k]) for k in a)
    # loading and exporting the checkpoint give the average unless asked for the raw weights
    ckpt = tmp_path / "b" / "checkpoint.pt"
    assert all(torch.equal(avg[k], load_checkpoint_model(ckpt)[0].state_dict()[k]) for k in avg)
    assert all(torch.equal(raw[k], load_checkpoint_model(ckpt, average=False)[0].state_dict()[k])
               for k in raw)
    # the release check's --raw-too: both weight sets, average first, named as such
    (a, a_name), (r, r_name) = load_benchmark("heldout_anchors").models_of(ckpt, raw_too=True)
    assert "moving average" in a_name and "training weights" in r_name
    assert all(torch.equal(avg[k], a.state_dict()[k]) and torch.equal(raw[k], r.state_dict()[k])
               for k in avg)
    manifest = export_checkpoint(ckpt, tmp_path / "release")
    assert "moving average" in manifest["training"]["weights"]


def test_a_moving_average_can_be_added_to_a_run_on_resume(patch_dir, tmp_path):
    plain = Trainer(tiny_config(patch_dir), tmp_path / "a", quiet=True)
    plain.run(max_steps=6)
    first = Trainer(tiny_config(patch_dir), tmp_path / "b", quiet=True)
    first.run(max_steps=3)
    resumed = Trainer(tiny_config(patch_dir), tmp_path / "b", resume=True, quiet=True,
                      ema_decay=0.9)
    resumed.run(max_steps=3)
    a, b = plain.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)  # the training itself is unchanged
    assert int(resumed.ema.n_averaged) == 3  # the average starts at the resume
    assert read_checkpoint(tmp_path / "b" / "checkpoint.pt")["train_config"]["ema_decay"] == 0.9
    with pytest.raises(ValueError, match="ema_decay"):
        Trainer(tiny_config(patch_dir, ema_decay=1.0), tmp_path / "c", quiet=True)


def test_quality_balance_weights_each_image_by_its_lambda(patch_dir, tmp_path):
    from codedvision.train.codec import quality_weights

    cfg = tiny_config(patch_dir, quality_balance=0.5)
    lams = torch.tensor(cfg.model.lambdas)
    w = quality_weights(cfg, lams)
    mid = lams.log().mean().exp()
    assert torch.allclose(w, (mid / lams).sqrt())
    assert abs(w.log().mean().item()) < 1e-5  # the middle of the range keeps its scale
    assert (w[1:] < w[:-1]).all()  # the high qualities' losses are scaled down
    t = Trainer(cfg, tmp_path / "r", quiet=True)
    before = _val_loss(t)
    assert all(np.isfinite([t.train_step()["loss"] for _ in range(40)]))
    assert _val_loss(t) < before  # (the unweighted held-out loss) it still learns
    with pytest.raises(ValueError, match="quality_balance"):
        Trainer(tiny_config(patch_dir, quality_balance=0.5, schedule="paper"), tmp_path / "p",
                quiet=True)


def test_a_new_run_refuses_to_clobber_an_existing_checkpoint(patch_dir, tmp_path):
    Trainer(tiny_config(patch_dir), tmp_path / "r", quiet=True).run(max_steps=1)
    with pytest.raises(FileExistsError):
        Trainer(tiny_config(patch_dir), tmp_path / "r", quiet=True)


def test_log_csv_has_loss_rate_and_distortion(patch_dir, tmp_path):
    t = Trainer(tiny_config(patch_dir), tmp_path / "r", quiet=True)
    t.run(max_steps=10)
    lines = (tmp_path / "r" / "log.csv").read_text().splitlines()
    header = lines[0].split(",")
    for col in ("step", "loss", "bpp", "psnr", "val_bpp_mid", "val_psnr_mid"):
        assert col in header
    assert len(lines) == 3  # header + steps 5 and 10
    with Image.open(tmp_path / "r" / "log.png") as im:  # the learning-curve plot
        assert im.format == "PNG" and im.width > 100


def test_exported_checkpoint_encodes_and_decodes(patch_dir, tmp_path):
    t = Trainer(tiny_config(patch_dir), tmp_path / "r", quiet=True)
    t.run(max_steps=4)
    manifest = export_checkpoint(tmp_path / "r" / "checkpoint.pt", tmp_path / "release")
    assert manifest["training"]["steps"] == 4
    codec = Codec(tmp_path / "release")
    img = Image.open(patch_dir / "patches" / "p0.png")
    data = codec.encode(img, quality=50)
    out = codec.decode(data)
    assert out.size == img.size and out.mode == "RGB"


def test_a_blow_up_rolls_back_to_the_last_checkpoint_at_half_the_lr(patch_dir, tmp_path):
    t = Trainer(tiny_config(patch_dir, steps=30), tmp_path / "r", quiet=True)
    t.run(max_steps=10)  # a checkpoint at step 10
    with torch.no_grad():  # a blow-up: every later step is non-finite
        t.model.backward_net.net[-2].weight.fill_(float("nan"))
    t.run()
    assert t.step == 30 and t.lr_factor == 0.5
    assert [(r["diverged_at"], r["back_to"]) for r in t.rollbacks] == [(15, 10)]
    assert all(torch.isfinite(p).all() for p in t.model.parameters())
    state = read_checkpoint(tmp_path / "r" / "checkpoint.pt")
    assert state["step"] == 30 and state["lr_factor"] == 0.5 and len(state["rollbacks"]) == 1
    steps = [int(line.split(",")[0]) for line in
             (tmp_path / "r" / "log.csv").read_text().splitlines()[1:]]
    assert steps == sorted(set(steps)) and steps[-1] == 30  # the undone steps' rows are gone
    manifest = export_checkpoint(tmp_path / "r" / "checkpoint.pt", tmp_path / "release")
    assert manifest["training"]["rollbacks"][0]["back_to"] == 10


def test_the_divergence_guard_reads_psnr_and_loss_against_earlier_windows(patch_dir, tmp_path):
    from codedvision.train.codec import TrainingDiverged
    t = Trainer(tiny_config(patch_dir), tmp_path / "r", quiet=True)
    with pytest.raises(TrainingDiverged, match="before its first checkpoint"):
        t._roll_back("a test")

    def feed(n, **stats):
        for _ in range(n):
            t.step += 1
            why = t._check_health({"loss": 3.0, "psnr": 30.0, "grad_norm": 50.0, **stats})
            if why:
                return why

    assert feed(150) is None and feed(150, psnr=25.0) is None  # slow drifts pass
    assert "PSNR" in feed(30, psnr=15.0)
    t._recent.clear()
    assert "loss" in feed(30, loss=1000.0)
    t._recent.clear()
    t._windows.clear()
    assert feed(150, loss=-30.0) is None and feed(30, loss=-25.0) is None  # decoder-only


def test_the_manifest_names_caltech_only_when_the_run_drew_from_it():
    from codedvision.train.export import training_data
    tc = {"patches_dir": "/p", "caltech_dir": "/c", "caltech_fraction": 0.0}
    assert training_data(tc) == ["/p"]
    assert training_data({**tc, "caltech_fraction": 0.25}) == ["/p", "/c"]
    assert training_data({**tc, "caltech_dir": None, "caltech_fraction": 0.25}) == ["/p"]


def test_cli_trains_resumes_and_exports(patch_dir, tmp_path):
    cfg = tiny_config(patch_dir, steps=4)
    (tmp_path / "cfg.json").write_text(json.dumps(cfg.to_dict()))
    runner = CliRunner()
    run = str(tmp_path / "run")
    r = runner.invoke(main, ["train", "codec", "--config", str(tmp_path / "cfg.json"),
                             "--run-dir", run, "--steps", "2"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["train", "codec", "--run-dir", run, "--resume"])
    assert r.exit_code == 0, r.output
    assert "step 2" in r.output  # the --steps 2 of the first call is kept by the checkpoint
    r = runner.invoke(main, ["train", "codec", "--run-dir", run, "--resume", "--steps", "4",
                             "--ema-decay", "0.99"])
    assert r.exit_code == 0 and "step 4" in r.output, r.output
    r = runner.invoke(main, ["train", "export", f"{run}/checkpoint.pt", "-o", str(tmp_path / "rel")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "rel" / "model.safetensors").exists()
    manifest = json.loads((tmp_path / "rel" / "manifest.json").read_text())
    assert "last 2 steps" in manifest["training"]["weights"]
    r = runner.invoke(main, ["train", "export", f"{run}/checkpoint.pt", "-o", str(tmp_path / "rel")])
    assert r.exit_code != 0 and "exists" in r.output


def test_init_from_starts_a_new_run_from_trained_weights(patch_dir, tmp_path):
    first = Trainer(tiny_config(patch_dir), tmp_path / "a", quiet=True)
    first.run(max_steps=3)
    manifest = export_checkpoint(tmp_path / "a" / "checkpoint.pt", tmp_path / "rel")
    # the release stores the fMaps most-spread first: the same network, channels reordered
    order = manifest["fmap_order"]["checkpoint_channels"]
    assert sorted(order) == list(range(first.model.cfg.fmaps))
    sorted_model = copy.deepcopy(first.model)
    sorted_model.permute_fmaps(torch.tensor(order))
    for source, expected in ((tmp_path / "a" / "checkpoint.pt", first.model),
                             (tmp_path / "rel", sorted_model)):
        trained = expected.state_dict()
        run = tmp_path / f"warm-{source.name}"
        warm = Trainer(tiny_config(patch_dir, init_from=str(source)), run, quiet=True)
        assert warm.step == 0  # a fresh schedule and optimiser, the trained network
        got = warm.model.state_dict()
        assert all(torch.allclose(got[k].float(), trained[k].float(), rtol=2e-3, atol=1e-3)
                   for k in trained), source  # a release stores float16
        warm.run(max_steps=1)  # its release names where it began and the steps behind it
        lineage = export_checkpoint(run / "checkpoint.pt", run / "rel")["training"]["warm_start"]
        start = ({"from_model": manifest["model_id"]} if source.is_dir()
                 else {"from_checkpoint": str(source)})
        assert lineage == {**start, "its_steps": 3, "from_init": "default"}
    other = tiny_config(patch_dir, model=ModelConfig(channels=8, fmaps=12, hyper_channels=8),
                        init_from=str(tmp_path / "a" / "checkpoint.pt"))
    with pytest.raises(ValueError, match="model config differs"):
        Trainer(other, tmp_path / "mismatch", quiet=True)
    r = CliRunner().invoke(main, ["train", "codec", "--run-dir", str(tmp_path / "a"), "--resume",
                                  "--init-from", str(tmp_path / "rel")])
    assert r.exit_code != 0 and "--init-from" in r.output


def test_a_patch_that_is_not_a_multiple_of_the_stride_is_refused(patch_dir, tmp_path):
    with pytest.raises(ValueError, match="stride"):
        Trainer(tiny_config(patch_dir, patch=48), tmp_path / "r", quiet=True)


def test_paper_preset_is_the_papers_recipe():
    cfg = paper_preset()
    assert cfg.model.entropy_model == "factorized" and cfg.lr == 1e-4
    s = cfg.paper_stage_steps
    assert paper_lambda(cfg, 0) == 0.0 and paper_lambda(cfg, s - 1) == 0.0  # pre-training
    assert paper_lambda(cfg, s) == pytest.approx(0.0001)
    assert paper_lambda(cfg, cfg.steps - 1) == pytest.approx(0.002)
    assert cfg.steps == 21 * s


def test_paper_schedule_writes_a_snapshot_per_lambda_and_the_hull_picks_among_them(
        patch_dir, tmp_path):
    cfg = tiny_config(patch_dir, schedule="paper", paper_stage_steps=2, paper_lambda_step=0.001,
                      paper_lambda_max=0.003, steps=8,
                      model=ModelConfig(channels=8, fmaps=8, entropy_model="factorized"))
    run = tmp_path / "run"
    Trainer(cfg, run, quiet=True).run()
    lines = (run / "snapshots.csv").read_text().splitlines()
    assert len(lines) == 1 + 3  # lambdas 0.001, 0.002, 0.003
    r = CliRunner().invoke(main, ["train", "hull", str(run), "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert [s["lambda"] for s in res["snapshots"]] == pytest.approx([0.001, 0.002, 0.003])
    assert any(s["on_hull"] for s in res["snapshots"])
    # a snapshot is a fixed-rate model: every quality codes alike
    snap = res["snapshots"][-1]["snapshot"]
    export_checkpoint(snap, tmp_path / "rel")
    codec = Codec(tmp_path / "rel")
    img = Image.open(patch_dir / "patches" / "p0.png")
    low, high = (np.asarray(codec.decode(codec.encode(img, quality=q))) for q in (0, 100))
    assert np.array_equal(low, high)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint", b"PK\x03\x04damaged zip"])
def test_an_unreadable_checkpoint_is_a_one_line_error(tmp_path, content):
    bad = tmp_path / "run" / "checkpoint.pt"
    bad.parent.mkdir()
    bad.write_bytes(content)
    for args in (["train", "export", str(bad), "-o", str(tmp_path / "rel")],
                 ["train", "export-head", str(bad), "-o", str(tmp_path / "head")],
                 ["train", "codec", "--run-dir", str(bad.parent), "--resume"],
                 ["train", "classifier", "--run-dir", str(bad.parent), "--resume"]):
        r = CliRunner().invoke(main, args)
        assert r.exit_code == 1 and isinstance(r.exception, SystemExit), (args, r.exception)
        assert r.output.startswith("error: ") and "not a readable checkpoint" in r.output, args
        assert len(r.output.strip().splitlines()) == 1, r.output
    assert not (tmp_path / "rel").exists() and not (tmp_path / "head").exists()


def test_hull_without_snapshots_is_a_clear_error(tmp_path):
    r = CliRunner().invoke(main, ["train", "hull", str(tmp_path)])
    assert r.exit_code != 0 and "snapshots.csv" in r.output


def test_lower_convex_hull_keeps_only_rd_optimal_points():
    # (bpp, mse): index 2 lies above the chord of 1 and 3; index 4 costs more for more error
    pts = [(0.1, 100.0), (0.2, 50.0), (0.3, 45.0), (0.4, 20.0), (0.5, 30.0)]
    assert lower_convex_hull(pts) == [0, 1, 3]


def test_init_from_widens_the_quality_range_by_carrying_the_gains_over(patch_dir, tmp_path):
    """A run may start from a model with other lambdas (same network): the gain tables are
    interpolated in log-lambda inside the old range and extrapolated with the high-rate slope
    outside it; everything else is copied."""
    old_lams = (0.002, 0.008, 0.032)
    first = Trainer(tiny_config(patch_dir, model=ModelConfig(channels=8, fmaps=8,
                                                             hyper_channels=8, lambdas=old_lams)),
                    tmp_path / "a", quiet=True)
    first.run(max_steps=2)
    new_lams = (0.001, 0.002, 0.004, 0.032, 0.128)
    wide = ModelConfig(channels=8, fmaps=8, hyper_channels=8, lambdas=new_lams)
    warm = Trainer(tiny_config(patch_dir, model=wide,
                               init_from=str(tmp_path / "a" / "checkpoint.pt")),
                   tmp_path / "b", quiet=True)
    old, new = first.model.state_dict(), warm.model.state_dict()
    g_old, g_new = old["log_gain"], new["log_gain"]
    assert g_new.shape == (5, 8)
    assert torch.allclose(g_new[1], g_old[0]) and torch.allclose(g_new[3], g_old[2])
    assert torch.allclose(g_new[2], (g_old[0] + g_old[1]) / 2, atol=1e-6)  # halfway in log
    assert torch.allclose(g_new[0], g_old[0] + 0.5 * math.log(0.5), atol=1e-6)
    assert torch.allclose(new["log_inv_gain"][4], old["log_inv_gain"][2] - 0.5 * math.log(4),
                          atol=1e-6)
    assert all(torch.equal(new[k], old[k]) for k in old if not k.startswith("log_"))
    other = ModelConfig(channels=8, fmaps=12, hyper_channels=8, lambdas=new_lams)
    with pytest.raises(ValueError, match="only the lambdas may differ"):
        Trainer(tiny_config(patch_dir, model=other,
                            init_from=str(tmp_path / "a" / "checkpoint.pt")), tmp_path / "c",
                quiet=True)


@pytest.mark.parametrize("which", ["forward", "backward"])
def test_widened_networks_compute_the_same_outputs(which):
    from codedvision.networks import BackwardNet, ForwardNet, widen_net

    net, wider = (ForwardNet, dict(channels=13)) if which == "forward" else (
        BackwardNet, dict(backward_channels=13))
    torch.manual_seed(0)
    narrow = net(ModelConfig(channels=8, fmaps=6))
    with torch.no_grad():  # the residual branches start at zero: give every layer a say
        for p in narrow.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    wide = net(ModelConfig(fmaps=6, **{"channels": 8, **wider}))
    widen_net(narrow, wide, torch.Generator().manual_seed(1), noise=0.0)
    x = torch.rand(2, 3, 48, 80) if which == "forward" else torch.randn(2, 6, 3, 5)
    with torch.no_grad():
        assert torch.allclose(wide(x), narrow(x), rtol=1e-4, atol=1e-4)
    body = [m for m in wide.net if hasattr(m, "body")][0].body
    w = body[0].weight  # copies are read with different shares
    assert not torch.allclose(w[:, 0], w[:, 8])
    assert torch.equal(w[8], w[0])  # ... but computed alike, without noise
    widen_net(narrow, wide, torch.Generator().manual_seed(1))  # the default: noise
    w = body[0].weight
    assert not torch.equal(w[8], w[0]) and torch.allclose(w[8], w[0], atol=1e-3)
    with torch.no_grad():  # the output moves by about the noise's 1e-3
        assert (wide(x) - narrow(x)).abs().mean() < 0.01 * narrow(x).abs().mean()
    with pytest.raises(ValueError, match="narrow"):
        widen_net(wide, narrow, torch.Generator())


def test_a_run_can_start_from_a_narrower_model(patch_dir, tmp_path):
    first = Trainer(tiny_config(patch_dir), tmp_path / "a", quiet=True)
    first.run(max_steps=20)
    val_a = first.validate()
    small = tiny_config(patch_dir).model
    wide = dataclasses.replace(small, channels=small.channels + 4,
                               backward_channels=small.channels + 8)
    t = Trainer(tiny_config(patch_dir, model=wide, init_from=str(tmp_path / "a" / "checkpoint.pt")),
                tmp_path / "b", quiet=True)
    val_b = t.validate()  # the same rates and images, up to the symmetry-breaking noise
    for key in ("val_psnr_mid", "val_bpp_mid"):
        assert val_b[key] == pytest.approx(val_a[key], rel=0.02)
    t.run(max_steps=5)
    assert t.model.forward_net.net[0].out_channels == small.channels + 4


def test_decoder_only_training_of_a_wider_backward_net_keeps_the_files(patch_dir, tmp_path):
    first = Trainer(tiny_config(patch_dir), tmp_path / "a", quiet=True)
    first.run(max_steps=20)
    source, val_a = tmp_path / "a" / "checkpoint.pt", first.validate()
    wide_model = dataclasses.replace(tiny_config(patch_dir).model, backward_channels=12)
    cfg = tiny_config(patch_dir, model=wide_model, init_from=str(source), train_parts="decoder")
    t = Trainer(cfg, tmp_path / "b", quiet=True)
    before = {k: v.clone() for k, v in t.model.state_dict().items()}
    val0 = t.validate()  # the widened network starts from the same images
    assert val0["val_psnr_mid"] == pytest.approx(val_a["val_psnr_mid"], abs=1e-3)
    t.run(max_steps=15)
    after = t.model.state_dict()
    changed = {k.split(".")[0] for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"backward_net"}  # the gains too stay: Codec.fmaps returns the same
    val1 = t.validate()
    assert val1["val_bpp_mid"] == val0["val_bpp_mid"]  # the rate cannot move
    assert val1["val_psnr_mid"] > val0["val_psnr_mid"] - 0.5
    export_checkpoint(source, tmp_path / "rel_a")
    export_checkpoint(tmp_path / "b" / "checkpoint.pt", tmp_path / "rel_b")
    a, b = Codec(tmp_path / "rel_a"), Codec(tmp_path / "rel_b")
    img = np.asarray(Image.open(next((patch_dir / "patches").iterdir())))[:64, :64]
    # the same fMaps in the files (same sizes); only the model id in the header differs
    assert torch.equal(a.quantized_fmaps(a.encode(img, 50))[1],
                       b.quantized_fmaps(b.encode(img, 50))[1])
    with pytest.raises(ValueError, match="train_parts"):
        Trainer(tiny_config(patch_dir, train_parts="decoder"), tmp_path / "c", quiet=True)
    other_anchors = dataclasses.replace(wide_model, lambdas=(0.001, 0.01, 0.1))
    with pytest.raises(ValueError, match="keeps the source's lambdas, forward"):
        Trainer(tiny_config(patch_dir, model=other_anchors, init_from=str(source),
                            train_parts="decoder"), tmp_path / "e", quiet=True)
    narrow = dataclasses.replace(wide_model, backward_channels=4)
    with pytest.raises(ValueError, match="may be wider"):
        Trainer(tiny_config(patch_dir, model=narrow, init_from=str(source)), tmp_path / "d",
                quiet=True)


def _exports_and_has_no_way_back(t, patch_dir, tmp_path, error: str) -> None:
    """The grown run `t` (in tmp_path/b) exports to a release that codes a patch, and the plain
    tiny config may not start from it (a run cannot shrink back): ValueError matching error."""
    t.save_checkpoint()
    export_checkpoint(tmp_path / "b" / "checkpoint.pt", tmp_path / "rel")
    codec = Codec(tmp_path / "rel")
    img = np.asarray(Image.open(next((patch_dir / "patches").iterdir())))[:64, :64]
    assert codec.decode(codec.encode(img, 50)).size == (64, 64)
    with pytest.raises(ValueError, match=error):
        Trainer(tiny_config(patch_dir, init_from=str(tmp_path / "b" / "checkpoint.pt")),
                tmp_path / "c", quiet=True)


def test_a_scale_only_run_continues_as_mean_scale(patch_dir, tmp_path):
    first = Trainer(tiny_config(patch_dir), tmp_path / "a", quiet=True)
    first.run(max_steps=10)
    model = dataclasses.replace(tiny_config(patch_dir).model, mean_scale=True)
    t = Trainer(tiny_config(patch_dir, model=model, init_from=str(tmp_path / "a" / "checkpoint.pt")),
                tmp_path / "b", quiet=True)
    same = [(k, v) for k, v in t.validate().items() if not math.isnan(v)]
    assert same and same == [(k, v) for k, v in first.validate().items()
                             if not math.isnan(v)]  # the means start at zero: the same model
    losses = [t.train_step()["loss"] for _ in range(10)]
    assert all(np.isfinite(losses))
    means = t.model.hyper_synthesis.net[-1].weight[8:]
    signed = t.model.hyper_analysis.net[0].weight[:, 8:]
    assert means.abs().sum() > 0 and signed.abs().sum() > 0  # ... and then learn
    _exports_and_has_no_way_back(t, patch_dir, tmp_path, "may become mean-scale")


def test_a_mean_scale_run_continues_with_a_checkerboard_context(patch_dir, tmp_path):
    mean_scale = dataclasses.replace(tiny_config(patch_dir).model, mean_scale=True)
    first = Trainer(tiny_config(patch_dir, model=mean_scale), tmp_path / "a", quiet=True)
    first.run(max_steps=10)
    model = dataclasses.replace(mean_scale, checkerboard=True)
    t = Trainer(tiny_config(patch_dir, model=model, context_lr_scale=3.0,
                            init_from=str(tmp_path / "a" / "checkpoint.pt")),
                tmp_path / "b", quiet=True)
    same = [(k, v) for k, v in t.validate().items() if not math.isnan(v)]
    assert same and same == [(k, v) for k, v in first.validate().items()
                             if not math.isnan(v)]  # the corrections start at zero
    losses = [t.train_step()["loss"] for _ in range(10)]
    assert all(np.isfinite(losses))
    assert t.model.context.groups[0].params[-1].weight.abs().sum() > 0  # ... and then learn
    assert [g["lr"] / t.cfg.lr for g in t.opt.param_groups] == [1.0, 3.0]  # warm-up over
    with pytest.raises(ValueError, match="order is fixed"):
        t.model.permute_fmaps(torch.arange(8).flip(0))
    with pytest.raises(ValueError, match="keeps the source's lambdas"):  # files would change
        Trainer(tiny_config(patch_dir, model=model, train_parts="decoder",
                            init_from=str(tmp_path / "a" / "checkpoint.pt")), tmp_path / "d",
                quiet=True)
    _exports_and_has_no_way_back(t, patch_dir, tmp_path, "gain a checkerboard context")
    manifest = json.loads((tmp_path / "rel" / "manifest.json").read_text())
    assert manifest["fmap_order"]["by"].startswith("as trained")


def test_a_run_continues_with_more_forward_units_at_half_resolution(patch_dir, tmp_path):
    from codedvision.networks import ForwardNet, add_half_units

    first = Trainer(tiny_config(patch_dir), tmp_path / "a", quiet=True)
    first.run(max_steps=10)
    small = tiny_config(patch_dir).model
    deeper = dataclasses.replace(small, forward_half_units=1, channels=small.channels + 2)
    t = Trainer(tiny_config(patch_dir, model=deeper,
                            init_from=str(tmp_path / "a" / "checkpoint.pt")),
                tmp_path / "b", quiet=True)
    val_a, val_b = first.validate(), t.validate()  # the added unit starts as the identity
    for key in ("val_psnr_mid", "val_bpp_mid"):
        assert val_b[key] == pytest.approx(val_a[key], rel=0.02)
    unit = t.model.forward_net.net[2].body
    assert not unit[2].weight.any()
    assert all(np.isfinite(t.train_step()["loss"]) for _ in range(5))
    assert unit[2].weight.abs().sum() > 0  # ... and then learns
    _exports_and_has_no_way_back(t, patch_dir, tmp_path, "more forward_half_units")
    torch.manual_seed(0)
    net = ForwardNet(small)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    x = torch.rand(2, 3, 32, 48)
    with torch.no_grad():
        assert torch.equal(add_half_units(net, dataclasses.replace(small, forward_half_units=2))(x),
                           net(x))
    assert "forward_half_units" not in small.to_dict()  # old configs stay as they were
    with pytest.raises(ValueError, match="forward_half_units"):
        ModelConfig(forward_half_units=-1)


def test_capacity_probe_reports_every_anchor_and_a_linear_yardstick(load_benchmark):
    from codedvision.model import CodedVisionModel

    bench = load_benchmark("capacity_probe")
    torch.manual_seed(0)
    model = CodedVisionModel(ModelConfig(channels=8, fmaps=8, hyper_channels=8, mean_scale=True))
    x = torch.rand(2, 3, 64, 64)
    rows = bench.probe(model.eval(), x)
    assert [r["anchor"] for r in rows] == list(range(len(model.cfg.lambdas)))
    assert all(0 <= r["active_fmaps"] <= 8 and r["bpp"] > 0 for r in rows)
    ref = bench.linear_reference(x, 16, [1, 8, 16 * 16 * 3])
    assert ref[1] < ref[8] < ref[768] and ref[768] > 100  # all components: lossless


def test_pca_init_is_a_lossless_linear_code_when_every_component_is_kept():
    """With two down-sampling steps and 48 channels nothing is cut: the PCA-initialised
    networks reconstruct any image exactly (the linear code the training starts from)."""
    from codedvision.model import CodedVisionModel
    from codedvision.train.pca_init import pca_initialise

    rng = np.random.RandomState(1)
    images = [rng.randint(0, 256, (32, 40, 3), dtype=np.uint8) for _ in range(4)]
    model = CodedVisionModel(ModelConfig(channels=48, fmaps=48, downsamples=2,
                                         hyper_channels=8)).eval()
    pca_initialise(model, images)
    x = torch.rand(2, 3, 16, 24)
    with torch.no_grad():
        assert torch.allclose(model.backward_net(model.forward_net(x)), x, atol=1e-4)


def test_pca_init_with_fewer_channels_is_a_projection():
    """Cut to 16 components, the code is an orthogonal projection: coding its own output
    again changes nothing."""
    from codedvision.model import CodedVisionModel
    from codedvision.train.pca_init import pca_initialise

    rng = np.random.RandomState(2)
    images = [rng.randint(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(4)]
    model = CodedVisionModel(ModelConfig(channels=16, fmaps=16, downsamples=2,
                                         hyper_channels=8)).eval()
    pca_initialise(model, images)

    def code(t):
        return model.backward_net(model.forward_net(t))

    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        once = code(x)
        assert not torch.allclose(once, x, atol=1e-2)
        assert torch.allclose(code(once), once, atol=1e-4)


def test_a_pca_initialised_run_starts_ahead_of_a_default_one_and_trains(patch_dir, tmp_path):
    model = ModelConfig(channels=16, fmaps=16, hyper_channels=8)
    default = Trainer(tiny_config(patch_dir, model=model), tmp_path / "d", quiet=True)
    pca = Trainer(tiny_config(patch_dir, model=model, init="pca", lr=3e-4), tmp_path / "p",
                  quiet=True)
    start = _val_loss(pca)
    assert start < _val_loss(default)
    losses = [pca.train_step()["loss"] for _ in range(20)]
    assert all(np.isfinite(losses))
    assert _val_loss(pca) < 0.8 * start


@pytest.mark.parametrize("kw,match", [
    (dict(init="zeros"), "unknown init"),
    (dict(init="pca", init_from="x.pt"), "cannot be combined"),
    (dict(init="pca", model=ModelConfig(channels=8, fmaps=8, hyper_channels=8)), "channels >= 12"),
])
def test_bad_init_settings_are_refused(patch_dir, tmp_path, kw, match):
    with pytest.raises(ValueError, match=match):
        Trainer(tiny_config(patch_dir, **kw), tmp_path / "run", quiet=True)


@pytest.fixture(scope="module")
def large_patch_dir(tmp_path_factory):
    """Four 192x192 synthetic photos: room for MS-SSIM's five scales."""
    return synthetic_photos(tmp_path_factory.mktemp("large"), 4, 192)


def test_an_msssim_mix_trains_and_the_log_records_held_out_msssim(large_patch_dir, tmp_path):
    cfg = tiny_config(large_patch_dir, patch=192, batch=1, holdout=3, msssim_weight=0.7)
    plain = Trainer(dataclasses.replace(cfg, msssim_weight=0.0), tmp_path / "plain", quiet=True)
    mixed = Trainer(cfg, tmp_path / "mixed", quiet=True)
    # same weights, same batch: only the distortion differs
    assert mixed.train_step()["loss"] != plain.train_step()["loss"]
    mixed.run(max_steps=9)
    rows = (tmp_path / "mixed" / "log.csv").read_text().splitlines()
    header = rows[0].split(",")
    last = dict(zip(header, rows[-1].split(",")))
    for q in ("low", "mid", "high"):
        assert 0 < float(last[f"val_msssim_db_{q}"]) < 60


@pytest.mark.parametrize("kw,match", [
    (dict(msssim_weight=1.5), "between 0 and 1"),
    (dict(msssim_weight=0.5), "at least 161 px"),
    (dict(msssim_weight=0.5, schedule="paper", patch=192), "variable-rate"),
])
def test_bad_msssim_settings_are_refused(large_patch_dir, tmp_path, kw, match):
    with pytest.raises(ValueError, match=match):
        Trainer(tiny_config(large_patch_dir, holdout=1, **kw), tmp_path / "run", quiet=True)


def test_a_log_begun_with_fewer_columns_gains_the_new_ones(tmp_path):
    from codedvision.train.runlog import RunLog

    path = tmp_path / "log.csv"
    path.write_text("step,loss\n5,1.5\n10,1.25\n")
    RunLog(path, ["step", "loss", "val_msssim_db_mid"], quiet=True).append(
        {"step": 15, "loss": 1.0, "val_msssim_db_mid": 12.5})
    assert path.read_text().splitlines() == [
        "step,loss,val_msssim_db_mid", "5,1.5,", "10,1.25,", "15,1.0,12.5"]


def test_heldout_anchors_reports_every_anchor_as_coded(load_benchmark):
    """The release check before a Kodak run: one point per anchor, from the rounded fMaps."""
    from codedvision.model import CodedVisionModel

    bench = load_benchmark("heldout_anchors")
    torch.manual_seed(0)
    model = CodedVisionModel(ModelConfig(channels=8, fmaps=8, hyper_channels=8, mean_scale=True,
                                         checkerboard=True)).eval()
    x = torch.rand(2, 3, 192, 192)  # MS-SSIM needs sides over 160; the hyper nets, 64s
    points = bench.anchor_points(model, x)
    assert [p["anchor"] for p in points] == list(range(len(model.cfg.lambdas)))
    assert all(p["bpp"] > 0 and p["psnr"] > 0 and p["ms_ssim_db"] is not None for p in points)
    assert points == bench.anchor_points(model, x)  # deterministic: no training noise


def test_quality_gradients_reports_every_anchor_and_balance_evens_them(load_benchmark):
    from codedvision.model import CodedVisionModel

    bench = load_benchmark("quality_gradients")
    torch.manual_seed(0)
    model = CodedVisionModel(ModelConfig(channels=8, fmaps=8, hyper_channels=8, mean_scale=True))
    x = torch.rand(2, 3, 64, 64)
    plain = bench.anchor_gradients(model, TrainConfig(model=model.cfg), x)
    balanced = bench.anchor_gradients(model, TrainConfig(model=model.cfg, quality_balance=0.5), x)
    assert [r["anchor"] for r in plain] == list(range(len(model.cfg.lambdas)))
    spread = [r[-1]["grad_norm"] / r[0]["grad_norm"] for r in (plain, balanced)]
    assert spread[1] < spread[0]  # the weights shrink the top's share


def test_coding_overhead_compares_the_estimate_with_real_files(load_benchmark, checkerboard_codec):
    """One row per anchor's quality; the file rate is the real .cvz size, near the estimate."""
    bench = load_benchmark("coding_overhead")
    torch.manual_seed(0)
    x = torch.rand(2, 3, 64, 64)
    rows = bench.overhead_rows(checkerboard_codec, x)
    n = len(checkerboard_codec.model.cfg.lambdas)
    assert [r["quality"] for r in rows] == [round(100 * k / (n - 1)) for k in range(n)]
    images = [(x[i].permute(1, 2, 0).numpy() * 255).round().astype("uint8") for i in range(2)]
    bits = sum(8 * len(checkerboard_codec.encode(im, quality=rows[-1]["quality"])) for im in images)
    assert rows[-1]["file_bpp"] == round(bits / (2 * 64 * 64), 4)
    assert all(r["estimated_bpp"] > 0 and abs(r["overhead_percent"]) < 100 for r in rows)


def fake_caltech(root, sizes):
    """A Caltech-101-like folder: one train photo per (w, h) in `sizes`, plus one val photo."""
    (root / "images" / "c").mkdir(parents=True)
    lines = ["relative_path,label,split"]
    for i, (w, h) in enumerate([*sizes, (400, 400)]):
        name = f"images/c/image_{i:04d}.jpg"
        Image.new("RGB", (w, h), (i * 9 % 256, 90, 30)).save(root / name)
        lines.append(f"{name},c,{'val' if i == len(sizes) else 'train'}")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root


def test_caltech_holdout_keeps_large_photos_out_of_training(tmp_path):
    """Held-out Caltech photos are spread over the large ones, never trained on, the same for
    every patch size, and the val split is never read."""
    from codedvision.train.data import caltech_train_split, load_caltech_held_out, load_caltech_train

    root = fake_caltech(tmp_path, [(300, 280), (100, 90), (260, 400), (320, 300), (280, 300)])
    train, held = caltech_train_split(root, 0.75, 2)
    assert len(train) == 3 and len(held) == 2
    assert all(min(Image.open(root / r["relative_path"]).size) * 0.75 >= 192 for r in held)
    assert not {r["relative_path"] for r in train} & {r["relative_path"] for r in held}
    assert all(r["split"] == "train" for r in train + held)
    everything, none = caltech_train_split(root, 0.75, 0)
    assert len(everything) == 5 and none == []
    assert len(load_caltech_train(root, 64, 0.75)) == 5  # no holdout: every train photo
    assert len(load_caltech_train(root, 64, 0.75, holdout=2)) == 3
    assert len(load_caltech_train(root, 192, 0.75, holdout=2)) == 2  # the 100x90 one is too small
    assert [a.shape[2] for a in load_caltech_held_out(root, 0.75, 2)] == [3, 3]
    with pytest.raises(ValueError, match="only 4 Caltech-101 train photos"):
        caltech_train_split(root, 0.75, 5)


def test_heldout_anchors_crops_the_held_out_caltech_photos(tmp_path, load_benchmark):
    root = fake_caltech(tmp_path, [(300, 280), (100, 90), (260, 400), (320, 300)])
    x = load_benchmark("heldout_anchors").held_out_caltech(root, 2, 0.75)
    assert x.shape == (2, 3, 192, 192) and 0 <= float(x.min()) and float(x.max()) <= 1


def test_the_trainer_leaves_the_held_out_caltech_photos_out(patch_dir, tmp_path):
    root = fake_caltech(tmp_path / "caltech", [(300, 280), (100, 90), (260, 400), (320, 300)])
    t = Trainer(tiny_config(patch_dir, caltech_dir=str(root), caltech_fraction=0.5,
                            caltech_holdout=1), tmp_path / "run", quiet=True)
    assert len(t.sources[1].images) == 3


def test_heldout_anchors_bd_rates_of_fewer_bits_at_every_quality(load_benchmark):
    bench = load_benchmark("heldout_anchors")
    ref = [{"bpp": b, "psnr": q, "ms_ssim_db": q / 2} for b, q in ((0.2, 30), (0.5, 33),
                                                                   (1.0, 36), (2.0, 39))]
    cheaper = [{**p, "bpp": p["bpp"] * 0.9} for p in ref]
    d = bench.bd_rates(ref, cheaper)
    assert set(d) == set(bench.METRICS)
    assert all(v == pytest.approx(-10.0, abs=0.1) for v in d.values())


def test_heldout_anchors_merges_image_sets_by_their_sizes(load_benchmark):
    bench = load_benchmark("heldout_anchors")
    a = [{"anchor": 0, "lambda": 0.1, "bpp": 1.0, "psnr": 30.0, "ms_ssim_db": 10.0}]
    b = [{"anchor": 0, "lambda": 0.1, "bpp": 4.0, "psnr": 40.0, "ms_ssim_db": 16.0}]
    assert bench.mean_points([a, b], [3, 1]) == [
        {"anchor": 0, "lambda": 0.1, "bpp": 1.75, "psnr": 32.5, "ms_ssim_db": 11.5}]
