"""Which training recipe learns fastest on this CPU: short autoencoder runs, same data, same seed.

    python benchmarks/train_recipe.py [--steps 300]

Each variant trains the forward and backward networks alone (rounding with a straight-through
gradient, no rate term: the first phase of the codec recipe) with Adam and bf16 autocast where
the CPU has it, and logs the training PSNR every 25 steps. Every variant sees the same number of
pixels per step; their speed (steps/s) is measured separately, on an idle machine, by
benchmarks/train_throughput.py. Variants:

- `old-init`: the first release's initialisation (He init on every conv, residual branches at
  0.1x, output conv 0.02x, fMap conv 5x), 96 channels, 128x128 patches x 8.
- `new-init`: the current initialisation (codedvision.networks), same shape and data.
- `new-init, 64 channels`: the shipped default's width (about 1.8x the steps per second).

Writes benchmarks/results/train_recipe.json and .png.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from codedvision.config import ModelConfig
from codedvision.networks import BackwardNet, ForwardNet, ResidualUnit
from codedvision.precision import bf16_is_fast
from codedvision.train.codec import TrainConfig
from codedvision.train.data import PatchSampler, load_patches

HERE = Path(__file__).resolve().parent

VARIANTS = [
    # name, old init?, channels, patch, batch
    ("old-init, 96 ch, 128x128 x 8", True, 96, 128, 8),
    ("new-init, 96 ch, 128x128 x 8", False, 96, 128, 8),
    ("new-init, 64 ch, 128x128 x 8", False, 64, 128, 8),
]


def old_init(*nets: nn.Module) -> None:
    """Re-initialise as the first release did, for comparison."""
    for net in nets:
        convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
        for c in convs:
            nn.init.kaiming_normal_(c.weight, a=0.25, nonlinearity="leaky_relu")
            nn.init.zeros_(c.bias)
        for m in net.modules():
            if isinstance(m, ResidualUnit):
                m.body[2].weight.data.mul_(0.1)
    fwd, bwd = nets
    [c for c in fwd.modules() if isinstance(c, nn.Conv2d)][-1].weight.data.mul_(5.0)
    [c for c in bwd.modules() if isinstance(c, nn.Conv2d)][-1].weight.data.mul_(0.02)


def run(variant, steps: int, patches: list, lr: float) -> dict:
    name, legacy, ch, patch, batch = variant
    torch.manual_seed(0)
    cfg = ModelConfig(channels=ch)
    fwd, bwd = ForwardNet(cfg), BackwardNet(cfg)
    if legacy:
        old_init(fwd, bwd)
    nets = nn.ModuleList([fwd, bwd]).to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(nets.parameters(), lr=lr)
    sampler = PatchSampler(patches, patch, scale_aug=True)
    gen = torch.Generator().manual_seed(0)
    autocast = bf16_is_fast()
    curve, acc = [], 0.0
    for i in range(steps):
        x = sampler.sample(batch, gen).contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            y = fwd(x)
            y = y + (torch.round(y) - y).detach()
            x_hat = bwd(y)
        loss = F.mse_loss(x_hat.float(), x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(nets.parameters(), 1.0)
        opt.step()
        acc += loss.item()
        if (i + 1) % 25 == 0:
            psnr = -10 * torch.log10(torch.tensor(acc / 25)).item()
            curve.append({"step": i + 1, "train_psnr": round(psnr, 2)})
            acc = 0.0
    print(f"{name}: {curve[-1]['train_psnr']} dB after {steps} steps", flush=True)
    return {"name": name, "channels": ch, "patch": patch, "batch": batch, "curve": curve}


def plot(res: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for v in res["variants"]:
        ax.plot([p["step"] for p in v["curve"]], [p["train_psnr"] for p in v["curve"]],
                label=v["name"])
    ax.set_xlabel("step (same pixels per step for every variant)")
    ax.set_ylabel("training PSNR (dB)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.suptitle("Autoencoder phase: which recipe learns fastest here")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "train_recipe.json")
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count())
    tc = TrainConfig()
    patches = load_patches(Path(tc.patches_dir), 128)[: -tc.holdout]
    res = {"steps": args.steps, "lr": args.lr, "threads": os.cpu_count(),
           "bf16_autocast": bf16_is_fast(), "data": "train_patches (holdout excluded)",
           "variants": [run(v, args.steps, patches, args.lr) for v in VARIANTS]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    plot(res, args.out.with_suffix(".png"))


if __name__ == "__main__":
    main()
