"""From per-image points to per-codec curves: averages, BD-rates against the anchor, timings."""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from ..metrics import ms_ssim_db
from .bdrate import bd_rate, clean_curve, quality_overlap


def _mean(xs: Sequence[float]) -> float:
    return float(statistics.fmean(xs))


def average_points(records: Sequence[dict], settings: Sequence) -> list[dict]:
    """One averaged point per setting (in the given order), over the images measured.

    Like the published Kodak results: bpp and PSNR are means of the per-image values (PSNR is
    None if any image decoded identically, i.e. infinite PSNR). MS-SSIM is the mean of the
    linear per-image values over the images where it applies (side > 160 px), with its own
    mean bpp over the same images (bpp_ms_ssim), so that an MS-SSIM curve never mixes image
    sets; ms_ssim_db is then -10 * log10(1 - mean MS-SSIM). Times are mean seconds.
    """
    out = []
    for s in settings:
        pts = [r for r in records if r["setting"] == s]
        if not pts:
            continue
        with_ms = [r for r in pts if r["ms_ssim"] is not None]
        psnrs = [r["psnr"] for r in pts]
        mean_ms = _mean([r["ms_ssim"] for r in with_ms]) if with_ms else None
        db = ms_ssim_db(mean_ms)
        out.append(
            {
                "setting": s,
                "n_images": len(pts),
                "bpp": _mean([r["bpp"] for r in pts]),
                "psnr": None if None in psnrs else _mean(psnrs),
                "n_ms_ssim": len(with_ms),
                "bpp_ms_ssim": _mean([r["bpp"] for r in with_ms]) if with_ms else None,
                "ms_ssim": mean_ms,
                "ms_ssim_db": db if db is not None and db != float("inf") else None,
                "encode_s": _mean([r["encode_s"] for r in pts]),
                "decode_s": _mean([r["decode_s"] for r in pts]),
            }
        )
    return out


def curve(averages: Sequence[dict], metric: str) -> tuple[list, list]:
    """(bpp, quality) lists of a codec's averaged points; metric is 'psnr' or 'ms_ssim_db'."""
    rate_key = "bpp_ms_ssim" if metric == "ms_ssim_db" else "bpp"
    return [a[rate_key] for a in averages], [a[metric] for a in averages]


def bd_rate_entry(anchor: Sequence[dict], test: Sequence[dict], metric: str) -> dict:
    """BD-rate (%) of test against anchor for one metric, with the shared quality range.

    {"bd_rate": float or None, "overlap": [low, high] or None} (overlap in dB).
    """
    ra, da = curve(anchor, metric)
    rt, dt = curve(test, metric)
    _, da_clean = clean_curve(ra, da)
    _, dt_clean = clean_curve(rt, dt)
    overlap = quality_overlap(da_clean, dt_clean)
    return {"bd_rate": bd_rate(ra, da, rt, dt), "overlap": list(overlap) if overlap else None}


def reference_as_averages(ref: dict) -> list[dict]:
    """A published curve (see reference.py) in the shape of average_points(), for bd_rate_entry."""
    n = len(ref["bpp"])
    psnr = ref["psnr"] or [None] * n
    ms = ref["ms_ssim_db"] or [None] * n
    return [
        {"bpp": b, "bpp_ms_ssim": b, "psnr": p, "ms_ssim_db": m}
        for b, p, m in zip(ref["bpp"], psnr, ms)
    ]


def bd_rates(averages: dict[str, list[dict]], anchor: str) -> dict[str, dict]:
    """BD-rates of every codec against the anchor, for PSNR and MS-SSIM dB.

    {codec: {"psnr": entry, "ms_ssim_db": entry}}; empty when the anchor was not evaluated.
    """
    if anchor not in averages:
        return {}
    return {
        name: {m: bd_rate_entry(averages[anchor], avg, m) for m in ("psnr", "ms_ssim_db")}
        for name, avg in averages.items()
    }


def median_times(records: Sequence[dict]) -> dict[str, float]:
    """Median encode and decode wall time in seconds over all the points given."""
    return {
        "encode_s": float(statistics.median(r["encode_s"] for r in records)),
        "decode_s": float(statistics.median(r["decode_s"] for r in records)),
    }
