"""Entropy models: differentiable rates for training, frozen integer tables for coding.

Two models share one interface (`likelihood` for training, `tables` for export):

- `FactorizedPWL`, the paper's: one learned probability mass function per channel over the
  integers [-R, R]; the density of a continuous (noisy) value is the piecewise-linear
  interpolation of that pmf, so the rate L_R = -log2 P is differentiable in both the value and
  the pmf.
- `GaussianConditional`: a zero-mean Gaussian whose scale comes from the hyperprior, integrated
  over each quantization bin. At coding time the scale is snapped to a fixed table of
  `num_scales` log-spaced scales, each with a frozen integer frequency table.

Every frozen table has one extra last symbol, the escape: a value outside the table's radius is
coded as escape followed by the value itself (see codedvision.coder).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

LIKELIHOOD_FLOOR = 1e-9
TABLE_PRECISION = 16  # frozen frequencies sum to about 2**16 (constriction renormalises exactly)


class FactorizedPWL(nn.Module):
    """Per-channel piecewise-linear density over [-radius, radius].

    Args:
        channels: number of channels C; every channel has its own pmf.
        radius: the pmf covers the integers -radius..radius.
    """

    def __init__(self, channels: int, radius: int):
        super().__init__()
        self.radius = radius
        support = torch.arange(-radius, radius + 1, dtype=torch.float32)
        # Start as a discretised Laplace of scale 2: a broad prior that training then sharpens.
        self.logits = nn.Parameter((-support.abs() / 2.0).repeat(channels, 1))

    def pmf(self) -> torch.Tensor:
        """(C, 2R+1) probabilities of the integers -R..R, per channel."""
        return torch.softmax(self.logits.float(), dim=1)

    def likelihood(self, v: torch.Tensor) -> torch.Tensor:
        """Piecewise-linear density at v (B,C,H,W) (noisy or integer values), same shape."""
        b, c, h, w = v.shape
        pmf = self.pmf()
        pos = (v.float() + self.radius).transpose(0, 1).reshape(c, -1)
        pos = torch.nan_to_num(pos).clamp(0, 2 * self.radius)
        lo = pos.detach().floor().clamp(max=2 * self.radius - 1)
        t = pos - lo
        lo = lo.long()
        p = (1 - t) * pmf.gather(1, lo) + t * pmf.gather(1, lo + 1)
        return p.clamp_min(LIKELIHOOD_FLOOR).reshape(c, b, h, w).transpose(0, 1)

    @torch.no_grad()
    def tables(self) -> tuple[np.ndarray, np.ndarray]:
        """Frozen integer tables: freqs (C, 2R+2) int32 (last column: escape), radius (C,) int32."""
        pmf = self.pmf().double().cpu().numpy()
        freqs = np.maximum(np.rint(pmf * 2**TABLE_PRECISION), 1).astype(np.int32)
        esc = np.ones((freqs.shape[0], 1), dtype=np.int32)
        radius = np.full(freqs.shape[0], self.radius, dtype=np.int32)
        return np.concatenate([freqs, esc], axis=1), radius


def _std_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * torch.erfc(-x * (1.0 / math.sqrt(2.0)))


class GaussianConditional(nn.Module):
    """Zero-mean Gaussian of given log-scale, integrated over unit bins.

    Args:
        num_scales, scale_min, scale_max: the coding-time scale table (log-spaced).
    """

    def __init__(self, num_scales: int, scale_min: float, scale_max: float):
        super().__init__()
        self.num_scales = num_scales
        self.scale_min = scale_min
        self.scale_max = scale_max
        self.log_min = math.log(scale_min)
        self.log_step = (math.log(scale_max) - math.log(scale_min)) / (num_scales - 1)

    def likelihood(self, v: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
        """P(bin of v) under N(0, exp(log_scale)^2), elementwise, in float32."""
        scale = torch.exp(log_scale.float()).clamp(self.scale_min, self.scale_max)
        a = v.float().abs()
        upper = _std_normal_cdf((0.5 - a) / scale)
        lower = _std_normal_cdf((-0.5 - a) / scale)
        return (upper - lower).clamp_min(LIKELIHOOD_FLOOR)

    def scale_table(self) -> np.ndarray:
        return np.exp(self.log_min + self.log_step * np.arange(self.num_scales))

    def tables(self) -> tuple[np.ndarray, np.ndarray]:
        """Frozen integer tables: freqs (S, L) int32 padded with 0, radius (S,) int32.

        Table s covers -radius[s]..radius[s] (2r+1 symbols) and then the escape symbol, whose
        frequency is the Gaussian mass beyond the radius (at least 1).
        """
        from scipy.special import ndtr  # exact enough, and independent of torch's kernels

        scales = self.scale_table()
        radii = np.ceil(scales * 8 + 2).astype(np.int32)
        width = int(2 * radii.max() + 2)
        freqs = np.zeros((len(scales), width), dtype=np.int32)
        for i, (s, r) in enumerate(zip(scales, radii)):
            k = np.arange(-r, r + 1, dtype=np.float64)
            pmf = ndtr((k + 0.5) / s) - ndtr((k - 0.5) / s)
            tail = 2 * ndtr(-(r + 0.5) / s)
            row = np.maximum(np.rint(np.append(pmf, tail) * 2**TABLE_PRECISION), 1)
            freqs[i, : 2 * r + 2] = row.astype(np.int32)
        return freqs, radii
