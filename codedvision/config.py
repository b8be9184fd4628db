"""Model configuration: one dataclass, saved with every checkpoint and released model.

A checkpoint or a released model is rebuilt from its saved config alone (never from weight
shapes), so changing a default here never breaks an old file.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field


def _default_lambdas() -> tuple[float, ...]:
    # Rate-distortion trade-offs of the quality anchors, on CompressAI's scale
    # (loss = lambda * 255^2 * MSE + bpp). Geometric from 0.0018 (about 0.1-0.2 bpp once trained)
    # to 0.08 (about 1.5 bpp), so that quality 0..100 spans the range users ask for.
    lo, hi, k = 0.0018, 0.08, 6
    return tuple(round(lo * (hi / lo) ** (i / (k - 1)), 6) for i in range(k))


@dataclass(frozen=True)
class ModelConfig:
    """Shape of a codedvision codec.

    Attributes:
        channels: feature channels N of the forward/backward networks.
        fmaps: number M of feature maps (fMaps) the forward network emits.
        downsamples: stride-2 steps of the forward network; fMaps are 2**downsamples smaller
            than the image on each side.
        hyper_channels: channels of the hyperprior networks.
        entropy_model: "hyperprior" (scale hyperprior, the default) or "factorized" (the paper's
            per-channel piecewise-linear density).
        lambdas: rate-distortion weights of the quality anchors, lowest quality first.
        pwl_radius: the factorized density covers integers in [-pwl_radius, pwl_radius];
            values outside are coded by an escape.
        num_scales, scale_min, scale_max: the scale table of the Gaussian conditional model.
        backward_channels: feature channels of the backward network when it is wider than
            the forward one (0: `channels`). The fMaps and the bitstream do not depend on it.
        mean_scale: hyperprior only: the hyper-synthesis predicts each fMap's mean as well as
            its scale (Minnen et al. 2018), and the coder codes round(y - mean).
        forward_half_units: residual units the forward network runs at half resolution, after
            its first conv (the paper's network has none: 0).
        checkerboard: mean-scale hyperprior only: a checkerboard context model (He et al.
            2021). Half of the fMap positions (the anchors, row + column even) are coded with
            the hyperprior's means and scales; the other half with means and scales corrected
            from the decoded anchors around them, per group of 32 fMaps (the file's groups,
            which stay independently decodable).
    """

    channels: int = 64
    fmaps: int = 128
    downsamples: int = 4
    hyper_channels: int = 64
    entropy_model: str = "hyperprior"
    lambdas: tuple[float, ...] = field(default_factory=_default_lambdas)
    pwl_radius: int = 48
    num_scales: int = 64
    scale_min: float = 0.11
    scale_max: float = 64.0
    backward_channels: int = 0
    mean_scale: bool = False
    forward_half_units: int = 0
    checkerboard: bool = False

    def __post_init__(self) -> None:
        if self.entropy_model not in ("hyperprior", "factorized"):
            raise ValueError(f"unknown entropy_model {self.entropy_model!r}")
        if self.downsamples < 1 or self.channels < 1 or self.fmaps < 1:
            raise ValueError("channels, fmaps and downsamples must be positive")
        if self.forward_half_units < 0:
            raise ValueError("forward_half_units must be 0 or more")
        if self.backward_channels < 0:
            raise ValueError("backward_channels must be 0 (as channels) or positive")
        if self.mean_scale and self.entropy_model != "hyperprior":
            raise ValueError("mean_scale needs the hyperprior entropy model")
        if self.checkerboard and not self.mean_scale:
            raise ValueError("checkerboard needs the mean-scale hyperprior (mean_scale)")
        if len(self.lambdas) < 2 or any(b <= a for a, b in zip(self.lambdas, self.lambdas[1:])):
            raise ValueError("lambdas must be at least two increasing values")
        object.__setattr__(self, "lambdas", tuple(float(x) for x in self.lambdas))

    @property
    def decoder_channels(self) -> int:
        """Feature channels of the backward network."""
        return self.backward_channels or self.channels

    @property
    def stride(self) -> int:
        """Total down-sampling factor of the forward network (the hyperprior adds 4 more)."""
        return 2**self.downsamples * (4 if self.entropy_model == "hyperprior" else 1)

    def lambda_at(self, position: float) -> float:
        """Lambda at a continuous anchor position in [0, len(lambdas) - 1] (log-linear)."""
        lo = math.floor(min(max(position, 0.0), len(self.lambdas) - 1 - 1e-9))
        t = position - lo
        a, b = self.lambdas[lo], self.lambdas[lo + 1]
        return math.exp((1 - t) * math.log(a) + t * math.log(b))

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["lambdas"] = list(self.lambdas)
        for key in ("backward_channels", "mean_scale", "forward_half_units", "checkerboard"):
            # unused: saved configs stay as before
            if not d[key]:
                del d[key]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        check_fields(cls, d, "model config")
        return cls(**d)


def check_fields(cls, d: dict, what: str) -> None:
    """Refuse keys that are not fields of dataclass `cls` (a typo in a saved config)."""
    unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise ValueError(f"unknown {what} fields: {sorted(unknown)}")


def quality_to_position(quality: float, num_anchors: int) -> float:
    """Map the user's quality 0..100 onto the continuous anchor position 0..num_anchors-1."""
    q = min(max(float(quality), 0.0), 100.0)
    return q / 100.0 * (num_anchors - 1)
