"""Exact integer evaluation of the hyper-synthesis network (and of the checkerboard context).

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


def freeze_layers(net: nn.Sequential, prefix: str = "hs") -> dict[str, torch.Tensor]:
    """Integer weights and biases of every conv in `net`, keyed '{prefix}.{index}.weight|bias'."""
    out = {}
    for i, layer in enumerate(net):
        if isinstance(layer, nn.Conv2d):
            w = torch.round(layer.weight.detach().double() * 2**WEIGHT_BITS)
            b = torch.round(layer.bias.detach().double() * 2 ** (WEIGHT_BITS + ACT_BITS))
            out[f"{prefix}.{i}.weight"] = w.to(torch.int32)
            out[f"{prefix}.{i}.bias"] = b.to(torch.int64)
    return out


class ExactIntegerError(ValueError):
    """The input would overflow exact integer arithmetic (only from corrupt data)."""


class ExactNet:
    """A network of convs, pixel shuffles and ReLUs (the hyper-synthesis, the context model's
    parts), frozen by freeze_layers (with the same prefix), for exact evaluation on inputs that
    are multiples of 2**-ACT_BITS. The float64 weights and the weight side of the overflow
    guard are prepared once, not per file."""

    def __init__(self, net: nn.Sequential, frozen: dict[str, torch.Tensor], prefix: str = "hs"):
        self.layers: list[tuple] = []
        self._sub_kernel_cache: dict = {}
        for i, layer in enumerate(net):
            if isinstance(layer, nn.Conv2d):
                w = frozen[f"{prefix}.{i}.weight"].double()
                b = frozen[f"{prefix}.{i}.bias"].double()
                gain = float(w.abs().sum((1, 2, 3)).amax())
                self.layers.append(("conv", w, b, gain, float(b.abs().amax()), layer.stride,
                                    layer.padding))
            elif isinstance(layer, nn.PixelShuffle):
                self.layers.append(("shuffle", layer.upscale_factor))
            elif isinstance(layer, nn.ReLU):
                self.layers.append(("relu",))
            else:  # pragma: no cover - HyperSynthesis only has the three kinds above
                raise TypeError(f"no exact form for {type(layer).__name__}")

    @torch.no_grad()
    def __call__(self, z: torch.Tensor, outputs=None) -> np.ndarray:
        """Evaluate on z (B,C,h,w) exactly (integers, or multiples of 2**-ACT_BITS as the
        outputs are): (B,M,H,W) float64 numpy array of outputs, multiples of 2**-ACT_BITS.
        outputs: compute only these output channels (a slice, or a list or index tensor, in
        that order; each is its own sum, so they equal a full run's; the last layer must be a
        conv)."""
        if outputs is not None and self.layers[-1][0] != "conv":  # pragma: no cover
            raise TypeError("outputs needs a network that ends in a conv")
        x = z.double() * 2**ACT_BITS
        last = len(self.layers) - 1
        for i, (kind, *args) in enumerate(self.layers):
            if kind == "conv":
                w, b, gain, bias_max, stride, padding = args
                # the same guard for a full and a partial run: corrupt data fails alike
                if float(x.abs().amax()) * gain + bias_max >= EXACT_LIMIT:
                    raise ExactIntegerError("values out of range")
                if i == last and outputs is not None:
                    index = outputs if isinstance(outputs, slice) else torch.as_tensor(
                        outputs, dtype=torch.long)
                    w, b = w[index], b[index]  # a slice takes views, an index copies
                x = F.conv2d(x, w, b, stride=stride, padding=padding)
                x = torch.floor(x * 2.0**-WEIGHT_BITS)
            elif kind == "shuffle":
                x = F.pixel_shuffle(x, args[0])
            else:
                x = torch.clamp_min(x, 0)
        return (x * 2.0**-ACT_BITS).numpy()

    @torch.no_grad()
    def at_non_anchors(self, anchors: torch.Tensor,
                       parities: tuple = ((0, 1), (1, 0))) -> list[np.ndarray]:
        """A one-conv net (odd k x k kernel, 'same' padding) on a checkerboard input, exactly as
        __call__ computes it, but only at the positions (p[0]::2, p[1]::2) of each non-anchor
        parity p in `parities` ((0, 1) and/or (1, 0)); anchors (1,C,H,W), H and W even (fMap
        grids of a hyperprior model are multiples of 4), is zero except
        at the anchors (row + column even). Each output sums only the taps that reach an
        anchor, over the two anchor sub-lattices, so about a quarter of the full conv's work;
        the same integers (exact sums in any order). Returns one (1,O,H/2,W/2) float64 array
        per parity."""
        (kind, w, b, gain, bias_max, stride, padding), = self.layers
        k = w.shape[-1]
        if kind != "conv" or stride != (1, 1) or padding != (k // 2, k // 2) or k % 2 == 0 \
                or k < 3:
            raise TypeError("at_non_anchors needs one odd 'same' conv, 3x3 or larger")
        if anchors.shape[2] % 2 or anchors.shape[3] % 2:
            raise TypeError("at_non_anchors needs even sides")
        x = anchors.double() * 2**ACT_BITS
        if float(x.abs().amax()) * gain + bias_max >= EXACT_LIMIT:
            raise ExactIntegerError("values out of range")
        subs = [x[:, :, ai::2, ai::2] for ai in (0, 1)]
        results = []
        for parity in parities:
            out = 0
            for ai, kern, pad in self._sub_kernels(parity):
                out = out + F.conv2d(F.pad(subs[ai], pad), kern)
            results.append((torch.floor((out + b[None, :, None, None]) * 2.0**-WEIGHT_BITS)
                            * 2.0**-ACT_BITS).numpy())
        return results

    def _sub_kernels(self, parity: tuple[int, int]) -> list[tuple]:
        """For at_non_anchors: per anchor sub-lattice ai ((even, even), (odd, odd)), the taps
        of the kernel that reach it from the non-anchors of `parity` and the padding that lines
        them up; cut once per parity (a copy of the weights), not per call."""
        cache = self._sub_kernel_cache
        if parity not in cache:
            w = self.layers[0][1]
            r, (pi, pj) = w.shape[-1] // 2, parity
            parts = []
            for ai in (0, 1):
                di = [d for d in range(-r, r + 1) if (pi + d - ai) % 2 == 0]
                dj = [d for d in range(-r, r + 1) if (pj + d - ai) % 2 == 0]
                # output (p, q) reads sub[p + (pi + di - ai) / 2, q + (pj + dj - ai) / 2]
                ui = [(pi + d - ai) // 2 for d in di]
                uj = [(pj + d - ai) // 2 for d in dj]
                kern = w[:, :, [d + r for d in di]][:, :, :, [d + r for d in dj]].contiguous()
                parts.append((ai, kern, (-uj[0], uj[-1], -ui[0], ui[-1])))
            cache[parity] = parts
        return cache[parity]
