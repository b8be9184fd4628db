"""Where on the quality range does the codec lose its bits to the anchor? Per quality setting.

    python benchmarks/rate_gap.py [RESULTS_DIR] [--codec NAME] [--out FILE]
        # default: results/kodak, codedvision against the run's anchor (HEVC intra)

A BD-rate is one number for a whole curve. This splits it up: at each of the codec's settings
(its bpp and quality averaged over the run's images, the points the BD-rate uses) it reads the
anchor's rate at the same quality off the anchor's averaged curve, with the interpolation the
BD-rate integrates (Akima, log-rate over quality), and reports the codec's extra rate there, in
percent (negative: fewer bits than the anchor). The BD-rate is close to the mean of these over
the quality range both curves cover. Settings outside the anchor's range get none. PSNR and
MS-SSIM (dB). Reads results only: no codec runs. Writes
benchmarks/results/rate_gap_<RESULTS_DIR name>.json.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
from scipy.interpolate import Akima1DInterpolator

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from capacity_probe import write_json  # noqa: E402
from readme_results import _fmt, repo_path  # noqa: E402

from codedvision.evaluate.bdrate import clean_curve  # noqa: E402
from codedvision.evaluate.summary import curve  # noqa: E402

METRICS = ("psnr", "ms_ssim_db")


def anchor_rate_at(anchor: list[dict], metric: str):
    """f(quality) -> the anchor's bpp at that quality (None outside its range), interpolated as
    the BD-rate does: Akima over log-rate against quality (linear for two points)."""
    rates, dists = clean_curve(*curve(anchor, metric))
    if len(rates) < 2:
        return lambda q: None
    log_rate = (Akima1DInterpolator(dists, np.log(rates)) if len(rates) > 2
                else (lambda q: np.interp(q, dists, np.log(rates))))

    def rate(q: float | None) -> float | None:
        if q is None or not math.isfinite(q) or not dists[0] <= q <= dists[-1]:
            return None
        return float(np.exp(log_rate(q)))
    return rate


def rate_gaps(anchor: list[dict], test: list[dict], metric: str) -> list[dict]:
    """One row per setting of `test`: its bpp and quality, the anchor's bpp at that quality
    and the test's extra rate over it (%), both None outside the anchor's quality range."""
    rate = anchor_rate_at(anchor, metric)
    rows = []
    for a, bpp, q in zip(test, *curve(test, metric)):
        at = rate(q)
        rows.append({"setting": a["setting"], "bpp": None if bpp is None else round(bpp, 4),
                     metric: None if q is None else round(q, 2),
                     "anchor_bpp": None if at is None else round(at, 4),
                     "extra_rate_percent": None if at is None or bpp is None
                     else round(100 * (bpp / at - 1), 1)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results_dir", nargs="?", type=Path, default=HERE.parent / "results" / "kodak")
    ap.add_argument("--codec", default="codedvision", help="the codec to split (default %(default)s)")
    ap.add_argument("--out", type=Path, help="default: benchmarks/results/rate_gap_<run>.json")
    args = ap.parse_args()
    try:
        results = json.loads((args.results_dir / "results.json").read_text())
        anchor = results["anchor"]
        curves = {c: results["averages"][c] for c in (anchor, args.codec)}
        version = results["codecs"][args.codec]["version"]
        label = results["codecs"][args.codec]["label"]
    except (OSError, ValueError) as e:
        sys.exit(f"error: {args.results_dir}: {e}")
    except KeyError as e:
        sys.exit(f"error: {args.results_dir}/results.json has no {e} (codecs there: "
                 f"{', '.join(results.get('averages', {})) or 'none'})")
    res = {"benchmark": __doc__.split("\n")[0], "results": repo_path(args.results_dir),
           "codec": version, "label": label, "anchor": anchor, "images": len(results["images"]),
           "bd_rate": {m: results["bd_rate"].get(args.codec, {}).get(m, {}).get("bd_rate")
                       for m in METRICS},
           "settings": {m: rate_gaps(curves[anchor], curves[args.codec], m) for m in METRICS}}
    for m in METRICS:
        print(f"{m}: BD-rate {_fmt(res['bd_rate'][m], '+.1f')}% against {anchor}")
        for r in res["settings"][m]:
            print(f"  setting {r['setting']:>4}  {_fmt(r['bpp'], '.3f')} bpp  {_fmt(r[m], '.2f')}  "
                  f"{anchor} {_fmt(r['anchor_bpp'], '.3f')} bpp  "
                  f"extra rate {_fmt(r['extra_rate_percent'], '+.1f')}%")
    out = args.out or HERE / "results" / f"rate_gap_{args.results_dir.name}.json"
    write_json(out, res)
    print("wrote", out)


if __name__ == "__main__":
    main()
