"""The trainable codec: forward net, per-quality gains, entropy models, backward net.

    x ──ForwardNet──> y ──× gain(q)──> y_g ──round──> ŷ_g ──× inv_gain(q)──> BackwardNet ──> x̂
                                        │                 (the fMaps)
                        hyperprior:     └─|·|─HyperAnalysis─> z ──round──> ẑ ──HyperSynthesis──> scales of ŷ_g
                        mean-scale (cfg.mean_scale): HyperAnalysis reads y_g's signs too,
                        HyperSynthesis also predicts means, and ŷ_g = round(y_g - mean) + mean
                        checkerboard (cfg.checkerboard): the means and scales of half of the
                        positions are corrected from the quantized other half (its anchors)

Variable rate in one model (after Cui et al., "Asymmetric gained deep image compression"):
each quality anchor k has a learned gain vector g_k and inverse gain vector g'_k over the M
fMaps; between anchors the vectors are interpolated log-linearly, so quality is continuous.
Training samples the anchor position per image and weighs its distortion with the matching
lambda (loss = lambda * 255^2 * MSE + bpp, CompressAI's scale).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig
from .entropy_models import FactorizedPWL, GaussianConditional
from .networks import (BackwardNet, CheckerboardContext, ForwardNet, HyperAnalysis,
                       HyperSynthesis)
from .precision import autocast as bf16_autocast


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Rounding whose gradient is the identity (straight-through)."""
    return x + (torch.round(x) - x).detach()


class CodedVisionModel(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.forward_net = ForwardNet(cfg)
        self.backward_net = BackwardNet(cfg)
        k, m = len(cfg.lambdas), cfg.fmaps
        # High-rate theory: the best quantizer step scales as 1/sqrt(lambda); start there.
        lam = torch.tensor(cfg.lambdas)
        init = 0.5 * torch.log(lam / lam[len(lam) // 2]).unsqueeze(1).repeat(1, m)
        self.log_gain = nn.Parameter(init.clone())
        self.log_inv_gain = nn.Parameter(-init.clone())
        if cfg.entropy_model == "hyperprior":
            self.hyper_analysis = HyperAnalysis(cfg)
            self.hyper_synthesis = HyperSynthesis(cfg)
            self.z_model = FactorizedPWL(cfg.hyper_channels, cfg.pwl_radius)
            self.y_model = GaussianConditional(cfg.num_scales, cfg.scale_min, cfg.scale_max)
            if cfg.checkerboard:
                self.context = CheckerboardContext(cfg)
        else:
            self.y_model = FactorizedPWL(cfg.fmaps, cfg.pwl_radius)

    # -- gains ---------------------------------------------------------------------------
    def gains(self, position: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Gain and inverse gain (B,M,1,1) at anchor positions (B,) in [0, K-1]."""
        k = self.log_gain.shape[0]
        pos = position.float().clamp(0, k - 1)
        lo = pos.floor().clamp(max=k - 2).long()
        t = (pos - lo).unsqueeze(1)

        def interp(table: torch.Tensor) -> torch.Tensor:
            v = (1 - t) * table[lo] + t * table[lo + 1]
            return torch.exp(v)[:, :, None, None]

        return interp(self.log_gain), interp(self.log_inv_gain)

    def lambdas(self, position: torch.Tensor) -> torch.Tensor:
        """Lambda (B,) at anchor positions (log-linear between anchors)."""
        lam = torch.log(torch.tensor(self.cfg.lambdas, device=position.device))
        k = lam.shape[0]
        pos = position.float().clamp(0, k - 1)
        lo = pos.floor().clamp(max=k - 2).long()
        t = pos - lo
        return torch.exp((1 - t) * lam[lo] + t * lam[lo + 1])

    # -- training forward ----------------------------------------------------------------
    def forward(self, x: torch.Tensor, position: torch.Tensor, autocast: bool = False) -> dict:
        """Training/validation pass with noise-relaxed rates.

        Args:
            x: (B,3,H,W) in [0,1], H and W multiples of cfg.stride.
            position: (B,) anchor positions in [0, K-1].
            autocast: run the convolutions in bfloat16 (entropy models stay float32).
        Returns: dict with x_hat (B,3,H,W), bits (B,) estimated bits per image, mse (B,).
        """
        gain, inv_gain = self.gains(position)
        with bf16_autocast(autocast):
            y = self.forward_net(x)
        return self._rd(x, y.float() * gain, inv_gain, autocast, coded=False)

    def _rd(self, x: torch.Tensor, y: torch.Tensor, inv_gain: torch.Tensor, autocast: bool,
            coded: bool) -> dict:
        """The pass from gained fMaps y on: x_hat (cropped to x), bits (B,) and mse (B,).

        coded=False (training): rates of y and z with uniform noise added, the hyper nets in
        bf16 under autocast. coded=True (as the codec codes): rates of the rounded y and z, the
        hyper nets in float32 (the codec runs them as exact integer nets) and the backward
        network's output layer too (as the decoder does). Either way the image is made from
        the rounded fMaps, with straight-through gradients.
        """
        def relaxed(t: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
            return round_ste(t) if coded else t + noise

        def draw_noise(t: torch.Tensor) -> torch.Tensor | None:
            return None if coded else torch.empty_like(t).uniform_(-0.5, 0.5)

        noise = draw_noise(y)
        bits = torch.zeros(x.shape[0], device=x.device)
        mean = None
        if self.cfg.entropy_model == "hyperprior":
            with bf16_autocast(autocast and not coded):
                z = self.hyper_analysis(y)
            z = z.float()
            bits = bits - torch.log2(self.z_model.likelihood(relaxed(z, draw_noise(z)))).sum(
                (1, 2, 3))
            # means enter y_hat itself: bf16's 8 significant bits would move them by up to a
            # quarter step (the codec's are exact to 2**-8), so mean-scale runs this in fp32
            with bf16_autocast(autocast and not coded and not self.cfg.mean_scale):
                hyper = self.hyper_synthesis(round_ste(z))
            log_scale, mean = self.entropy_params(hyper.float(), y)
            centred = y if mean is None else y - mean
            lik_y = self.y_model.likelihood(relaxed(centred, noise), log_scale)
        else:
            lik_y = self.y_model.likelihood(relaxed(y, noise))
        bits = bits - torch.log2(lik_y).sum((1, 2, 3))
        y_hat = (round_ste(y) if mean is None else round_ste(y - mean) + mean) * inv_gain
        with bf16_autocast(autocast):
            x_hat = self.backward_net(y_hat, float32_output=autocast and coded)
        x_hat = x_hat.float()[:, :, : x.shape[2], : x.shape[3]]
        mse = F.mse_loss(x_hat, x, reduction="none").mean((1, 2, 3))
        return {"x_hat": x_hat, "bits": bits, "mse": mse}

    def coded_rd(self, x: torch.Tensor, y_g: torch.Tensor, inv_gain: torch.Tensor,
                 autocast: bool = False) -> dict:
        """Like forward's dict, bits (B,) and mse (B,) (so rd_loss applies), of gained fMaps
        y_g as the codec codes them: z and y_g
        rounded (around the means for a mean-scale model), rates from the discrete
        likelihoods, the image from the rounded fMaps, MSE over x's own pixels (x may be
        smaller than the backward network's output, which is then cropped). Rounding passes
        gradients straight through, so y_g can be optimised (codedvision.refine). autocast:
        the backward network in bf16 (its output layer in float32, as the codec decodes)."""
        return self._rd(x, y_g, inv_gain, autocast, coded=True)

    def split_hyper(self, hyper: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The hyper-synthesis output as (log-scales, means or None)."""
        if not self.cfg.mean_scale:
            return hyper, None
        m = self.cfg.fmaps
        return hyper[:, :m], hyper[:, m:]

    def entropy_params(self, hyper: torch.Tensor, y_g: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(log-scales, means or None) of the gained fMaps y_g from the hyper-synthesis output;
        with the checkerboard context, the non-anchors' from y_g's quantized anchors."""
        log_scale, mean = self.split_hyper(hyper)
        if self.cfg.checkerboard:
            log_scale, mean = self.context(log_scale, mean, round_ste(y_g - mean) + mean)
        return log_scale, mean

    @torch.no_grad()
    def quantize(self, y_g: torch.Tensor, limit: float) -> torch.Tensor:
        """The quantized fMaps for gained fMaps y_g: round(y_g), or round(y_g - mean) + mean for
        a mean-scale model (its means corrected by the checkerboard context, if any); coded
        values clamped to +-limit. The means come from the float
        hyper networks on y_g alone (edge-padded to their 4-position grid): a file's come from
        the exact integer ones over the whole padded picture, so near y_g's borders (a crop, a
        window of the fMap cache) and by rounding they can differ; an approximation for
        training classifier heads."""
        if not self.cfg.mean_scale:
            return torch.round(y_g).clamp(-limit, limit)
        h, w = y_g.shape[2:]
        padded = F.pad(y_g, (0, -w % 4, 0, -h % 4), mode="replicate")
        hyper = self.hyper_synthesis(torch.round(self.hyper_analysis(padded)))
        mean = self.entropy_params(hyper, padded)[1][:, :, :h, :w]
        return torch.round(y_g - mean).clamp(-limit, limit) + mean

    def rd_loss(self, out: dict, position: torch.Tensor, num_pixels: int, rate_weight: float = 1.0,
                distortion: torch.Tensor | None = None, weight: torch.Tensor | None = None):
        """Mean over the batch of weight * (lambda*D + rate_weight*bpp); also returns bpp, psnr.

        D is `distortion` (B,), on the scale of 255^2*MSE, which it defaults to; `weight` (B,)
        defaults to 1."""
        bpp = out["bits"] / num_pixels
        lam = self.lambdas(position)
        if distortion is None:
            distortion = 255.0**2 * out["mse"]
        per_image = lam * distortion + rate_weight * bpp
        loss = (per_image if weight is None else weight * per_image).mean()
        psnr = (-10 * torch.log10(out["mse"].detach().clamp_min(1e-10))).mean()
        return loss, bpp.detach().mean(), psnr

    # -- channel order -------------------------------------------------------------------
    @torch.no_grad()
    def permute_fmaps(self, order: torch.Tensor) -> None:
        """Reorder the fMap channels in place (new channel i = old channel order[i]): every
        layer that makes or reads fMaps follows, so the codec computes the same function up
        to the order of its fMaps."""
        order = torch.as_tensor(order, dtype=torch.long)
        if sorted(order.tolist()) != list(range(self.cfg.fmaps)):
            raise ValueError("order must be a permutation of the fMap channels")
        if self.cfg.checkerboard:
            raise ValueError("a checkerboard model's fMap order is fixed: its context model "
                             "works per group of fMaps")
        makes = [(self.forward_net.net[-1], order)]  # (conv, the order of its fMap channels)
        reads = [(self.backward_net.net[0], order)]
        if self.cfg.entropy_model == "hyperprior":
            # mean-scale: the hyper-synthesis emits scales then means, the hyper-analysis reads
            # |y| then y: both halves follow
            both = torch.cat([order, order + self.cfg.fmaps]) if self.cfg.mean_scale else order
            makes.append((self.hyper_synthesis.net[-1], both))
            reads.append((self.hyper_analysis.net[0], both))
        else:
            self.y_model.logits.copy_(self.y_model.logits[order])
        for c, o in makes:
            c.weight.copy_(c.weight[o])
            c.bias.copy_(c.bias[o])
        for c, o in reads:
            c.weight.copy_(c.weight[:, o])
        self.log_gain.copy_(self.log_gain[:, order])
        self.log_inv_gain.copy_(self.log_inv_gain[:, order])

    @torch.no_grad()
    def spread_order(self, images: list[torch.Tensor]) -> torch.Tensor:
        """fMap channels by decreasing spread (std) of the quantizer input y*gain at the middle
        quality anchor over `images` ((1,3,H,W) each): the channels that carry the most bits
        first, so that a reader of the first fMaps gets the most informative ones."""
        mid = torch.tensor([(len(self.cfg.lambdas) - 1) / 2])
        gain = self.gains(mid)[0]
        y = torch.cat([(self.forward_net(x) * gain).flatten(2) for x in images], 2)
        return torch.argsort(y[0].std(1), descending=True, stable=True)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def psnr_from_mse(mse: float) -> float:
    return 10 * math.log10(1.0 / max(mse, 1e-12))
