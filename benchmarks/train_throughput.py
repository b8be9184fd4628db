"""Training throughput (patches/s at 128x128, batch 8) of the default config on this CPU.

    python benchmarks/train_throughput.py [--steps 15]

Measures fp32 vs bf16 autocast, each with and without channels_last, after 3 warm-up steps, on
random patches (the data pipeline is timed separately: it draws real crops from the training
patches). Writes benchmarks/results/train_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from codedvision.config import ModelConfig
from codedvision.model import CodedVisionModel
from codedvision.precision import bf16_is_fast
from codedvision.train.codec import TrainConfig
from codedvision.train.data import PatchSampler, load_patches

HERE = Path(__file__).resolve().parent


def measure(cfg: ModelConfig, autocast: bool, channels_last: bool, steps: int, batch: int,
            patch: int = 128) -> float:
    """Patches/s, counted in 128x128-patch equivalents (pixels / 128^2)."""
    torch.manual_seed(0)
    model = CodedVisionModel(cfg)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.rand(batch, 3, patch, patch).contiguous(memory_format=fmt)
    pos = torch.rand(batch) * (len(cfg.lambdas) - 1)
    for i in range(steps + 3):
        if i == 3:
            t0 = time.perf_counter()
        out = model(x, pos, autocast=autocast)
        loss = model.rd_loss(out, pos, patch * patch)[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
    return steps * batch * (patch / 128) ** 2 / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "train_throughput.json")
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count())
    cfg = ModelConfig()
    res = {"config": cfg.to_dict(), "batch": args.batch, "patch": 128, "threads": os.cpu_count(),
           "cpu_capability": torch.backends.cpu.get_cpu_capability(),
           "bf16_native": bf16_is_fast(), "patches_per_s": {}}
    for autocast in (False, True):
        for cl in (True, False):
            key = f"{'bf16' if autocast else 'fp32'}{'+channels_last' if cl else ''}"
            steps = args.steps if not autocast or bf16_is_fast() else max(2, args.steps // 5)
            res["patches_per_s"][key] = round(measure(cfg, autocast, cl, steps, args.batch), 2)
            print(key, res["patches_per_s"][key], "patches/s", flush=True)
    tc = TrainConfig()
    if bf16_is_fast():  # the recipe's own patch size and batch
        key = f"bf16+channels_last, {tc.patch}x{tc.patch} x {tc.batch}"
        res["patches_per_s"][key] = round(
            measure(cfg, True, True, args.steps, tc.batch, tc.patch), 2)
        print(key, res["patches_per_s"][key], "patches/s (128x128 equivalents)", flush=True)
    sampler = PatchSampler(load_patches(Path(tc.patches_dir), 128), 128, scale_aug=True)
    g = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    for _ in range(20):
        sampler.sample(args.batch, g)
    res["data_patches_per_s"] = round(20 * args.batch / (time.perf_counter() - t0), 1)
    print("data pipeline", res["data_patches_per_s"], "patches/s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
