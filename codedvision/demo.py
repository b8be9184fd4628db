"""`codedvision demo`: the main job on built-in defaults.

Compresses the shipped sample photo (Kodak kodim23, free to redistribute) with the shipped
model, decompresses it, and prints size, bpp, PSNR, MS-SSIM and times.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from PIL import Image

from .codec import load
from .images import atomic_write
from .metrics import ms_ssim, ms_ssim_db, psnr

SAMPLE = Path(__file__).resolve().parent / "data" / "sample.png"


def run_demo(out: Path, quality: float = 75, echo=print) -> dict:
    """Run the demo into folder `out` (its three demo files are replaced); returns the figures."""
    t0 = time.perf_counter()
    codec = load()
    t_load = time.perf_counter() - t0
    original = Image.open(SAMPLE).convert("RGB")
    t0 = time.perf_counter()
    data = codec.encode(original, quality=quality)
    t_enc = time.perf_counter() - t0
    t0 = time.perf_counter()
    decoded = codec.decode(data)
    t_dec = time.perf_counter() - t0
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "sample.png", image=original, force=True)
    atomic_write(out / "sample.cvz", data, force=True)
    atomic_write(out / "sample_decoded.png", image=decoded, force=True)
    a, b = np.asarray(original), np.asarray(decoded)
    w, h = original.size
    ssim = ms_ssim(a, b)
    figures = {
        "image": f"{SAMPLE.name} ({w}x{h})",
        "png_bytes": SAMPLE.stat().st_size,
        "cvz_bytes": len(data),
        "bpp": len(data) * 8 / (w * h),
        "quality": quality,
        "psnr_db": psnr(a, b),
        "ms_ssim": ssim,
        "ms_ssim_db": ms_ssim_db(ssim),
        "load_s": t_load,
        "encode_s": t_enc,
        "decode_s": t_dec,
        "model_id": codec.model_id.hex(),
    }
    echo(f"sample {figures['image']}, model {figures['model_id']}, quality {quality:g}")
    echo(f"  size    {figures['png_bytes']:,} bytes (PNG) -> {len(data):,} bytes (.cvz), "
         f"{figures['bpp']:.3f} bpp")
    echo(f"  quality PSNR {figures['psnr_db']:.2f} dB, MS-SSIM {ssim:.4f} "
         f"({figures['ms_ssim_db']:.2f} dB)")
    echo(f"  time    load {t_load:.2f} s, encode {t_enc:.2f} s, decode {t_dec:.2f} s")
    echo(f"  files   {out}/sample.png, sample.cvz, sample_decoded.png")
    return figures
