"""Can a trained codec's transforms get better quickly without the rate term and the quantizer?

    python benchmarks/autoencoder_probe.py CHECKPOINT_OR_RELEASE [--steps 1500] [--lr 1e-4]
                                           [--forward-half-units N --out other.json]

Takes the forward and backward networks of a trained model and trains them as a plain
autoencoder: MSE only, fMaps neither rounded nor rate-coded, every fMap passed on (scaled by the
top anchor's gain x inverse gain, fixed, so that step 0 is capacity_probe.py's unrounded
ceiling). Adam, warm-up 200 steps, cosine decay over the last 40%, batch 4 x 192x192 training
patches, bf16 autocast as in training. Every 250 steps: PSNR on the trainer's 16 held-out
patches (256x256, not trained on; float32) and `dims`: how many dimensions hold 99.9% of the
variance of the forward network's last hidden layer (as capacity_probe.py's effective_dims).

If this climbs fast towards the probe's PCA yardstick (a linear code with all the fMaps), the
transforms have room and the rate term keeps them from using it; if it barely moves, the
transforms themselves learn slowly. `--forward-half-units N` first gives the forward network N
residual units at half resolution (added as identities, `networks.add_half_units`): does more
non-linear capacity where the detail is let it learn faster? Writes benchmarks/results/autoencoder_probe.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from capacity_probe import dims_for_energy, held_out_patches, write_json  # noqa: E402
from codedvision.networks import add_half_units  # noqa: E402
from codedvision.precision import autocast, use_bf16  # noqa: E402
from codedvision.train.data import PatchSampler, load_patches  # noqa: E402
from codedvision.train.export import load_trained  # noqa: E402

WARMUP = 200
DECAY_FROM = 0.6


def learning_rate(lr: float, step: int, steps: int) -> float:
    if step < WARMUP:
        return lr * (step + 1) / WARMUP
    start = int(steps * DECAY_FROM)
    if step < start:
        return lr
    t = (step - start) / max(1, steps - start)
    return lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", help="checkpoint.pt or release folder ('default': the shipped one)")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--forward-half-units", type=int, default=None)
    ap.add_argument("--patches", type=Path, default=HERE.parents[1] / "shared" / "data" / "train_patches")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "autoencoder_probe.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, name = load_trained(None if args.model == "default" else args.model)
    if args.forward_half_units is not None and args.forward_half_units != model.cfg.forward_half_units:
        cfg = dataclasses.replace(model.cfg, forward_half_units=args.forward_half_units)
        model.forward_net = add_half_units(model.forward_net, cfg)
        name += (f", forward network + {args.forward_half_units} residual unit(s) at 1/2 "
                 "(added as identities)")
    fwd, bwd = model.forward_net.float(), model.backward_net.float()
    for net in (fwd, bwd):
        net.to(memory_format=torch.channels_last)
    with torch.no_grad():
        gain, inv_gain = model.gains(torch.tensor([float(len(model.cfg.lambdas) - 1)]))
        scale = (gain * inv_gain).float()
    xv, holdout = held_out_patches(args.patches)
    train = PatchSampler(load_patches(args.patches, 256)[:-holdout], 192, True)
    params = list(fwd.parameters()) + list(bwd.parameters())
    opt = torch.optim.Adam(params, lr=args.lr)
    gen = torch.Generator().manual_seed(7)
    bf16 = use_bf16("auto")

    @torch.no_grad()
    def validate(step: int) -> dict:
        fwd.eval(), bwd.eval()
        hidden = fwd.net[:-1](xv - 0.5)
        x_hat = bwd(fwd.net[-1](hidden) * scale).clamp(0, 1)
        fwd.train(), bwd.train()
        mse = ((x_hat - xv) ** 2).mean((1, 2, 3))
        return {"step": step, "psnr": round(float((-10 * torch.log10(mse)).mean()), 2),
                "dims": dims_for_energy(hidden),
                "lr": learning_rate(args.lr, step - 1, args.steps) if step else 0.0}

    rows = [validate(0)]
    print(rows[-1], flush=True)
    t0 = time.perf_counter()
    for step in range(args.steps):
        for group in opt.param_groups:
            group["lr"] = learning_rate(args.lr, step, args.steps)
        x = train.sample(4, gen).contiguous(memory_format=torch.channels_last)
        with autocast(bf16):
            x_hat = bwd(fwd(x) * scale)
        loss = ((x_hat.float() - x) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if (step + 1) % 250 == 0 or step + 1 == args.steps:
            rows.append(validate(step + 1))
            print(rows[-1], f"{(step + 1) / (time.perf_counter() - t0):.2f} steps/s", flush=True)
    res = {"benchmark": "autoencoder_probe", "model": name,
           "images": f"{holdout} held-out training patches (the last {holdout} of "
                     f"{args.patches}), 256x256",
           "settings": {"steps": args.steps, "lr": args.lr, "warmup": WARMUP,
                        "cosine_decay_from": DECAY_FROM, "batch": "4 x 192x192",
                        "autocast": "bf16" if bf16 else "float32", "seed": 7},
           "rows": rows}
    write_json(args.out, res)


if __name__ == "__main__":
    main()
