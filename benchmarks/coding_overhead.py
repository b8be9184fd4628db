"""How close real .cvz files come to the model's own rate estimate: the entropy coder's and
the container's overhead.

    python benchmarks/coding_overhead.py [--threads 2] [--out FILE]

On the trainer's held-out patches (the last 16 of ../shared/data/train_patches, 256x256, never
trained on; not Kodak), at the integer quality nearest each quality anchor of the shipped
model: the rate the model estimates for the quantized fMaps and hyper-latents (the discrete
likelihoods that training and `benchmarks/heldout_anchors.py` use) against the size of the
real file from `Codec.encode` (header, range-coded streams, everything), both in bpp over the
same pixels.
A large positive overhead would mean bits lost to coding rather than to the model.
Writes benchmarks/results/coding_overhead.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from capacity_probe import held_out_arguments, held_out_patches, write_json  # noqa: E402

import codedvision  # noqa: E402
from codedvision.config import quality_to_position  # noqa: E402


@torch.no_grad()
def overhead_rows(codec, x: torch.Tensor) -> list[dict]:
    """Per quality nearest each anchor (integer qualities, so a position may fall just beside
    its anchor): the estimated and the real bpp (means over x) and the file's overhead."""
    model = codec.model
    n_anchors = len(model.cfg.lambdas)
    pixels = x.shape[0] * x.shape[2] * x.shape[3]
    images = [(x[i].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
              for i in range(x.shape[0])]
    y = torch.cat([codec.analysis(x[i:i + 1]) for i in range(x.shape[0])]).float()
    rows = []
    for k in range(n_anchors):
        quality = round(100 * k / (n_anchors - 1))
        pos = quality_to_position(quality, n_anchors)  # for the record
        gain, inv_gain = codec._gains(quality)  # the very gains encode() applies
        estimated = float(model.coded_rd(x, y * gain, inv_gain, autocast=codec.bf16)["bits"].sum())
        real = sum(8 * len(codec.encode(img, quality=quality)) for img in images)
        rows.append({"quality": quality, "position": round(pos, 3),
                     "estimated_bpp": round(estimated / pixels, 4),
                     "file_bpp": round(real / pixels, 4),
                     "overhead_percent": round(100 * (real / estimated - 1), 2)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    held_out_arguments(ap, HERE / "results" / "coding_overhead.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    codec = codedvision.load()
    x, holdout = held_out_patches(args.patches)
    rows = overhead_rows(codec, x)
    for r in rows:
        print(f"quality {r['quality']:>3}: estimated {r['estimated_bpp']:.4f} bpp, file "
              f"{r['file_bpp']:.4f} bpp, overhead {r['overhead_percent']:+.2f}%")
    write_json(args.out, {"benchmark": "coding_overhead", "model": codec.model_id.hex(),
                          "transforms": "bf16" if codec.bf16 else "float32",
                          "images": f"{holdout} held-out training patches (the last {holdout} "
                                    f"of {args.patches}), 256x256", "qualities": rows})


if __name__ == "__main__":
    main()
