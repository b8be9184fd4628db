"""Encoder-side refinement: spend encoding time to make a file smaller or better.

The forward network maps every image to fMaps in one pass, which is fast but not the best the
decoder could be given: for one image, the fMaps that minimise the rate-distortion cost
(lambda * 255^2 * MSE + bpp at the file's quality) lie some way off (the amortisation gap;
Campos et al. 2019, Yang et al. 2020). `refine_fmaps` starts from the forward network's
fMaps and takes Adam steps on that cost, through the model's own rate estimate and the
backward network, rounding with straight-through gradients, and keeps the best iterate. The
decoder and the file format do not change: a refined file is an ordinary .cvz file.

Each step runs the backward network forward and back over the whole image: on a Kodak image
(768x512, 2 threads, bf16 transforms) a step takes about 1.2 s against 0.32 s for a decode.
The step size was chosen on the trainer's held-out patches (not Kodak).
"""

from __future__ import annotations

import torch

from .model import CodedVisionModel

#: Adam's step size on the gained fMaps (in quantization steps). In a sweep on 2 held-out
#: patches (40 steps, anchors 1, 3, 5 and 7) 0.005 gave +0.11 to +0.31 dB for at most 1% more
#: bits at every anchor; 0.01 and 0.02 bought a little more PSNR at the upper anchors only with
#: up to 28% more bits. With 20 steps on 8 held-out patches (benchmarks/refine_gain.py), 0.005
#: held constant gave a BD-rate of -3.5%; 0.01 and 0.02 decayed to 0 along a half cosine gave
#: -3.4% and -2.6%.
REFINE_LR = 0.005
#: Pictures larger than this are refused: the backward pass holds every activation of the
#: backward network at once (measured: about 0.75 GB per megapixel in float32, 0.3 in bf16)
REFINE_MAX_PIXELS = 4_200_000


def refine_fmaps(model: CodedVisionModel, x: torch.Tensor, y_g: torch.Tensor,
                 position: float, steps: int, lr: float | None = None,
                 autocast: bool = False) -> torch.Tensor:
    """Gained fMaps (1,M,h,w) of image x (1,3,H,W) in [0,1] (unpadded: the rate-distortion
    cost counts its own pixels), improved by `steps` Adam steps on the cost at quality
    `position` (an anchor position); returns the iterate with the lowest estimated cost (the
    first is y_g's own, so the result never costs more by that estimate). lr: Adam's step size
    (None: REFINE_LR). autocast: the backward network in bf16, its output layer in float32 as
    the decoder runs it."""
    lr = REFINE_LR if lr is None else lr
    pos = torch.tensor([float(position)])
    with torch.no_grad():
        inv_gain = model.gains(pos)[1]
    pixels = x.shape[2] * x.shape[3]
    y = y_g.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([y], lr=lr)
    best, best_cost = y_g, float("inf")
    with torch.enable_grad():  # also when the caller runs under no_grad
        for i in range(steps + 1):
            cost = model.rd_loss(model.coded_rd(x, y, inv_gain, autocast=autocast), pos,
                                 pixels)[0]
            if cost.item() < best_cost:
                best, best_cost = y.detach().clone(), cost.item()
            if i == steps:
                break
            # the gradient of y alone: the model's weights get none (and their .grad stays
            # untouched, so codecs shared between threads stay independent)
            (y.grad,) = torch.autograd.grad(cost, [y])
            opt.step()
    return best
