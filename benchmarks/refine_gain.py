"""What encoder-side refinement (`refine`, codedvision.refine) buys, in real files.

    python benchmarks/refine_gain.py [--steps 20] [--qualities 0,15,...] [--images DIR]
                                     [--limit N] [--threads 1] [--out FILE]

Default images: the trainer's 16 held-out patches (the last 16 of
../shared/data/train_patches, 256x256, never trained on; not Kodak), so that the step count and
step size can be chosen here without touching the evaluation set. With --images, every image
in DIR that `codedvision evaluate` would read (e.g. Kodak, to report; not to tune). Every image
is coded at every quality with the shipped model twice, plainly and with `refine=STEPS`; the
script reports each file's bpp, its decoded PSNR and the encode time, their means per quality,
and the BD-rate (PSNR) of the refined curve against the plain one over the range both cover. Writes
benchmarks/results/refine_gain.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import codedvision  # noqa: E402
import codedvision.refine  # noqa: E402
from codedvision.evaluate.bdrate import bd_rate  # noqa: E402
from codedvision.evaluate.images import find_images, load_rgb  # noqa: E402
from codedvision.images import atomic_write  # noqa: E402
from codedvision.metrics import psnr  # noqa: E402
from codedvision.train.data import load_patches  # noqa: E402

SHARED = HERE.parent.parent / "shared"
HOLDOUT = 16  # the trainer's default held-out patches


def load_images(folder: str | None, limit: int | None) -> tuple[list[np.ndarray], str]:
    if folder is None:
        patches = load_patches(SHARED / "data" / "train_patches", 256)[-HOLDOUT:]
        images = [np.ascontiguousarray(p) for p in patches]
        what = f"the trainer's {len(images)} held-out patches (256x256)"
    else:
        images = [np.asarray(load_rgb(p)) for p in find_images(Path(folder))]
        what = f"{len(images)} images of {folder}"
    if limit:
        images = images[:limit]
        what += f", first {len(images)}"
    return images, what


def _mean(rows: list[dict], quality: int, steps: int, key: str) -> float:
    return float(np.mean([r[key] for r in rows
                          if r["quality"] == quality and r["refine"] == steps]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--qualities", default="0,15,30,45,60,75,90,100")
    ap.add_argument("--images", default=None)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--lr", type=float, default=None, help="step size (default: REFINE_LR)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    ap.add_argument("--out", default=str(HERE / "results" / "refine_gain.json"))
    args = ap.parse_args()
    if args.lr is not None:  # for choosing the defaults (on the held-out patches)
        codedvision.refine.REFINE_LR = args.lr
    if args.threads:
        torch.set_num_threads(args.threads)
    qualities = [int(q) for q in args.qualities.split(",")]
    images, what = load_images(args.images, args.limit)
    codec = codedvision.load()
    rows = []
    for q in qualities:
        for i, img in enumerate(images):
            for steps in (0, args.steps):
                t0 = time.perf_counter()
                data = codec.encode_ex(img, quality=q, refine=steps).data
                seconds = time.perf_counter() - t0
                out = np.asarray(codec.decode(data))
                rows.append({"quality": q, "image": i, "refine": steps, "seconds": seconds,
                             "bpp": len(data) * 8 / (img.shape[0] * img.shape[1]),
                             "psnr": psnr(img, out)})
        print(f"quality {q}: " + ", ".join(
            f"refine {s}: {_mean(rows, q, s, 'bpp'):.4f} bpp {_mean(rows, q, s, 'psnr'):.2f} dB"
            for s in (0, args.steps)), flush=True)
    means = {s: [{k: _mean(rows, q, s, k) for k in ("bpp", "psnr", "seconds")} | {"quality": q}
                 for q in qualities] for s in (0, args.steps)}
    bd = bd_rate([m["bpp"] for m in means[0]], [m["psnr"] for m in means[0]],
                 [m["bpp"] for m in means[args.steps]], [m["psnr"] for m in means[args.steps]])
    result = {
        "images": what, "model": codec.model_id.hex(), "precision": codec.precision,
        "threads": torch.get_num_threads(), "steps": args.steps,
        "lr": codedvision.refine.REFINE_LR,
        "plain": means[0], "refined": means[args.steps],
        "bd_rate_psnr_refined_vs_plain": bd, "points": rows,
    }
    atomic_write(Path(args.out), json.dumps(result, indent=1).encode(), force=True)
    print(f"BD-rate (PSNR), refine {args.steps} against plain: "
          f"{'n/a' if bd is None else f'{bd:+.1f}%'}; wrote {args.out}")


if __name__ == "__main__":
    main()
