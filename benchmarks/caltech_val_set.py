"""Write the Caltech-101 *val* photos of the not-tuned-on evaluation as PNG files.

    python benchmarks/caltech_val_set.py OUT_DIR
    codedvision evaluate --images OUT_DIR --out results/caltech_val --codecs codedvision,hevc,avif,jpeg

Eleven val-split photos of eleven classes, at full size (no codec or recipe was tuned on them).
PNG so that every codec starts from the same decoded pixels.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
CALTECH = ROOT.parent / "shared" / "data" / "caltech101"
PHOTOS = [
    "Faces/image_0101", "airplanes/image_0408", "pyramid/image_0054", "rooster/image_0006",
    "soccer_ball/image_0014", "stapler/image_0016", "sunflower/image_0084",
    "umbrella/image_0035", "watch/image_0194", "windsor_chair/image_0047",
    "yin_yang/image_0003",
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("out", type=Path, help="folder for the PNG files (made if missing)")
    out = parser.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    splits = {r["relative_path"]: r["split"] for r in csv.DictReader(open(CALTECH / "labels.csv"))}
    for name in PHOTOS:
        rel = f"images/{name}.jpg"
        if splits.get(rel) != "val":
            print(f"error: {rel} is not a val photo", file=sys.stderr)
            return 1
        with Image.open(CALTECH / rel) as im:
            im.convert("RGB").save(out / f"{name.replace('/', '_')}.png")
    print(f"wrote {len(PHOTOS)} PNG files to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
