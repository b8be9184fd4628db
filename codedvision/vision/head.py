"""The classifier head of the vision task engine (the paper's Fig. 7), on fMaps or on pixels.

    fMaps (B,M,h,w) ─ normalise ─ conv3x3 M->C ─ PReLU ─ ResidualUnit x U ─ PReLU
                    ─ mean over h,w ─ dropout ─ linear C->classes
    image (B,3,H,W) ─ ForwardNet ─ (the same head)                 input="rgb": the baseline

input="fmaps" (the compressed-domain path): the input is what `Codec.fmaps` returns, the
entropy-decoded integer fMaps times the inverse gain of the file's quality, so that every
quality has the same scale and one head serves them all. The codec's forward network is not
part of the head; it stays frozen in training, so a head is tied to one codec (its model id is
recorded in the release) and costs only entropy decoding plus this small network at run time.

input="rgb" (the decode-then-classify baseline): a copy of the codec's ForwardNet architecture
runs on the pixels, followed by the same head. The choice made here: the copy is *initialised
from the codec's forward network and trained with the head* (`rgb_init="codec"` in the training
config; "random" trains it from scratch). The head budget is the same on both paths and the
baseline starts from exactly the features the fMaps path gets for free, plus the freedom to
adapt them to the task; training a 2-3 M parameter network from scratch on Caltech-101's
5.8k photos on two CPU cores would leave the baseline under-trained and flatter the fMaps.

Details the paper does not pin down (and why):
- A fixed per-channel normalisation (`in_mean`, `in_std`, buffers set from training fMaps
  before the first step) puts every fMap channel at unit scale: the codec's channels differ in
  scale by an order of magnitude, and the head's first layer would otherwise spend its early
  steps learning that.
- A PReLU after the last residual unit: the units end in an addition with no non-linearity
  (as in the codec), and averaging a purely additive stream over space would throw away most of
  what the non-linear branches compute.
- `keep_fmaps` (the Table 1 analog, accuracy against the number of fMaps without training a
  codec per size; and speed): the head reads only the first K fMap channels. A released codec
  stores its fMaps most-spread first (the channels carrying the most bits; see
  `codedvision.train.export.sort_fmaps`) and codes them in groups of 32 channels, so a file's
  first K fMaps are its most informative ones and decoding them stops after their groups
  (`Codec.fmaps(data, channels=K)`).
- Global average pooling, so any fMap size works (a 128 px crop in training gives 8x8 fMaps, a
  whole photo 15x20); no down-sampling inside the head, the fMaps are already at 1/16.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from ..config import ModelConfig, check_fields
from ..networks import ForwardNet, ResidualUnit, conv

INPUTS = ("fmaps", "rgb")


@dataclass(frozen=True)
class HeadConfig:
    """Shape of a classifier head.

    Attributes:
        fmaps: number M of fMap channels (the codec's `fmaps`).
        num_classes: number of labels.
        channels: width C of the head (the paper: 128; ours 64, for speed).
        units: residual units in the head.
        input: "fmaps" (compressed domain) or "rgb" (ForwardNet copy + head, the baseline).
        dropout: dropout before the linear layer.
        keep_fmaps: read only the first this many fMap channels (0: all); see the module doc.
        forward_channels, downsamples: the ForwardNet architecture of an "rgb" head (the
            codec's `channels` and `downsamples`); `downsamples` also fixes the fMap stride.
    """

    fmaps: int
    num_classes: int
    channels: int = 64
    units: int = 2
    input: str = "fmaps"
    dropout: float = 0.2
    forward_channels: int = 96
    downsamples: int = 4
    keep_fmaps: int = 0

    def __post_init__(self) -> None:
        if self.input not in INPUTS:
            raise ValueError(f"head input must be one of {INPUTS}, got {self.input!r}")
        if self.num_classes < 2:
            raise ValueError(f"a classifier needs at least 2 classes, got {self.num_classes}")
        if min(self.fmaps, self.channels, self.forward_channels, self.downsamples) < 1:
            raise ValueError("fmaps, channels, forward_channels and downsamples must be positive")
        if not 0 <= self.keep_fmaps <= self.fmaps:
            raise ValueError(f"keep_fmaps must be in 0..{self.fmaps}, got {self.keep_fmaps}")
        if self.units < 0 or not 0 <= self.dropout < 1:
            raise ValueError("units must be >= 0 and dropout in [0, 1)")

    @property
    def input_fmaps(self) -> int:
        """fMap channels the head reads."""
        return self.keep_fmaps or self.fmaps

    @property
    def stride(self) -> int:
        """Pixels per fMap position on each side."""
        return 2**self.downsamples

    def forward_config(self) -> ModelConfig:
        return ModelConfig(channels=self.forward_channels, fmaps=self.fmaps,
                           downsamples=self.downsamples)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "HeadConfig":
        check_fields(cls, d, "head config")
        return cls(**d)


class ClassifierHead(nn.Module):
    """fMaps (B,M,h,w) -- or, for input="rgb", images (B,3,H,W) in [0,1] with H, W multiples of
    the stride -- to class logits (B,num_classes)."""

    def __init__(self, cfg: HeadConfig):
        super().__init__()
        self.cfg = cfg
        self.forward_net = ForwardNet(cfg.forward_config()) if cfg.input == "rgb" else None
        k = cfg.input_fmaps
        self.register_buffer("in_mean", torch.zeros(k))
        self.register_buffer("in_std", torch.ones(k))
        c = cfg.channels
        self.stem = nn.Sequential(conv(k, c, 3), nn.PReLU(c))
        self.units = nn.Sequential(*[ResidualUnit(c) for _ in range(cfg.units)])
        self.act = nn.PReLU(c)
        self.dropout = nn.Dropout(cfg.dropout)
        self.fc = nn.Linear(c, cfg.num_classes)
        self.memory_format = torch.contiguous_format

    def for_inference(self) -> "ClassifierHead":
        """eval() and channels_last: about 20% faster per small picture on this CPU (fMaps head
        0.86 -> 0.68 ms, RGB head at 160x224 19.0 -> 18.0 ms; 1 thread)."""
        self.memory_format = torch.channels_last
        return self.eval().to(memory_format=self.memory_format)

    def fmaps_of(self, x: torch.Tensor, valid: tuple[int, int] | None = None) -> torch.Tensor:
        """The head's input fMaps: x itself, or ForwardNet(x) for an rgb head; cropped to the
        `valid` (h, w) fMap positions (those covering the image, not its padding)."""
        if self.forward_net is not None:
            x = self.forward_net(x.contiguous(memory_format=self.memory_format))
        if valid is not None:
            x = x[:, :, : valid[0], : valid[1]]
        return x[:, : self.cfg.input_fmaps]

    def features(self, x: torch.Tensor, valid: tuple[int, int] | None = None) -> torch.Tensor:
        """Pooled features (B,C)."""
        f = self.fmaps_of(x, valid)
        f = (f - self.in_mean[:, None, None]) / self.in_std[:, None, None]
        f = f.contiguous(memory_format=self.memory_format)
        return self.act(self.units(self.stem(f))).mean((2, 3))

    def forward(self, x: torch.Tensor, valid: tuple[int, int] | None = None) -> torch.Tensor:
        return self.fc(self.dropout(self.features(x, valid)))

    @torch.no_grad()
    def set_normalisation(self, samples: list[torch.Tensor]) -> None:
        """Set in_mean/in_std from sample inputs (fMaps, or images for an rgb head)."""
        if self.forward_net is not None:
            samples = [self.forward_net(s) for s in samples]
        f = torch.cat([s[:, : self.cfg.input_fmaps].permute(1, 0, 2, 3).flatten(1)
                       for s in samples], 1)  # (K, N)
        self.in_mean.copy_(f.mean(1))
        self.in_std.copy_(f.std(1).clamp_min(1e-3))

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def load_weights(self, state: dict, source) -> None:
        """load_state_dict for saved heads, one-line errors. Heads saved before fMaps heads read
        the first K fMaps carry an `fmap_index` buffer: dropped when it is the identity (every
        head without keep_fmaps), refused otherwise (those heads chose channels by their own
        spread, which the codec's sorted channel order does not reproduce)."""
        state = dict(state)
        index = state.pop("fmap_index", None)
        if index is not None and not torch.equal(index, torch.arange(len(index))):
            raise ValueError(f"{source}: this head reads a channel subset chosen by an earlier "
                             "codedvision; train it again")
        try:
            self.load_state_dict(state)
        except RuntimeError as e:
            raise ValueError(f"{source}: the weights do not fit the head's config "
                             f"({str(e).splitlines()[0]})") from None


def valid_fmap_size(height: int, width: int, stride: int) -> tuple[int, int]:
    """fMap positions that cover an image of this size (the rest cover the codec's padding)."""
    return -(-height // stride), -(-width // stride)
