"""Where does the codec lose to HEVC: on flat content? Per image, from a committed evaluation.

    python benchmarks/flat_content.py [RESULTS_DIR] [--images DIR] [--out FILE]
        # default: results/kodak with ../shared/data/kodak

The training patches were cut where the luma standard deviation is at least 10 (no sky, no
walls: ../shared/data/train_patches/README.md), so the codec has seen little flat content. For
each image of an evaluation run (RESULTS_DIR/results.json, real file sizes) this reports the
share of its 16x16 blocks (one fMap position each) whose luma standard deviation is under that
same 10, next to codedvision's BD-rate against the HEVC anchor on that image alone, PSNR and
MS-SSIM (dB), and the correlation between the two over the images. Reads results only: no
codec runs. Writes benchmarks/results/flat_content_<RESULTS_DIR name>.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from capacity_probe import write_json  # noqa: E402
from readme_results import _fmt  # noqa: E402

from codedvision.evaluate.summary import average_points, bd_rate_entry  # noqa: E402

BLOCK = 16
FLAT_STD = 10.0  # the training patches' own threshold
METRICS = ("psnr", "ms_ssim_db")


def flat_share(path: Path, block: int = BLOCK, flat_std: float = FLAT_STD) -> float:
    """Share of the image's block x block tiles whose luma standard deviation is < flat_std."""
    with Image.open(path) as im:
        y = np.asarray(im.convert("L"), dtype=np.float64)
    h, w = y.shape[0] // block * block, y.shape[1] // block * block
    tiles = y[:h, :w].reshape(h // block, block, w // block, block).std(axis=(1, 3))
    return float((tiles < flat_std).mean())


def per_image_bd_rates(results: dict, test: str = "codedvision") -> dict[str, dict]:
    """{image: {metric: BD-rate of `test` against the run's anchor on that image}}, each image's
    curves made as the evaluation makes its averaged ones (summary.average_points)."""
    anchor = results["anchor"]
    settings = {c: [a["setting"] for a in results["averages"][c]] for c in (anchor, test)}
    out = {}
    for image in sorted({p["image"] for p in results["points"]}):
        curves = {c: average_points([p for p in results["points"]
                                     if p["image"] == image and p["codec"] == c], s)
                  for c, s in settings.items()}
        out[image] = {m: bd_rate_entry(curves[anchor], curves[test], m)["bd_rate"]
                      for m in METRICS}
    return out


def correlation(xs: list[float], ys: list[float | None]) -> float | None:
    pairs = [(x, y) for x, y in zip(xs, ys) if y is not None]
    if len(pairs) < 3:
        return None
    return round(float(np.corrcoef(np.array(pairs).T)[0, 1]), 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results_dir", nargs="?", type=Path, default=HERE.parent / "results" / "kodak")
    ap.add_argument("--images", type=Path,
                    default=HERE.parents[1] / "shared" / "data" / "kodak",
                    help="the folder of the run's images")
    ap.add_argument("--out", type=Path, help="default: benchmarks/results/flat_content_<run>.json")
    args = ap.parse_args()
    try:
        results = json.loads((args.results_dir / "results.json").read_text())
        bd = per_image_bd_rates(results)
        shares = {im: flat_share(args.images / im) for im in bd}
    except (OSError, ValueError, KeyError) as e:
        sys.exit(f"error: {e}")
    model = next((p["codec_version"] for p in results["points"] if p["codec"] == "codedvision"),
                 "codedvision")
    rows = [{"image": im, "flat_share": round(shares[im], 3),
             **{f"bd_rate_{m}": None if v is None else round(v, 1) for m, v in bd[im].items()}}
            for im in bd]
    rows.sort(key=lambda r: r["flat_share"])
    res = {"benchmark": __doc__.split("\n")[0], "results": str(args.results_dir),
           "codec": model, "anchor": results["anchor"], "block": BLOCK, "flat_std": FLAT_STD,
           "correlation": {m: correlation([r["flat_share"] for r in rows],
                                          [r[f"bd_rate_{m}"] for r in rows]) for m in METRICS},
           "images": rows}
    for r in rows:
        print(f"{r['image']:<24} flat {r['flat_share']:.2f}  BD-rate PSNR "
              f"{_fmt(r['bd_rate_psnr'], '+.1f')}%  "
              f"MS-SSIM {_fmt(r['bd_rate_ms_ssim_db'], '+.1f')}%")
    print("correlation of the flat share with the BD-rate:", res["correlation"])
    out = args.out or HERE / "results" / f"flat_content_{args.results_dir.name}.json"
    write_json(out, res)
    print("wrote", out)


if __name__ == "__main__":
    main()
