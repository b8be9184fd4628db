"""Is a candidate model better than the released one? Compares the codedvision curves of two
`codedvision evaluate` results (same images) by BD-rate, PSNR and MS-SSIM.

    python benchmarks/compare_releases.py OLD/results.json NEW/results.json

Prints both curves and the BD-rate of NEW against OLD; exits 0 only when NEW needs fewer bits
for the same quality on both metrics (the rule for replacing the shipped model), else 1.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from codedvision.evaluate.bdrate import bd_rate  # noqa: E402

METRICS = (("psnr", "bpp"), ("ms_ssim_db", "bpp_ms_ssim"))


def compare(old: list[dict], new: list[dict]) -> dict[str, float | None]:
    """BD-rate (%) of the new curve against the old, per metric."""
    return {q: bd_rate([p[r] for p in old], [p[q] for p in old],
                       [p[r] for p in new], [p[q] for p in new]) for q, r in METRICS}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    curves = [json.loads(Path(a).read_text())["averages"]["codedvision"] for a in args]
    for name, curve in zip(("old", "new"), curves):
        print(name + ": " + ", ".join(f"q{p['setting']} {p['bpp']:.3f} bpp {p['psnr']:.2f} dB"
                                      for p in curve))
    res = compare(*curves)
    print("BD-rate new vs old: " + ", ".join(
        f"{k} {'n/a' if v is None else f'{v:+.1f}%'}" for k, v in res.items()))
    return 0 if all(v is not None and v < 0 for v in res.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
