"""Is a training run ahead of the shipped model yet? A cheap check before a Kodak evaluation.

    python benchmarks/heldout_anchors.py [MODEL ...] [--out FILE]
        # release folders or checkpoint.pt files; the first is the reference
        # (default: the shipped model alone); --raw-too: a checkpoint's training weights
        # besides its moving average

On the trainer's held-out patches (the last 16 of ../shared/data/train_patches, 256x256, never
trained on; not Kodak) every model codes at each of its quality anchors as the codec would
(fMaps and hyper-latents rounded, rates from the discrete likelihoods, estimated rather than
real file sizes). Prints bpp, PSNR and MS-SSIM (dB) per anchor, and the BD-rate of every model
after the first against the first, on both metrics, so that runs with different anchor counts
compare over the quality range they share. A few minutes on two cores; a Kodak evaluation
(`codedvision evaluate`, then `compare_releases.py`) stays the release test.

The patches are all textured (the set skipped crops of luma std under 10: no sky, no walls).
`--caltech N` adds the N Caltech-101 train photos that a run with `caltech_holdout` N never
trained on (downscaled by the run's caltech_scale, `--caltech-scale`, default 0.75; centre
192x192 crops), whose plain
backgrounds the patches lack; the BD-rates are then over the mean points of both sets, and
each set's own BD-rates are written beside them (`bd_rate_vs_first_by_set`).
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from capacity_probe import held_out_arguments, held_out_patches, write_json  # noqa: E402

from codedvision.evaluate.bdrate import bd_rate  # noqa: E402
from codedvision.metrics import ms_ssim_db  # noqa: E402
from codedvision.train.codec import TrainConfig, batch_ms_ssim  # noqa: E402
from codedvision.train.data import CALTECH_HOLDOUT_SIDE, load_caltech_held_out  # noqa: E402
from codedvision.train.export import checkpoint_description, load_trained_state  # noqa: E402

METRICS = ("psnr", "ms_ssim_db")


@torch.no_grad()
def anchor_points(model, x: torch.Tensor) -> list[dict]:
    """Mean bpp, PSNR and MS-SSIM (dB of the mean MS-SSIM) of x coded at each anchor."""
    n, pixels = x.shape[0], x.shape[2] * x.shape[3]
    y = model.forward_net(x).float()
    rows = []
    for k, lam in enumerate(model.cfg.lambdas):
        gain, inv_gain = model.gains(torch.full((n,), float(k)))
        out = model.coded_rd(x, y * gain, inv_gain, autocast=True)
        x_hat = out["x_hat"].clamp(0, 1)
        mse = ((x_hat - x) ** 2).mean((1, 2, 3))
        rows.append({"anchor": k, "lambda": lam,
                     "bpp": round(float((out["bits"] / pixels).mean()), 4),
                     "psnr": round(float((-10 * torch.log10(mse)).mean()), 2),
                     "ms_ssim_db": round(ms_ssim_db(float(batch_ms_ssim(x_hat, x).mean())), 2)})
    return rows


def held_out_caltech(root: Path, n: int, scale: float) -> torch.Tensor:
    """The n held-out Caltech-101 train photos of caltech_holdout n, downscaled by `scale`, as
    centre CALTECH_HOLDOUT_SIDE-square crops: a (n,3,s,s) float tensor in [0,1]."""
    side, crops = CALTECH_HOLDOUT_SIDE, []
    for a in load_caltech_held_out(root, scale, n):
        y, x = (a.shape[0] - side) // 2, (a.shape[1] - side) // 2
        crops.append(torch.from_numpy(a[y : y + side, x : x + side].copy()).permute(2, 0, 1))
    return torch.stack(crops).float() / 255


def mean_points(sets: list[list[dict]], sizes: list[int]) -> list[dict]:
    """Per-anchor points of several image sets merged into their image-weighted means."""
    total = sum(sizes)
    return [{**rows[0], **{m: round(sum(r[m] * n for r, n in zip(rows, sizes)) / total, 4)
                           for m in ("bpp", *METRICS)}}
            for rows in zip(*sets)]


def bd_rates(ref: list[dict], points: list[dict]) -> dict[str, float | None]:
    """{metric: BD-rate (%) of `points` against `ref`}, over the quality range they share."""
    return {m: bd_rate([p["bpp"] for p in ref], [p[m] for p in ref],
                       [p["bpp"] for p in points], [p[m] for p in points])
            for m in METRICS}


def _fmt_bd(d: dict) -> str:
    return ", ".join(f"{m} {v:+.1f}%" if v is not None else f"{m} n/a" for m, v in d.items())


def models_of(path, raw_too: bool = False) -> list[tuple]:
    """(model, description) for a release folder or checkpoint; with raw_too, a checkpoint
    that keeps a moving average gives its training weights as a second model, from the same
    read of the file."""
    model, name, state = load_trained_state(path)
    models = [(model, name)]
    if raw_too and state is not None and "ema" in state:
        raw = copy.deepcopy(model)
        raw.load_state_dict(state["model"])
        models.append((raw, checkpoint_description(path, state, False)))
    return models


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="*", default=[None], help="release folders or checkpoint.pt")
    ap.add_argument("--raw-too", action="store_true",
                    help="for a checkpoint that keeps a moving average of its weights "
                         "(ema_decay), also its training weights")
    ap.add_argument("--caltech", type=int, default=0, metavar="N",
                    help="also the N held-out Caltech-101 train photos of caltech_holdout N")
    ap.add_argument("--caltech-dir", type=Path, default=Path(TrainConfig().caltech_dir))
    ap.add_argument("--caltech-scale", type=float, default=TrainConfig().caltech_scale,
                    help="the run's caltech_scale (default %(default)s): it picks the photos")
    held_out_arguments(ap, None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    x, holdout = held_out_patches(args.patches)
    sets = {"patches": x}
    res = {"patches": f"{args.patches} (last {holdout}, 256x256)", "models": []}
    if args.caltech:
        scale = args.caltech_scale
        sets["caltech"] = held_out_caltech(args.caltech_dir, args.caltech, scale)
        res["caltech"] = (f"{args.caltech_dir} (caltech_holdout {args.caltech}, downscaled by "
                          f"{scale}, centre {CALTECH_HOLDOUT_SIDE}x{CALTECH_HOLDOUT_SIDE})")
    models = [m for path in args.models for m in models_of(path, args.raw_too)]
    for model, name in models:
        by_set = {k: anchor_points(model, v) for k, v in sets.items()}
        points = (mean_points(list(by_set.values()), [len(v) for v in sets.values()])
                  if len(sets) > 1 else by_set["patches"])
        entry = {"model": name, "points": points}
        if len(sets) > 1:
            entry["points_by_set"] = by_set
        print(name)
        for p in points:
            print(f"  anchor {p['anchor']} lambda {p['lambda']:<9} {p['bpp']:.4f} bpp "
                  f"{p['psnr']:.2f} dB  MS-SSIM {p['ms_ssim_db']:.2f} dB")
        if res["models"]:
            first = res["models"][0]
            entry["bd_rate_vs_first"] = bd_rates(first["points"], points)
            print("  BD-rate against", first["model"] + ":", _fmt_bd(entry["bd_rate_vs_first"]))
            if len(sets) > 1:  # each set alone too: where a change gained or lost
                entry["bd_rate_vs_first_by_set"] = {
                    k: bd_rates(first["points_by_set"][k], by_set[k]) for k in by_set}
                for k, d in entry["bd_rate_vs_first_by_set"].items():
                    print(f"    {k} alone: {_fmt_bd(d)}")
        res["models"].append(entry)
    if args.out:
        write_json(args.out, res)
        print("wrote", args.out)


if __name__ == "__main__":
    main()
