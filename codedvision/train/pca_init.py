"""Start a codec from a linear transform code: the networks initialised as a hierarchical PCA.

A default-initialised codec starts from noise and spends its first tens of thousands of steps
learning what any linear transform code already does. The paper's network shape can compute
one exactly: every down-sampling step (the strided first conv, then each 4x4/2 conv) reads
2x2 neighbourhoods, so each can project a 2x2 block of the previous stage's channels onto its
principal components; the backward network's up-sampling convs (3x3, pixel shuffle) can
expand them back, and the last 5x5 conv and pixel shuffle can return pixels. `pca_initialise`
sets exactly those weights from the training images' statistics, stage by stage:

    stage 1 (1/2):  2x2 RGB blocks (12 numbers)       -> their 12 components (all)
    stage 2 (1/4):  2x2 blocks of stage 1 (48)         -> 48 (all)
    stage 3 (1/8):  2x2 blocks of stage 2 (192)        -> the top `channels`
    stage 4 (1/16): 2x2 blocks of stage 3              -> the top min(channels, fmaps): fMaps

The first PReLU starts as the identity and every residual unit starts as the identity (as in
any fresh model), so the untrained codec is that linear code: on the trainer's 16 held-out
patches it reconstructs them (unquantized) at 34.5 dB with 96 channels, 35.7 with 128 and 38.0
with 192 (mean PSNR per patch); the default model's trained transforms reach 34.5 dB at their
top quality. Its fMaps are orthonormal coefficients times FMAP_SCALE; the hyperprior and the
gains start as in a fresh model. Everything the linear code leaves out (other channels,
off-centre taps) starts at zero, and the residual units, whose first convs read every
channel, grow the non-linear part from there.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from ..model import CodedVisionModel
from ..networks import Upsample

#: fMaps = orthonormal PCA coefficients (pixels in [0, 1]) times this: at the middle quality
#: anchor (gain 1) a quantization step of 1/4, about right for its lambda by high-rate theory
FMAP_SCALE = 4.0


def stage_dims(cfg: ModelConfig) -> list[int]:
    """Components kept at each down-sampling stage (the last are the live fMaps)."""
    dims, width = [], 3
    for _ in range(cfg.downsamples):
        width = min(4 * width, cfg.channels)
        dims.append(width)
    dims[-1] = min(dims[-1], cfg.fmaps)
    return dims


def check_pca_init(cfg: ModelConfig) -> None:
    """Refuse a model shape the linear code does not fit, with a one-line reason."""
    if cfg.channels < 12:
        raise ValueError("init 'pca' needs channels >= 12 (the 2x2 RGB blocks of the first stage)")
    if cfg.decoder_channels < cfg.channels:
        raise ValueError("init 'pca' needs backward_channels >= channels")


def _blocks(h: torch.Tensor) -> torch.Tensor:
    """(N,C,H,W) -> (N*H/2*W/2, 4C): every 2x2 block, its numbers ordered (channel, row, col),
    the order in which the backward network's pixel shuffles place them."""
    return F.pixel_unshuffle(h, 2).permute(0, 2, 3, 1).reshape(-1, 4 * h.shape[1])


def pca_bases(images: list[np.ndarray], dims: list[int], side: int) -> list[torch.Tensor]:
    """Per stage, the orthonormal basis (4 x previous dims, dims[s]) of the top principal
    components (uncentred: of x - 0.5) of 2x2 blocks of the previous stage's coefficients, from
    the top-left side x side crop of every image (HxWx3 uint8; side a multiple of
    2**len(dims))."""
    x = torch.from_numpy(np.stack([a[:side, :side] for a in images])).permute(0, 3, 1, 2)
    h = x.double() / 255.0 - 0.5
    bases = []
    for k in dims:
        f = _blocks(h)
        evals, evecs = torch.linalg.eigh(f.T @ f / f.shape[0])
        p = evecs[:, torch.argsort(evals, descending=True)[:k]]
        bases.append(p)
        n, _, hh, ww = h.shape
        h = (f @ p).reshape(n, hh // 2, ww // 2, k).permute(0, 3, 1, 2)
    return bases


@torch.no_grad()
def pca_initialise(model: CodedVisionModel, images: list[np.ndarray]) -> None:
    """Set `model`'s forward and backward networks to the hierarchical PCA code of `images`
    (HxWx3 uint8, the training images: their largest common top-left crop that the stride
    divides; see the module docstring). Other weights stay as they are."""
    cfg = model.cfg
    check_pca_init(cfg)
    side = min(min(a.shape[:2]) for a in images) // cfg.stride * cfg.stride
    if side == 0:
        raise ValueError(f"init 'pca' needs images of at least {cfg.stride}x{cfg.stride} pixels")
    bases = [p.float() for p in pca_bases(images, stage_dims(cfg), side)]
    fwd = list(model.forward_net.net)
    convs = [m for m in fwd if isinstance(m, nn.Conv2d)]
    first, downs, last = convs[0], convs[1:-1], convs[-1]
    for conv in convs:
        conv.weight.zero_()
        conv.bias.zero_()
    # the strided 5x5 first conv: output (i, j) reads rows 2i-2..2i+2, the block is taps 2, 3
    k = bases[0].shape[1]
    first.weight[:k, :, 2:4, 2:4] = bases[0].T.reshape(k, 3, 2, 2)
    next(m for m in fwd if isinstance(m, nn.PReLU)).weight.fill_(1.0)
    # the 4x4/2 convs: output (i, j) reads rows 2i-1..2i+2, the block is taps 1, 2
    for conv, p in zip(downs, bases[1:]):
        k, kin = p.shape[1], p.shape[0] // 4
        conv.weight[:k, :kin, 1:3, 1:3] = p.T.reshape(k, kin, 2, 2)
    live = torch.arange(bases[-1].shape[1])
    last.weight[live, live, 2, 2] = FMAP_SCALE

    bwd = list(model.backward_net.net)
    b_convs = [bwd[0]] + [m.conv for m in bwd if isinstance(m, Upsample)] + [bwd[-2]]
    for conv in b_convs:
        conv.weight.zero_()
        conv.bias.zero_()
    bwd[0].weight[live, live, 2, 2] = 1.0 / FMAP_SCALE
    # conv output channel c*4 + 2a + b becomes channel c at sub-position (a, b) of the shuffle,
    # which is the basis's row (c, a, b): the centre tap expands each stage's components
    for conv, p in zip(b_convs[1:], reversed(bases)):
        conv.weight[: p.shape[0], : p.shape[1], conv.weight.shape[-1] // 2,
                    conv.weight.shape[-1] // 2] = p
