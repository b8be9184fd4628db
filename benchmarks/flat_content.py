"""Where does the codec lose to HEVC: on flat content? Per image, from a committed evaluation.

    python benchmarks/flat_content.py [RESULTS_DIR] [--images DIR] [--out FILE] [--against OLD]
        # default: results/kodak with ../shared/data/kodak; OLD: an earlier flat_content JSON

The training patches were cut where the luma standard deviation is at least 10 (no sky, no
walls: ../shared/data/train_patches/README.md), so the codec has seen little flat content. For
each image of an evaluation run (RESULTS_DIR/results.json, real file sizes) this reports the
share of its 16x16 blocks (one fMap position each) whose luma standard deviation is under that
same 10, next to codedvision's BD-rate against the HEVC anchor on that image alone, PSNR and
MS-SSIM (dB), and the correlation between the two over the images. Reads results only: no
codec runs. Writes benchmarks/results/flat_content_<RESULTS_DIR name>.json.

`--against OLD` (this script's JSON for an earlier model, on the same images) adds what a new
model changed per image (`change_*`: BD-rate points, negative is better), the mean change of the
flattest and of the least flat third of the images, and the change's correlation with the flat
share: did a change meant for flat content help there?
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
from readme_results import _fmt, repo_path  # noqa: E402

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


def changes(rows: list[dict], old: dict) -> dict:
    """Per-image BD-rate changes of `rows` from an earlier run of this script (`old`), added to
    the rows as change_<metric>; returns the summary: the old codec, the mean change of the
    flattest and least flat third, and the change's correlation with the flat share."""
    before = {r["image"]: r for r in old["images"]}
    missing = sorted({r["image"] for r in rows} - set(before))
    if missing:
        raise ValueError(f"the earlier results have no {', '.join(missing)}")
    for r in rows:
        for m in METRICS:
            new, was = r[f"bd_rate_{m}"], before[r["image"]][f"bd_rate_{m}"]
            r[f"change_{m}"] = None if new is None or was is None else round(new - was, 1)
    ordered = sorted(rows, key=lambda r: r["flat_share"])
    third = max(1, len(rows) // 3)

    def mean(part, m):
        vals = [r[f"change_{m}"] for r in part if r[f"change_{m}"] is not None]
        return round(sum(vals) / len(vals), 2) if vals else None

    return {"codec": old.get("codec"), "images_per_third": third,
            **{m: {"flattest_third": mean(ordered[-third:], m),
                   "least_flat_third": mean(ordered[:third], m),
                   "all": mean(rows, m),
                   "correlation": correlation([r["flat_share"] for r in rows],
                                              [r[f"change_{m}"] for r in rows])}
               for m in METRICS}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results_dir", nargs="?", type=Path, default=HERE.parent / "results" / "kodak")
    ap.add_argument("--images", type=Path,
                    default=HERE.parents[1] / "shared" / "data" / "kodak",
                    help="the folder of the run's images")
    ap.add_argument("--out", type=Path, help="default: benchmarks/results/flat_content_<run>.json")
    ap.add_argument("--against", type=Path, metavar="OLD",
                    help="this script's JSON for an earlier model: per-image changes from it")
    args = ap.parse_args()
    try:
        results = json.loads((args.results_dir / "results.json").read_text())
        old = json.loads(args.against.read_text()) if args.against else None
        bd = per_image_bd_rates(results)
        shares = {im: flat_share(args.images / im) for im in bd}
        model = results["codecs"]["codedvision"]["version"]
    except (OSError, ValueError, KeyError) as e:
        sys.exit(f"error: {e}")
    rows = [{"image": im, "flat_share": round(shares[im], 3),
             **{f"bd_rate_{m}": None if v is None else round(v, 1) for m, v in bd[im].items()}}
            for im in bd]
    rows.sort(key=lambda r: r["flat_share"])
    res = {"benchmark": __doc__.split("\n")[0], "results": repo_path(args.results_dir),
           "codec": model, "anchor": results["anchor"], "block": BLOCK, "flat_std": FLAT_STD,
           "correlation": {m: correlation([r["flat_share"] for r in rows],
                                          [r[f"bd_rate_{m}"] for r in rows]) for m in METRICS},
           "images": rows}
    if old is not None:
        try:
            res["against"] = changes(rows, old)
        except (ValueError, KeyError) as e:
            sys.exit(f"error: {args.against}: {e}")
    for r in rows:
        print(f"{r['image']:<24} flat {r['flat_share']:.2f}  BD-rate PSNR "
              f"{_fmt(r['bd_rate_psnr'], '+.1f')}%  "
              f"MS-SSIM {_fmt(r['bd_rate_ms_ssim_db'], '+.1f')}%"
              + (f"  change {_fmt(r['change_psnr'], '+.1f')} / "
                 f"{_fmt(r['change_ms_ssim_db'], '+.1f')}" if old is not None else ""))
    print("correlation of the flat share with the BD-rate:", res["correlation"])
    if old is not None:
        print(f"against {res['against']['codec']}:",
              {m: res["against"][m] for m in METRICS})
    out = args.out or HERE / "results" / f"flat_content_{args.results_dir.name}.json"
    write_json(out, res)
    print("wrote", out)


if __name__ == "__main__":
    main()
