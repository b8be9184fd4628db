"""Bjontegaard delta rate (BD-rate): average rate difference (%) at equal quality.

Usable on its own::

    from codedvision.evaluate.bdrate import bd_rate
    bd_rate([0.2, 0.5, 1.0], [28.1, 31.9, 35.2], [0.18, 0.45, 0.9], [28.3, 32.0, 35.4])

A thin wrapper of ``bjontegaard.bd_rate`` with Akima interpolation of log-rate over quality,
integrated over the quality range both curves cover. Negative means the test codec needs fewer
bits than the anchor for the same quality. Rates are in bpp (any unit works, as long as both
curves use the same one); quality is PSNR in dB or MS-SSIM in dB, higher is better.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np


def clean_curve(
    rates: Sequence[float | None], dists: Sequence[float | None]
) -> tuple[np.ndarray, np.ndarray]:
    """Points with positive finite rate and finite quality, sorted by quality, one per quality.

    The interpolation needs strictly increasing quality: of points with equal quality the one
    with the lowest rate is kept.
    """
    pts = sorted(
        (float(d), float(r))
        for r, d in zip(rates, dists, strict=True)
        if r is not None and d is not None and math.isfinite(r) and math.isfinite(d) and r > 0
    )
    keep: dict[float, float] = {}
    for d, r in pts:
        keep.setdefault(d, r)  # sorted, so the first rate seen at a quality is the lowest
    d = np.array(list(keep.keys()), dtype=float)
    r = np.array(list(keep.values()), dtype=float)
    return r, d


def quality_overlap(
    dist_anchor: Sequence[float], dist_test: Sequence[float]
) -> tuple[float, float] | None:
    """The quality interval (low, high) both curves cover, or None if they do not overlap."""
    if len(dist_anchor) == 0 or len(dist_test) == 0:
        return None
    low = max(min(dist_anchor), min(dist_test))
    high = min(max(dist_anchor), max(dist_test))
    return (float(low), float(high)) if high > low else None


def bd_rate(
    rate_anchor: Sequence[float | None],
    dist_anchor: Sequence[float | None],
    rate_test: Sequence[float | None],
    dist_test: Sequence[float | None],
) -> float | None:
    """BD-rate of test against anchor in percent, or None when it cannot be computed.

    None when either curve has fewer than two usable points or the curves share no quality
    range. Unusable points (None, inf, NaN, rate <= 0) are dropped first.
    """
    from bjontegaard import bd_rate as _bd_rate

    ra, da = clean_curve(rate_anchor, dist_anchor)
    rt, dt = clean_curve(rate_test, dist_test)
    if len(ra) < 2 or len(rt) < 2 or quality_overlap(da, dt) is None:
        return None
    with warnings.catch_warnings():
        # bjontegaard warns when the overlap is small; the report states the overlap itself.
        warnings.simplefilter("ignore")
        value = _bd_rate(ra, da, rt, dt, method="akima", require_matching_points=False)
    value = float(value)
    return value if math.isfinite(value) else None
