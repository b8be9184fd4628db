"""Table 1 analog of the CodedVision paper: classification accuracy against the number of fMaps,
and quantized against unquantized fMaps, on the Caltech-101 val split (this machine).

    python benchmarks/vision_table1.py --work ~/cv-runs/table1 [--steps 1000] [--fmaps 32,64,128]
        [--unquantized 32] [--config base.json]   # HeadTrainConfig fields shared by every head

Trains one compressed-domain head per variant with `codedvision train classifier`'s trainer,
the same recipe and number of steps for all, on the shipped codec (or --model):
  fmaps=K, quantized   the head reads the first K fMaps of files (a released codec stores them
                       most-spread first; codedvision.vision.head: `keep_fmaps`), at random qualities
  fmaps=K, unquantized the same first K fMaps of the forward network's output, never rounded (what
                       the paper calls "without quantization"; a measurement, such a head cannot
                       read files)
With `fmap_cache` in --config, the first head computes the fMap cache and the others reuse it.
Runs live in --work (outside git) and resume if interrupted. Reported: val top-1 and mean
per-class accuracy at the end of each run (not the best checkpoint, to keep model selection
out of the numbers), averaged over the validation qualities for quantized heads.

Writes OUT/table1.json and OUT/table1.md (OUT: results/vision).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from codedvision.codec import Codec  # noqa: E402
from codedvision.vision.train import HeadTrainConfig, HeadTrainer  # noqa: E402


def variants(fmaps: list[int], unquantized: list[int], total: int) -> list[tuple[str, dict]]:
    out = [(f"fmaps{k}_quantized", {"keep_fmaps": 0 if k == total else k}) for k in fmaps]
    out += [(f"fmaps{k}_unquantized", {"keep_fmaps": 0 if k == total else k, "quantized": False})
            for k in unquantized]
    return out


def run(args) -> dict:
    rows = []
    total = Codec(args.model).cfg.fmaps
    cache = None  # with fmap_cache in --config, the first head builds it and the others share it
    counts = [[int(k) for k in arg.split(",") if k] for arg in (args.fmaps, args.unquantized)]
    for name, kw in variants(*counts, total):
        run_dir = Path(args.work) / name
        base = json.loads(Path(args.config).read_text()) if args.config else {}
        cfg = HeadTrainConfig.from_dict({**base, "data": str(args.data), "codec": args.model,
                                         "steps": args.steps, "val_limit": args.val_limit, **kw})
        resume = (run_dir / "checkpoint.pt").exists()
        t0 = time.time()
        trainer = HeadTrainer(cfg, run_dir, resume=resume, quiet=args.quiet, cache=cache)
        cache = trainer.cache
        if trainer.step < cfg.steps:
            trainer.run()
        val = trainer.last_val if trainer.last_val_step == trainer.step else trainer.validate()
        rows.append({
            "variant": name,
            "fmaps": trainer.head_cfg.input_fmaps,
            "quantized": trainer.cfg.quantized,
            "steps": trainer.step,
            "val_top1": val["val_top1"],
            "val_mean_class": val["val_mean_class"],
            "per_quality": {k: v for k, v in val.items() if k.startswith("val_top1_q")},
            "codec_model_id": trainer.codec.model_id.hex(),
            "minutes": round((time.time() - t0) / 60, 1),
        })
        print(f"{name}: top-1 {val['val_top1']:.3f}, mean per class {val['val_mean_class']:.3f}",
              flush=True)
    return {
        "benchmark": "vision_table1",
        "data": str(args.data),
        "val_images": args.val_limit or "all",
        "steps_per_head": args.steps,
        "machine": {"cpu": platform.processor() or platform.machine(),
                    "threads": torch.get_num_threads()},
        "total_fmaps": total,
        "rows": rows,
    }


def markdown(res: dict) -> str:
    lines = [f"Caltech-101 val, {res['steps_per_head']} training steps per head, codec "
             f"{res['rows'][0]['codec_model_id']}; accuracy at the end of training"
             " (quantized heads: mean over the validation qualities).", "",
             "| fMaps | quantized | top-1 | mean per class |", "|---|---|---|---|"]
    for r in res["rows"]:
        lines.append(f"| {r['fmaps']} | {'yes' if r['quantized'] else 'no'} | "
                     f"{r['val_top1']:.3f} | {r['val_mean_class']:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", required=True, type=Path, help="run folders (keep outside git)")
    ap.add_argument("--data", type=Path, default=HERE.parents[1] / "shared" / "data" / "caltech101")
    ap.add_argument("--model", default=None, help="codec folder (default: shipped)")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--fmaps", default="32,64,128", help="fMap counts (the codec's own: all)")
    ap.add_argument("--unquantized", default="32",
                    help="fMap counts of the unquantized heads ('' for none)")
    ap.add_argument("--val-limit", type=int, default=None)
    ap.add_argument("--out", type=Path, default=HERE.parent / "results" / "vision")
    ap.add_argument("--config", default=None,
                    help="JSON HeadTrainConfig fields shared by every head (default: the recipe)")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    res = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "table1.json").write_text(json.dumps(res, indent=2) + "\n")
    (args.out / "table1.md").write_text(markdown(res))
    print(markdown(res))
    return res


if __name__ == "__main__":
    main()
