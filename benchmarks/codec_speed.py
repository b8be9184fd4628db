"""Encode/decode wall time of the shipped default model on the Kodak images (this machine).

    python benchmarks/codec_speed.py [--images ../shared/data/kodak] [--quality 75] [--threads 2]
                                     [--precision auto|bf16|float32]

Each image is encoded and decoded once after a warm-up image, and entropy decoded to fMaps (all,
and only the first channel group, what a classifier head reads); the JSON holds every time and
the medians. Times include image conversion and entropy coding (file bytes in memory, no disk I/O).
Writes benchmarks/results/codec_speed.json (codec_speed_<precision>.json for another precision
than auto, which is bf16 where the CPU has it natively).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
from PIL import Image

import codedvision
from codedvision.container import FMAP_GROUP
from codedvision.precision import PRECISIONS

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=Path, default=HERE.parents[1] / "shared" / "data" / "kodak")
    ap.add_argument("--quality", type=float, default=75)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--precision", choices=PRECISIONS, default="auto",
                    help="the transforms' precision (auto: bf16 where the CPU has it natively)")
    ap.add_argument("--out", type=Path, default=None,
                    help="default: results/codec_speed.json (auto), else codec_speed_<precision>.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    files = sorted(args.images.glob("*.png"))
    if not files:
        raise SystemExit(f"error: no PNG images in {args.images}")
    codec = codedvision.load(precision=args.precision)
    if args.out is None:
        tail = "" if args.precision == "auto" else f"_{args.precision}"
        args.out = HERE / "results" / f"codec_speed{tail}.json"
    codec.decode(codec.encode(Image.open(files[0]), quality=args.quality))  # warm-up
    rows = []
    for f in files:
        img = Image.open(f).convert("RGB")
        t0 = time.perf_counter()
        data = codec.encode(img, quality=args.quality)
        t1 = time.perf_counter()
        codec.decode(data)
        t2 = time.perf_counter()
        fm0 = time.perf_counter()
        codec.fmaps(data)
        fm1 = time.perf_counter()
        codec.fmaps(data, channels=FMAP_GROUP)  # what a classifier head reads
        fm2 = time.perf_counter()
        rows.append({"image": f.name, "width": img.width, "height": img.height,
                     "bytes": len(data), "bpp": len(data) * 8 / (img.width * img.height),
                     "encode_s": t1 - t0, "decode_s": t2 - t1, "fmaps_only_s": fm1 - fm0,
                     "first_group_s": fm2 - fm1})
        print(f"{f.name}: encode {t1 - t0:.2f} s, decode {t2 - t1:.2f} s, "
              f"entropy decoding only {fm1 - fm0:.3f} s (first {FMAP_GROUP} fMaps "
              f"{fm2 - fm1:.3f} s)", flush=True)
    med = {k: statistics.median(r[k] for r in rows)
           for k in ("encode_s", "decode_s", "fmaps_only_s", "first_group_s", "bpp")}
    result = {
        "model_id": codec.model_id.hex(), "quality": args.quality, "threads": args.threads,
        "precision": codec.precision,
        "images": str(args.images), "count": len(rows), "median": med, "per_image": rows,
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "torch": torch.__version__, "capability": torch.backends.cpu.get_cpu_capability()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"median over {len(rows)} images: encode {med['encode_s']:.2f} s, decode "
          f"{med['decode_s']:.2f} s, fMaps only {med['fmaps_only_s']:.3f} s -> {args.out}")


if __name__ == "__main__":
    main()
