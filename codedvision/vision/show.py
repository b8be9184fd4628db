"""`codedvision show`: the fMaps of a .cvz file as a grid of grayscale tiles (the paper's Fig. 6).

Each channel is decoded from the file (entropy decoding only), cropped to the positions that
cover the image, normalised to its own min..max (a constant channel is mid-grey), enlarged by
nearest neighbour so that small maps stay visible, and tiled row by row in channel order.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..images import atomic_write
from .head import valid_fmap_size

MIN_TILE = 64  # enlarge maps whose longer side is below this many pixels
GAP = 2  # pixels between tiles
BACKGROUND = 255


def pick_channels(fmaps: torch.Tensor, count: int | None) -> list[int]:
    """All channels, or the `count` with the largest variance (in channel order)."""
    m = fmaps.shape[0]
    if count is None or count >= m:
        return list(range(m))
    var = fmaps.flatten(1).var(1, unbiased=False)
    return sorted(int(i) for i in var.topk(count).indices)


def fmap_grid(fmaps: torch.Tensor, channels: int | None = None, columns: int | None = None,
              min_tile: int = MIN_TILE) -> Image.Image:
    """fMaps (M,h,w) or (1,M,h,w) -> a grayscale grid image ("L")."""
    if fmaps.dim() == 4:
        fmaps = fmaps[0]
    picked = pick_channels(fmaps, channels)
    f = fmaps[picked].double()
    lo = f.flatten(1).min(1).values[:, None, None]
    hi = f.flatten(1).max(1).values[:, None, None]
    span = hi - lo
    norm = torch.where(span > 0, (f - lo) / span.clamp_min(1e-12), torch.full_like(f, 0.5))
    tiles = (norm * 255).round().to(torch.uint8).numpy()
    n, h, w = tiles.shape
    k = max(1, math.ceil(min_tile / max(h, w)))
    tiles = tiles.repeat(k, axis=1).repeat(k, axis=2)
    th, tw = h * k, w * k
    cols = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    grid = np.full((rows * th + (rows - 1) * GAP, cols * tw + (cols - 1) * GAP), BACKGROUND,
                   np.uint8)
    for i in range(n):
        r, c = divmod(i, cols)
        grid[r * (th + GAP) : r * (th + GAP) + th, c * (tw + GAP) : c * (tw + GAP) + tw] = tiles[i]
    return Image.fromarray(grid, "L")


def show(data: bytes, out: Path, codec, channels: int | None = None, force: bool = False) -> dict:
    """Write the fMap grid of .cvz bytes to `out` (PNG or any Pillow format by extension)."""
    header = codec.header(data)
    fmaps = codec.fmaps(data)[0]
    hh, ww = valid_fmap_size(header.height, header.width, 2**codec.cfg.downsamples)
    fmaps = fmaps[:, :hh, :ww]
    image = fmap_grid(fmaps, channels)
    atomic_write(Path(out), image=image, force=force)
    return {"channels": min(channels or fmaps.shape[0], fmaps.shape[0]),
            "fmap_size": (hh, ww), "size": image.size}
