"""Image quality metrics on 8-bit RGB: PSNR (dB), MS-SSIM (linear) and MS-SSIM in dB.

All functions take uint8 arrays of shape (H, W, 3) (or (H, W) for grey images), the same
conventions as the published CompressAI Kodak points, so the numbers are comparable:

- PSNR over all channels at once: 10 * log10(255^2 / MSE), MSE over H * W * 3 values.
- MS-SSIM of pytorch_msssim with data_range=255 and its defaults (5 scales, 11-tap Gaussian),
  on the RGB channels.
"""

from __future__ import annotations

import math

import numpy as np

#: MS-SSIM down-samples four times with an 11-tap window, so pytorch_msssim needs the shorter
#: side to be strictly greater than (11 - 1) * 2**4 = 160 px.
MS_SSIM_MIN_SIDE = 161


def _check_pair(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    if a.dtype != np.uint8 or b.dtype != np.uint8:
        raise ValueError(f"expected uint8 images, got {a.dtype} and {b.dtype}")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB between two uint8 images over all pixels and channels; inf if identical."""
    _check_pair(a, b)
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    if mse == 0:
        return math.inf
    return float(10.0 * math.log10(255.0**2 / mse))


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float | None:
    """Linear MS-SSIM (0..1, higher is better) of two uint8 images, on RGB, data range 255.

    Returns None when the shorter side is 160 px or less: the five-scale pyramid does not fit
    and pytorch_msssim would refuse the image.
    """
    _check_pair(a, b)
    if min(a.shape[0], a.shape[1]) < MS_SSIM_MIN_SIDE:
        return None
    # Imported here so that PSNR users do not pay for importing torch.
    import torch
    from pytorch_msssim import ms_ssim as _ms_ssim

    def to_tensor(x: np.ndarray) -> torch.Tensor:
        # float32 in contiguous NCHW, as CompressAI measures: 4-5x faster than float64 and
        # within 0.01 dB of it.
        x = x[:, :, None] if x.ndim == 2 else x
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32))[None]

    with torch.no_grad():
        value = _ms_ssim(to_tensor(a), to_tensor(b), data_range=255, size_average=True)
    return float(value)


def ms_ssim_db(value: float | None) -> float | None:
    """MS-SSIM in dB, -10 * log10(1 - ms_ssim), the usual scale for plots and BD-rates.

    None stays None (not applicable); a perfect 1.0 gives inf.
    """
    if value is None:
        return None
    if value >= 1.0:
        return math.inf
    return float(-10.0 * math.log10(1.0 - value))
