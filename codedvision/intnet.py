"""Exact integer evaluation of the hyper-synthesis network.

The decoder chooses each fMap's probability table from the scales that the hyper-synthesis
network computes from the decoded hyper-latents. If encoder and decoder computed those scales
in floating point, a different thread count, CPU or library could change a last bit, pick
another table and corrupt the rest of the file (CompressAI issues #279, #309, #320).

So at export the network's weights are frozen to fixed point (WEIGHT_BITS fractional bits) and
at coding time every activation is kept in fixed point too (ACT_BITS fractional bits). All
values are integers held in float64: sums of integer products below 2**53 are exact in any
order, so the result does not depend on how the convolution is split over threads. A guard
refuses inputs whose accumulators would leave that range.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

WEIGHT_BITS = 12
ACT_BITS = 8
EXACT_LIMIT = 2.0**52


def freeze_layers(net: nn.Sequential) -> dict[str, torch.Tensor]:
    """Integer weights and biases of every conv in `net`, keyed 'hs.{index}.weight|bias'."""
    out = {}
    for i, layer in enumerate(net):
        if isinstance(layer, nn.Conv2d):
            w = torch.round(layer.weight.detach().double() * 2**WEIGHT_BITS)
            b = torch.round(layer.bias.detach().double() * 2 ** (WEIGHT_BITS + ACT_BITS))
            out[f"hs.{i}.weight"] = w.to(torch.int32)
            out[f"hs.{i}.bias"] = b.to(torch.int64)
    return out


class ExactIntegerError(ValueError):
    """The input would overflow exact integer arithmetic (only from corrupt data)."""


@torch.no_grad()
def run_exact(net: nn.Sequential, frozen: dict[str, torch.Tensor], z: torch.Tensor) -> np.ndarray:
    """Evaluate `net` (convs, pixel shuffles, ReLUs) on integer z exactly.

    Args:
        net: the float module, used only for its layer structure and padding.
        frozen: output of freeze_layers.
        z: (1,C,h,w) integer-valued tensor.
    Returns: (1,M,H,W) float64 numpy array of outputs, multiples of 2**-ACT_BITS.
    """
    x = z.double() * 2**ACT_BITS
    for i, layer in enumerate(net):
        if isinstance(layer, nn.Conv2d):
            w = frozen[f"hs.{i}.weight"].double()
            b = frozen[f"hs.{i}.bias"].double()
            bound = x.abs().amax() * w.abs().sum((1, 2, 3)).amax() + b.abs().amax()
            if float(bound) >= EXACT_LIMIT:
                raise ExactIntegerError("hyper-latents out of range")
            x = F.conv2d(x, w, b, stride=layer.stride, padding=layer.padding)
            x = torch.floor(x * 2.0**-WEIGHT_BITS)
        elif isinstance(layer, nn.PixelShuffle):
            x = F.pixel_shuffle(x, layer.upscale_factor)
        elif isinstance(layer, nn.ReLU):
            x = torch.clamp_min(x, 0)
        else:  # pragma: no cover - HyperSynthesis only has the three kinds above
            raise TypeError(f"no exact form for {type(layer).__name__}")
    return (x * 2.0**-ACT_BITS).numpy()
