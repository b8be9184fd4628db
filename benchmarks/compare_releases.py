"""Is a candidate model better than the released one? Compares the codedvision curves of two
`codedvision evaluate` results (same images) by BD-rate, PSNR and MS-SSIM.

    python benchmarks/compare_releases.py OLD/results.json NEW/results.json [--plot PREFIX]

Prints both curves and the BD-rate of NEW against OLD; exits 0 only when NEW needs fewer bits
for the same quality on both metrics (the rule for replacing the shipped model), else 1.
--plot also draws both curves, and the HEVC anchor when OLD holds it, to PREFIX_psnr.png and
PREFIX_msssim.png.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from codedvision.evaluate.bdrate import bd_rate  # noqa: E402
from codedvision.evaluate.codecs import ANCHOR  # noqa: E402
from codedvision.evaluate.plots import plot_rd  # noqa: E402
from codedvision.evaluate.summary import curve  # noqa: E402

# The two metrics, and each one's suffix in the --plot file names.
METRICS = {"psnr": "psnr", "ms_ssim_db": "msssim"}


def compare(old: list[dict], new: list[dict]) -> dict[str, float | None]:
    """BD-rate (%) of the new curve against the old, per metric."""
    return {m: bd_rate(*curve(old, m), *curve(new, m)) for m in METRICS}


def label(name: str, results: dict) -> str:
    """'old' or 'new', with the model id the evaluation recorded (if any)."""
    version = results.get("codecs", {}).get("codedvision", {}).get("version", "")
    model = re.search(r"model (\w+)", version)
    return f"{name}: model {model.group(1)}" if model else name


def plot(prefix: str, old: dict, new: dict) -> None:
    """The old and new codedvision curves (and OLD's anchor, if any) on both metrics."""
    named = [(label("old", old), old["averages"]["codedvision"]),
             (label("new", new), new["averages"]["codedvision"])]
    if ANCHOR in old["averages"]:
        named.append((old["codecs"][ANCHOR]["label"], old["averages"][ANCHOR]))
    for metric, suffix in METRICS.items():
        curves = []
        for name, pts in named:
            bpp, values = curve(pts, metric)
            curves.append({"label": name, "bpp": bpp, "values": values})
        print("wrote", plot_rd(Path(f"{prefix}_{suffix}.png"), metric, curves,
                               title="codedvision: old and new model"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("old", help="the released model's results.json")
    parser.add_argument("new", help="the candidate's results.json (same images)")
    parser.add_argument("--plot", metavar="PREFIX", help="also draw both curves to PREFIX_*.png")
    try:
        a = parser.parse_args(argv)
    except SystemExit as e:  # usage errors and --help: a return code, for callers and tests
        return int(e.code or 0)
    prefix, args = a.plot, [a.old, a.new]
    results = [json.loads(Path(a).read_text()) for a in args]
    curves = [r["averages"]["codedvision"] for r in results]
    for name, curve in zip(("old", "new"), curves):
        print(name + ": " + ", ".join(f"q{p['setting']} {p['bpp']:.3f} bpp {p['psnr']:.2f} dB"
                                      for p in curve))
    res = compare(*curves)
    print("BD-rate new vs old: " + ", ".join(
        f"{k} {'n/a' if v is None else f'{v:+.1f}%'}" for k, v in res.items()))
    if prefix:
        plot(prefix, *results)
    return 0 if all(v is not None and v < 0 for v in res.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
