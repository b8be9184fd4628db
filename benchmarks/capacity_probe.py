"""What limits a codec's quality at high rates: the quantizer, the fMap count or the transforms?

    python benchmarks/capacity_probe.py [MODEL ...]   # release folders or checkpoint.pt files;
                                                      # default: the shipped model

On the trainer's held-out patches (the last 16 of ../shared/data/train_patches, 256x256, never
trained on; not Kodak), at every quality anchor:
  psnr_rounded     PSNR of the model as it codes: quantized fMaps (rounded around the means for
                   a mean-scale model)
  psnr_unrounded   PSNR with the same gains but no rounding: the transforms' own ceiling
  bpp              estimated rate of the rounded fMaps (and hyper-latents) under the model's
                   entropy model
  active_fmaps     fMaps that carry more than 0.001 bpp
If psnr_unrounded is barely above psnr_rounded at the top anchor, more bits cannot buy quality
and only better transforms can. As a yardstick for the fMap count, `linear_reference` gives the
PSNR of the best linear code with k numbers per fMap position: a PCA of the same patches'
2^d x 2^d pixel blocks (fitted on them), keeping k components, for k = the fMaps active at the
top anchor and k = all fMaps. `effective_dims` counts how many dimensions hold 99.9% of the
variance (per fMap position, over the patches) of the forward network's last hidden layer and of
the fMaps scaled by the top anchor's gains: what the forward network still represents, and what
reaches the quantizer. Writes benchmarks/results/capacity_probe.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from codedvision.train.codec import TrainConfig  # noqa: E402
from codedvision.images import atomic_write  # noqa: E402
from codedvision.train.data import load_patches  # noqa: E402
from codedvision.train.export import load_trained  # noqa: E402

ACTIVE_BPP = 0.001


def psnr(x_hat: torch.Tensor, x: torch.Tensor) -> float:
    mse = ((x_hat.clamp(0, 1) - x) ** 2).mean((1, 2, 3))
    return float((-10 * torch.log10(mse)).mean())


@torch.no_grad()
def probe(model, x: torch.Tensor) -> list[dict]:
    n, pixels = x.shape[0], x.shape[0] * x.shape[2] * x.shape[3]
    y = model.forward_net(x)
    rows = []
    for k, lam in enumerate(model.cfg.lambdas):
        gain, inv_gain = model.gains(torch.full((n,), float(k)))
        y_g = y * gain
        bits_z = 0.0
        if model.cfg.entropy_model == "hyperprior":
            z = torch.round(model.hyper_analysis(y_g))
            bits_z = float(-torch.log2(model.z_model.likelihood(z)).sum())
            log_scale, mean = model.entropy_params(model.hyper_synthesis(z), y_g)
            q = torch.round(y_g if mean is None else y_g - mean)
            lik = model.y_model.likelihood(q, log_scale)
            y_hat = q if mean is None else q + mean
        else:
            y_hat = torch.round(y_g)
            lik = model.y_model.likelihood(y_hat)
        per_fmap = -torch.log2(lik).sum((0, 2, 3)) / pixels
        rows.append({
            "anchor": k, "lambda": lam,
            "bpp": round(float(per_fmap.sum()) + bits_z / pixels, 4),
            "psnr_rounded": round(psnr(model.backward_net(y_hat * inv_gain), x), 2),
            "psnr_unrounded": round(psnr(model.backward_net(y_g * inv_gain), x), 2),
            "active_fmaps": int((per_fmap > ACTIVE_BPP).sum()),
        })
    return rows


def linear_reference(x: torch.Tensor, block: int, ks: list[int]) -> dict[int, float]:
    """Mean PSNR of x (B,3,H,W) coded as a k-component PCA of its own block x block pixel
    blocks (one PCA fitted on all of them), for each k."""
    b, c, h, w = x.shape
    blocks = (x[:, :, : h // block * block, : w // block * block].double()
              .reshape(b, c, h // block, block, w // block, block)
              .permute(0, 2, 4, 1, 3, 5).reshape(b, -1, c * block * block))
    mu = blocks.reshape(-1, blocks.shape[-1]).mean(0)
    _, _, vt = torch.linalg.svd(blocks.reshape(-1, blocks.shape[-1]) - mu, full_matrices=False)
    out = {}
    for k in ks:
        rec = (blocks - mu) @ vt[:k].T @ vt[:k] + mu
        mse = ((rec - blocks) ** 2).mean((1, 2))
        out[k] = round(float((-10 * torch.log10(mse)).mean()), 2)
    return out


def held_out_patches(patches_dir: Path) -> tuple[torch.Tensor, int]:
    """The trainer's held-out patches (the last `holdout` of the training set; never trained
    on) as a (N,3,256,256) float tensor in [0,1], and N."""
    holdout = TrainConfig().holdout
    return patches_tensor(load_patches(patches_dir, 256)[-holdout:]), holdout


def patches_tensor(patches: list) -> torch.Tensor:
    """Training patches (HxWx3 uint8 arrays, sides >= 256) cropped to 256x256, as a (N,3,256,256)
    float tensor in [0,1]."""
    x = torch.stack([torch.from_numpy(a[:256, :256].copy()).permute(2, 0, 1) for a in patches])
    return x.float() / 255


def held_out_arguments(ap, out: Path | None) -> None:
    """The options of every benchmark on the held-out patches: --patches (the training set,
    whose last `holdout` are held out), --threads, and --out (default `out`; None: no file
    unless given)."""
    ap.add_argument("--patches", type=Path,
                    default=HERE.parents[1] / "shared" / "data" / "train_patches")
    ap.add_argument("--threads", type=int, default=2)
    default = f" (default {out.name})" if out else ""
    ap.add_argument("--out", type=Path, default=out,
                    help=f"write the results as JSON here{default}")


def write_json(path: Path, res: dict) -> None:
    atomic_write(path, (json.dumps(res, indent=2) + "\n").encode(), force=True)


def dims_for_energy(t: torch.Tensor, energy: float = 0.999) -> int:
    """How many principal components of t's per-position vectors (B,C,H,W -> B*H*W x C) hold
    `energy` of its variance."""
    v = t.permute(0, 2, 3, 1).reshape(-1, t.shape[1]).double()
    v = v - v.mean(0)
    ev = torch.linalg.eigvalsh(v.T @ v).flip(0).clamp(min=0)
    return int((torch.cumsum(ev, 0) / ev.sum() < energy).sum()) + 1


@torch.no_grad()
def effective_dims(model, x: torch.Tensor) -> dict:
    net = model.forward_net.net
    hidden = net[:-1](x - 0.5)
    top = float(len(model.cfg.lambdas) - 1)
    y_g = net[-1](hidden) * model.gains(torch.full((x.shape[0],), top))[0]
    return {"energy": 0.999, "forward_last_hidden": dims_for_energy(hidden),
            "hidden_channels": hidden.shape[1], "fmaps_at_top_anchor": dims_for_energy(y_g)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="*", default=["default"])
    held_out_arguments(ap, HERE / "results" / "capacity_probe.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    x, holdout = held_out_patches(args.patches)
    res = {"benchmark": "capacity_probe", "images": f"{holdout} held-out training patches "
           f"(the last {holdout} of {args.patches}), 256x256", "active_bpp": ACTIVE_BPP,
           "models": []}
    for spec in args.models:
        model, name = load_trained(None if spec == "default" else spec)
        rows = probe(model, x)
        ks = sorted({rows[-1]["active_fmaps"], model.cfg.fmaps})
        linear = linear_reference(x, 2**model.cfg.downsamples, ks)
        res["models"].append({"model": name, "fmaps": model.cfg.fmaps,
                              "parameters": model.num_parameters(), "anchors": rows,
                              "linear_reference": {str(k): v for k, v in linear.items()},
                              "effective_dims": (dims := effective_dims(model, x))})
        print(name, "| linear reference (PCA of the blocks): "
              + ", ".join(f"{k} components {v:.2f} dB" for k, v in linear.items())
              + f" | 99.9% of the variance in {dims['forward_last_hidden']} of the forward "
              f"network's {dims['hidden_channels']} last hidden channels, "
              f"{dims['fmaps_at_top_anchor']} dimensions of the top anchor's fMaps")
        for r in rows:
            print(f"  anchor {r['anchor']}: {r['bpp']:.3f} bpp, {r['psnr_rounded']:.2f} dB rounded, "
                  f"{r['psnr_unrounded']:.2f} dB unrounded, {r['active_fmaps']} active fMaps")
    write_json(args.out, res)


if __name__ == "__main__":
    main()
