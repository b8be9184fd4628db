"""A labelled side-by-side of one crop: the original and each codec at a matched rate."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

#: Preferred panels: ours, the oldest classic, the anchor.
PREFERRED = ("codedvision", "jpeg", "hevc")
TARGET_BPP = 0.5


def closest_point(records: Sequence[dict], bpp: float) -> dict | None:
    """The point whose bpp is closest to bpp (None if there are none)."""
    return min(records, key=lambda r: abs(r["bpp"] - bpp), default=None)


def choose_panels(
    points: dict[str, list[dict]], target_bpp: float = TARGET_BPP
) -> tuple[float, list[dict]]:
    """Pick the codecs and points to show for one image.

    points: that image's records by codec name. The rate to match is that of codedvision's
    point nearest target_bpp (or target_bpp itself without codedvision); each codec shown
    (codedvision, JPEG, HEVC, or up to three codecs present when none of those is) contributes
    its point nearest that rate. Returns (matched bpp, records).
    """
    names = [n for n in PREFERRED if points.get(n)]
    if not names:
        names = [n for n, recs in points.items() if recs][:3]
    ours = closest_point(points.get("codedvision", []), target_bpp)
    target = ours["bpp"] if ours is not None else target_bpp
    return target, [closest_point(points[n], target) for n in names]


def detailed_crop_box(img: Image.Image, size: int) -> tuple[int, int, int, int]:
    """The size x size window with the most detail (mean absolute gradient of the grey image).

    Flat sky shows no artefacts; textured regions show what the codecs throw away.
    """
    grey = np.asarray(img.convert("L"), dtype=np.float32)
    energy = np.zeros_like(grey)
    energy[:, 1:] += np.abs(np.diff(grey, axis=1))
    energy[1:, :] += np.abs(np.diff(grey, axis=0))
    h, w = grey.shape
    step = max(size // 4, 1)
    best, box = -1.0, (0, 0, size, size)
    for y in range(0, h - size + 1, step):
        for x in range(0, w - size + 1, step):
            score = float(energy[y : y + size, x : x + size].mean())
            if score > best:
                best, box = score, (x, y, x + size, y + size)
    return box


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def render(
    path: Path,
    original: Image.Image,
    panels: Sequence[tuple[Image.Image, list[str]]],
    crop: int = 256,
) -> Path:
    """Save original and decoded crops in a row, each with its label lines above it.

    panels: (decoded image, label lines) per codec. Crops smaller than 192 px are enlarged
    with nearest-neighbour sampling so that artefacts stay visible and labels fit.
    """
    size = min(crop, original.width, original.height)
    box = detailed_crop_box(original, size)
    scale = max(1, -(-192 // size))
    side = size * scale
    font = _font(13)
    line_h, pad = 16, 6
    rows = [(original, ["original", f"{original.width}x{original.height}", f"crop at {box[:2]}"])]
    rows += list(panels)
    band = pad * 2 + line_h * max(len(lines) for _, lines in rows)
    sheet = Image.new("RGB", (len(rows) * (side + pad) + pad, band + side + pad), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (img, lines) in enumerate(rows):
        x0 = pad + i * (side + pad)
        tile = img.crop(box).resize((side, side), Image.Resampling.NEAREST)
        sheet.paste(tile, (x0, band))
        for j, text in enumerate(lines):
            draw.text((x0, pad + j * line_h), text, fill="black", font=font)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, "PNG")
    return path
