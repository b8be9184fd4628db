"""Published rate-distortion points (CompressAI's results JSON format) to draw beside ours.

A file holds ``{"name": ..., "results": {"bpp": [...], "psnr-rgb": [...], "ms-ssim-rgb": [...]}}``
with one entry per setting, averaged over a data set (Kodak in shared/reference/).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..metrics import ms_ssim_db


def load_reference(path: Path) -> dict | None:
    """One reference curve: {"name", "label", "description", "bpp", "psnr", "ms_ssim_db"}.

    bpp, psnr and ms_ssim_db are lists (psnr or ms_ssim_db None when the file lacks them);
    returns None when the file is not in the expected format.
    """
    try:
        doc = json.loads(Path(path).read_text())
        res = doc["results"]
        bpp = [float(x) for x in res["bpp"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    psnr = res.get("psnr-rgb")
    ms = res.get("ms-ssim-rgb")
    return {
        "name": Path(path).stem,
        # The file name, not the JSON's "name": CompressAI reuses one name for the MSE and the
        # MS-SSIM models of an architecture.
        "label": Path(path).stem,
        "description": str(doc.get("name", "")),
        "bpp": bpp,
        "psnr": [float(x) for x in psnr] if psnr and len(psnr) == len(bpp) else None,
        # Published MS-SSIM is linear; plots and BD-rates use dB.
        "ms_ssim_db": [ms_ssim_db(float(x)) for x in ms] if ms and len(ms) == len(bpp) else None,
    }


def load_references(reference: Path) -> list[dict]:
    """Every usable reference curve in a directory (or the one JSON file given), by file name.

    Raises ValueError (one line) if the path is missing or holds no usable file.
    """
    reference = Path(reference)
    if not reference.exists():
        raise ValueError(f"reference path not found: {reference}")
    files = sorted(reference.glob("*.json")) if reference.is_dir() else [reference]
    curves = [c for c in (load_reference(f) for f in files) if c is not None]
    if not curves:
        raise ValueError(f"no reference JSON with results.bpp found in {reference}")
    return curves
