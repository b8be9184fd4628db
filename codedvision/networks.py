"""Forward (analysis) and backward (synthesis) networks, after the CodedVision paper.

    image (B,3,H,W) in [0,1]
      -> conv5x5/2 -> PReLU [-> RU x cfg.forward_half_units]   (1/2)
      -> down4x4/2 -> RU x2 -> down4x4/2 -> RU x2             (1/4, 1/8)
      -> down4x4/2 -> RU x4 -> conv5x5 -> fMaps (B,M,H/16,W/16)

    fMaps -> conv5x5 -> RU x4 -> up -> RU x2 -> up -> RU x2 -> up   (1/16 .. 1/2)
          -> conv5x5 to 12 channels -> pixel shuffle -> image       (up = conv3x3 + pixel shuffle)

Decisions where the paper is vague (and why):
- No convolution runs at full resolution: the first 5x5 conv has stride 2, and the backward
  network's last 5x5 conv emits 4 RGB sub-pixels per position and pixel-shuffles them. The
  residual units sit at 1/4..1/16 resolution. On this project's 2-core AVX2 CPU this cut the
  training step time about 3x against full-resolution layers (benchmarks/train_throughput.py).
- The first conv is followed by a PReLU; the down-sampling convs are linear because every one
  is followed by a residual unit that carries the non-linearity.
- Initialisation (compared in benchmarks/train_recipe.py: no faster than the first release's
  after 300 steps; kept for its clean, scale-preserving start): a conv followed by a PReLU gets
  He init; every other conv (down-sampling, up-sampling, fMap and residual-output convs) gets a
  variance-preserving linear init, so activations keep their scale through the stack instead
  of growing ~1.9x per linear layer. The second conv of each residual branch starts at zero,
  so every residual unit starts as the identity and the network starts as a shallow, nearly
  linear autoencoder; the units then grow in. The backward network's last conv starts at
  0.01x so that training starts from a mid-grey image rather than noise, and the forward
  network's last conv at 4x so that the initial fMaps span a few quantization steps instead
  of mostly rounding to 0.
- The hyperprior networks (Balle et al. 2018) follow the same conventions: stride-2 4x4 convs
  down, pixel shuffle up.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import ModelConfig
from .container import fmap_groups
from .precision import float32


FMAP_INIT_GAIN = 4.0
OUTPUT_INIT_GAIN = 0.01


def _units_at(stage: int, downsamples: int) -> int:
    """Residual units after down-sampling step `stage` (1-based; 0 is the strided first conv).

    Eight units in all for the default four steps: 2 at 1/4, 2 at 1/8 and 4 at 1/16 resolution.
    """
    return 4 if stage == downsamples - 1 else 2


def _init_conv(conv: nn.Conv2d, gain: float, before_prelu: bool) -> nn.Conv2d:
    if before_prelu:
        nn.init.kaiming_normal_(conv.weight, a=0.25, nonlinearity="leaky_relu")
    else:
        nn.init.kaiming_normal_(conv.weight, nonlinearity="linear")
    with torch.no_grad():
        conv.weight.mul_(gain)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv


def conv(cin: int, cout: int, k: int, stride: int = 1, gain: float = 1.0,
         before_prelu: bool = False) -> nn.Conv2d:
    """A 'same' convolution (stride 1) or an exact /stride down-sampling one (4x4, stride 2).

    `before_prelu`: the conv feeds a (P)ReLU, so it gets He init; otherwise a linear one.
    """
    pad = k // 2 if k % 2 else (k - stride) // 2
    return _init_conv(nn.Conv2d(cin, cout, k, stride=stride, padding=pad), gain, before_prelu)


class ResidualUnit(nn.Module):
    """x + conv3x3(PReLU(conv3x3(x))), with no non-linearity after the addition (the paper)."""

    def __init__(self, ch: int):
        super().__init__()
        self.body = nn.Sequential(conv(ch, ch, 3, before_prelu=True), nn.PReLU(ch),
                                  conv(ch, ch, 3, gain=0.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Upsample(nn.Module):
    """x2 up-sampling: conv3x3 to 4x channels, then pixel shuffle."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = conv(cin, cout * 4, 3)
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.conv(x))


class ForwardNet(nn.Module):
    """Image (B,3,H,W) in [0,1] -> fMaps (B,M,H/2^d,W/2^d). H and W must be multiples of 2^d."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        n, d = cfg.channels, cfg.downsamples
        layers: list[nn.Module] = [conv(3, n, 5, stride=2, before_prelu=True), nn.PReLU(n)]
        layers += [ResidualUnit(n) for _ in range(cfg.forward_half_units)]
        for i in range(1, d):
            layers.append(conv(n, n, 4, stride=2))
            layers += [ResidualUnit(n) for _ in range(_units_at(i, d))]
        # fMaps start with a std of about 3 quantization steps: at the usual init most would
        # round to 0 and the backward network would start from almost nothing.
        layers.append(conv(n, cfg.fmaps, 5, gain=FMAP_INIT_GAIN))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, float32_output: bool = False) -> torch.Tensor:
        """float32_output: under bf16 autocast, still run the last conv in float32 (the codec:
        bf16's 8 significant bits would move large fMaps by a good part of a rounding step)."""
        if not float32_output:
            return self.net(x - 0.5)
        h = self.net[:-1](x - 0.5)
        with float32():
            return self.net[-1](h.float())


class BackwardNet(nn.Module):
    """fMaps (B,M,h,w) -> image (B,3,h*2^d,w*2^d), roughly in [0,1] (not clamped)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        n, d = cfg.decoder_channels, cfg.downsamples
        layers: list[nn.Module] = [conv(cfg.fmaps, n, 5)]
        for i in reversed(range(1, d)):
            layers += [ResidualUnit(n) for _ in range(_units_at(i, d))]
            layers.append(Upsample(n, n))
        # the last 5x5 conv works at half resolution and pixel-shuffles straight to RGB
        layers += [conv(n, 3 * 4, 5, gain=OUTPUT_INIT_GAIN), nn.PixelShuffle(2)]
        self.net = nn.Sequential(*layers)

    def forward(self, y: torch.Tensor, float32_output: bool = False) -> torch.Tensor:
        """float32_output: under bf16 autocast, still run the last conv in float32 (the codec:
        in bf16 the pixel values would be rounded to 1/256 before they are rounded to 1/255)."""
        if not float32_output:
            return self.net(y) + 0.5
        h = self.net[:-2](y)
        with float32():
            return self.net[-1](self.net[-2](h.float())) + 0.5


class HyperAnalysis(nn.Module):
    """|fMaps| (B,M,h,w) -> hyper-latents z (B,Nh,h/4,w/4). Mean-scale models (cfg.mean_scale)
    read the signed fMaps too, as input channels M..2M-1 (the means need the signs); their
    weights start at zero, so a scale-only model continued as mean-scale (`init_from`) starts
    computing what it did."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        m, nh = cfg.fmaps, cfg.hyper_channels
        self.mean_scale = cfg.mean_scale
        self.net = nn.Sequential(
            conv(m * (2 if cfg.mean_scale else 1), nh, 3, before_prelu=True), nn.ReLU(),
            conv(nh, nh, 4, stride=2, before_prelu=True), nn.ReLU(),
            conv(nh, nh, 4, stride=2),
        )
        if cfg.mean_scale:
            with torch.no_grad():
                self.net[0].weight[:, m:] = 0

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([torch.abs(y), y], 1) if self.mean_scale else torch.abs(y))


class HyperSynthesis(nn.Module):
    """Quantized z (B,Nh,h/4,w/4) -> log-scales (B,M,h,w) of the fMaps' Gaussian model, followed
    by their means (B,M,h,w) when cfg.mean_scale (channels M..2M-1; they start at zero).

    Only convolutions, pixel shuffles and ReLUs, so that it can run in exact integer arithmetic
    at coding time (see codedvision.intnet): the decoder must pick the same probability tables
    as the encoder on any machine and thread count.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        m, nh = cfg.fmaps, cfg.hyper_channels
        self.net = nn.Sequential(
            conv(nh, nh * 4, 3, before_prelu=True), nn.PixelShuffle(2), nn.ReLU(),
            conv(nh, nh * 4, 3, before_prelu=True), nn.PixelShuffle(2), nn.ReLU(),
            conv(nh, m * (2 if cfg.mean_scale else 1), 3),
        )
        if cfg.mean_scale:
            with torch.no_grad():
                self.net[-1].weight[m:] = 0
                self.net[-1].bias[m:] = 0

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


def anchor_mask(h: int, w: int) -> torch.Tensor:
    """(1,1,h,w) bool: the checkerboard's anchor positions (row + column even), coded first."""
    return ((torch.arange(h)[:, None] + torch.arange(w)[None]) % 2 == 0)[None, None]


class GroupContext(nn.Module):
    """One fMap group's checkerboard context: a 5x5 conv over the decoded anchors (zero
    elsewhere), then two 1x1 convs over [hyperprior log-scales, means, context] that give
    corrections to the log-scales and means. The last conv starts at zero, so a model grown
    with a context (`init_from`) starts computing what it did. Only convs and ReLUs: the
    codec runs both parts in exact integer arithmetic (codedvision.intnet)."""

    def __init__(self, c: int):
        super().__init__()
        self.context = nn.Sequential(conv(c, 2 * c, 5))
        self.params = nn.Sequential(conv(4 * c, 2 * c, 1, before_prelu=True), nn.ReLU(),
                                    conv(2 * c, 2 * c, 1))
        nn.init.zeros_(self.params[-1].weight)

    def forward(self, log_scale: torch.Tensor, mean: torch.Tensor, anchors: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        d = self.params(torch.cat([log_scale, mean, self.context(anchors)], 1))
        return d[:, : log_scale.shape[1]], d[:, log_scale.shape[1] :]


class CheckerboardContext(nn.Module):
    """The context model of cfg.checkerboard: one GroupContext per file group of fMaps
    (container.FMAP_GROUP), so that a group's non-anchors depend on that group alone."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.slices = fmap_groups(cfg.fmaps)
        self.groups = nn.ModuleList(GroupContext(s.stop - s.start) for s in self.slices)

    def forward(self, log_scale: torch.Tensor, mean: torch.Tensor, y: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-scales and means (B,M,h,w) with the non-anchors' corrected from y's anchors
        (y: the quantized fMaps, of which only the anchors are read); in float32 (the means
        enter the quantized fMaps, as the hyper-synthesis's do)."""
        a = anchor_mask(*y.shape[2:]).to(y.device)
        anchors = y.float() * a
        with float32():
            d = [g(log_scale[:, s], mean[:, s], anchors[:, s])
                 for g, s in zip(self.groups, self.slices)]
        na = ~a
        return (log_scale + torch.cat([x for x, _ in d], 1) * na,
                mean + torch.cat([x for _, x in d], 1) * na)


def add_half_units(old: ForwardNet, cfg: ModelConfig) -> ForwardNet:
    """A ForwardNet of `cfg` (as `old`'s but with more forward_half_units) that computes what
    `old` computes: old's layers keep their weights and the added residual units, inserted
    after the first PReLU, start as the identity (their second conv is zero)."""
    new = ForwardNet(cfg)
    layers_old, layers_new = list(old.net), list(new.net)
    added = len(layers_new) - len(layers_old)
    if added < 0 or layers_new[0].out_channels != layers_old[0].out_channels:
        raise ValueError("the new network must be as wide as the old one and not shallower")
    keep = layers_old[:2] + [None] * added + layers_old[2:]  # after the first conv and PReLU
    with torch.no_grad():
        for a, b in zip(keep, layers_new):
            if a is not None:
                b.load_state_dict(a.state_dict())
    return new


def widen_net(old: ForwardNet | BackwardNet, new: ForwardNet | BackwardNet,
              generator: torch.Generator, noise: float = 1e-3) -> None:
    """Initialise `new`, a wider ForwardNet or BackwardNet, to compute what `old` computes
    (Net2Net-style).

    Every channel c of the old width n is copied to new channels c, c + n, c + 2n, ...; a
    layer reading such copies weights them by random shares that add up to 1 per old channel,
    so the output is the old one (up to float rounding). Copies that only differ in their
    shares would get gradients that differ only in scale, which Adam normalises away, and
    stay twins: so the added copies' own weights also get noise of `noise` times their
    layer's weight std (the output then moves by about that fraction). The first conv (from
    the image or the fMaps) keeps its input side and the last (to the fMaps or RGB) its
    output side.
    """
    layers_old, layers_new = list(old.net), list(new.net)
    if type(old) is not type(new) or len(layers_old) != len(layers_new):
        raise ValueError("the networks differ in kind or depth")
    n, wide = layers_old[0].out_channels, layers_new[0].out_channels
    if wide < n:
        raise ValueError(f"cannot narrow a network from {n} to {wide} channels")
    src = torch.arange(wide) % n  # the old channel each new channel copies

    def shares() -> torch.Tensor:  # random positive weights per new channel, summing to 1 per old
        r = 0.5 + torch.rand(wide, generator=generator, dtype=torch.float64)
        return (r / torch.zeros(n, dtype=torch.float64).index_add_(0, src, r)[src]).float()

    def copy_conv(a: nn.Conv2d, b: nn.Conv2d, out_src, widen_in: bool) -> None:
        w = a.weight[out_src]
        if widen_in:
            w = w[:, src] * shares()[None, :, None, None]
        if len(out_src) > a.out_channels:  # the added output copies: break the symmetry
            extra = torch.zeros(len(out_src), dtype=torch.bool)
            extra[a.out_channels :] = True
            w = w + extra[:, None, None, None] * noise * w.std() * torch.randn(
                w.shape, generator=generator)
        b.weight.copy_(w)
        b.bias.copy_(a.bias[out_src])

    convs = [i for i, layer in enumerate(layers_old) if isinstance(layer, nn.Conv2d)]
    with torch.no_grad():
        for i, (a, b) in enumerate(zip(layers_old, layers_new)):
            if isinstance(a, ResidualUnit):
                copy_conv(a.body[0], b.body[0], src, True)
                b.body[1].weight.copy_(a.body[1].weight[src])
                copy_conv(a.body[2], b.body[2], src, True)
            elif isinstance(a, Upsample):  # output channel 4c + s is sub-pixel s of channel c
                copy_conv(a.conv, b.conv, (src[:, None] * 4 + torch.arange(4)).flatten(), True)
            elif isinstance(a, nn.PReLU):
                b.weight.copy_(a.weight[src])
            elif isinstance(a, nn.Conv2d):
                last = i == convs[-1]
                copy_conv(a, b, torch.arange(a.out_channels) if last else src, i != convs[0])
