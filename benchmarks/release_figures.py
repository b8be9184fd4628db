"""Copy the shipped model's measured Kodak figures from the evaluation into its manifest.

    codedvision evaluate --images ../shared/data/kodak --out results/kodak --jobs 2 \
        --reference ../shared/reference/compressai_kodak
    python benchmarks/release_figures.py

Refuses when results/kodak/results.json was made with another model than the one shipped (the
evaluation names the model id in the codec's version string).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from codedvision.evaluate.codecs.learned import measured_model
from codedvision.release import DEFAULT_MODEL_DIR, MANIFEST, WEIGHTS, model_id, write_manifest

ROOT = Path(__file__).resolve().parents[1]
FIELDS = ("setting", "bpp", "psnr", "ms_ssim", "ms_ssim_db")


def main() -> int:
    argparse.ArgumentParser(description=__doc__.strip().splitlines()[0]).parse_args()
    src = "results/kodak/results.json"
    res = json.loads((ROOT / src).read_text())
    shipped = model_id(DEFAULT_MODEL_DIR / WEIGHTS).hex()
    version = res["codecs"]["codedvision"]["version"]
    if measured_model(version) != shipped:
        print(f"error: {src} is for '{version}', the shipped model is {shipped}", file=sys.stderr)
        return 1
    manifest = json.loads((DEFAULT_MODEL_DIR / MANIFEST).read_text())
    manifest["kodak"] = [{k: p[k] for k in FIELDS} for p in res["averages"]["codedvision"]]
    bd = res["bd_rate"]["codedvision"]
    manifest["kodak_bd_rate_vs_hevc"] = {k: bd[k]["bd_rate"] for k in ("psnr", "ms_ssim_db")}
    manifest["kodak_source"] = f"{src} (codedvision evaluate, {len(res['images'])} images)"
    write_manifest(DEFAULT_MODEL_DIR, manifest)
    print(json.dumps({k: manifest[k] for k in ("kodak_bd_rate_vs_hevc", "kodak_source")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
