"""Which qualities steer the shared networks in variable-rate training?

    python benchmarks/quality_gradients.py CHECKPOINT_OR_MODEL [--balance P] [--out FILE]

For the same 8 training crops (192x192, a fixed seed) coded at each quality anchor in turn, the
training loss as the trainer computes it (`rd_objective`: the MS-SSIM mix included when the run
has one, weighted by `quality_balance` P, default the run's own or 0) and the norm of its
gradient on the networks every quality shares (forward, backward, hyper). In a batch whose
images sit at random anchors, an anchor whose gradient is many times the others' decides the
update alone (the trainer clips every step's gradient to a fixed norm). Writes
benchmarks/results/quality_gradients.json unless --out says otherwise.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from capacity_probe import held_out_arguments, write_json  # noqa: E402

from codedvision.train.codec import TrainConfig, rd_objective  # noqa: E402
from codedvision.train.data import PatchSampler, load_patches  # noqa: E402
from codedvision.train.export import load_trained_state  # noqa: E402

SHARED = ("forward_net", "backward_net", "hyper_analysis", "hyper_synthesis")
PATCH, COUNT = 192, 8


def anchor_gradients(model, cfg: TrainConfig, x: torch.Tensor) -> list[dict]:
    """Loss and shared-network gradient norm of batch x at every anchor."""
    shared = [p for n, p in model.named_parameters() if n.startswith(SHARED)]
    model.train()
    rows = []
    for a in range(len(model.cfg.lambdas)):
        pos = torch.full((x.shape[0],), float(a))
        torch.manual_seed(0)  # the same rate noise at every anchor
        loss, bpp, psnr = rd_objective(model, cfg, model(x, pos, autocast=True), x, pos)
        model.zero_grad()
        loss.backward()
        norm = torch.sqrt(sum((p.grad.float() ** 2).sum() for p in shared if p.grad is not None))
        rows.append({"anchor": a, "lambda": model.cfg.lambdas[a], "loss": round(loss.item(), 4),
                     "bpp": round(bpp.item(), 4), "psnr": round(psnr.item(), 2),
                     "grad_norm": round(norm.item(), 3)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", help="checkpoint.pt (its training weights) or release folder")
    ap.add_argument("--balance", type=float, default=None,
                    help="quality_balance to weight the losses by (default: the run's own)")
    held_out_arguments(ap, HERE / "results" / "quality_gradients.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, name, state = load_trained_state(args.model, average=False)  # one read of the file
    cfg = (TrainConfig.from_dict(state["train_config"]) if state is not None
           else TrainConfig(model=model.cfg))
    if args.balance is not None:
        cfg = dataclasses.replace(cfg, quality_balance=args.balance)
    patches = load_patches(args.patches, PATCH)[: -cfg.holdout]
    x = PatchSampler(patches, PATCH, True).sample(COUNT, torch.Generator().manual_seed(5))
    rows = anchor_gradients(model, cfg, x)
    for r in rows:
        print(f"anchor {r['anchor']} lambda {r['lambda']:<9} loss {r['loss']:.3f} "
              f"{r['bpp']:.3f} bpp {r['psnr']:.2f} dB  gradient norm {r['grad_norm']:.2f}")
    write_json(args.out, {
        "benchmark": "quality_gradients", "model": name,
        "crops": f"{COUNT} random {PATCH}x{PATCH} crops of the training patches (seed 5)",
        "msssim_weight": cfg.msssim_weight, "quality_balance": cfg.quality_balance,
        "anchors": rows,
        "top_over_lowest": round(rows[-1]["grad_norm"] / rows[0]["grad_norm"], 1)})
    print("wrote", args.out)


if __name__ == "__main__":
    main()
