"""Codec training: a resumable, logged loop for the variable-rate model.

    codedvision train codec --config configs/default.json --run-dir ~/cv-runs/default [--resume]

Two recipes; every field is in TrainConfig and saved with each checkpoint.

The default (`schedule="variable-rate"`), ours:
- Adam, linear warm-up, then constant, then a cosine decay over the last `decay_frac` of steps.
- The paper's easy-to-hard schedule: `ae_steps` of pure distortion (an autoencoder through
  the quantizer), then the rate term is ramped in over `ramp_steps`.
- Per image, a random anchor position in [0, K-1] sets both its gain vector and its lambda, so
  one model learns every quality.
- Gradient clipping at `clip`, bf16 autocast only where the CPU has native bf16 (on AVX2-only
  CPUs bf16 convolutions are an order of magnitude slower than fp32; measured).
- Optionally (`ema_decay`) an exponential moving average of the weights, which validation
  and export then read.
- A divergence guard (`Trainer._check_health`): a blow-up rolls the run back to its last
  checkpoint, which is never written while the last steps look unstable, and halves the
  learning rate from there on (a 192-channel run at lr 2e-4 blew up at step 3,500 and its
  only checkpoint, written a minute later, held the diverged weights).

The paper's (`schedule="paper"`, `paper_preset()`, `codedvision train codec --preset paper`):
the factorized (piecewise-linear) entropy model, Adam at 1e-4, `paper_stage_steps` steps of
pure distortion, then lambda raised by `paper_lambda_step` every `paper_stage_steps` steps up to
`paper_lambda_max`, with loss = MSE (8-bit scale) + lambda * bits per patch. Each lambda stage
ends with a snapshot (a fixed-rate model: every quality gives that stage's rate) and its
held-out rate and distortion in RUN_DIR/snapshots.csv; `codedvision train hull RUN_DIR` picks
the snapshots on the lower convex hull of those points (the paper's Fig. 3b).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import statistics
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import torch
from pytorch_msssim import ms_ssim
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ..config import ModelConfig, check_fields
from ..metrics import MS_SSIM_MIN_SIDE
from ..model import CodedVisionModel
from ..networks import (BackwardNet, CheckerboardContext, ForwardNet, HyperAnalysis,
                        HyperSynthesis, add_half_units, widen_net)
from ..precision import use_bf16
from .data import PatchSampler, load_caltech_train, load_patches
from .pca_init import check_pca_init, pca_initialise
from .plot import plot_log
from .runlog import RunLog, open_run, read_checkpoint, save_atomic

SHARED = Path(__file__).resolve().parents[2].parent / "shared"


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved in every checkpoint)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    patches_dir: str = str(SHARED / "data" / "train_patches")
    caltech_dir: str | None = str(SHARED / "data" / "caltech101")
    # 1,757 of the 5,784 Caltech-101 train photos fill a 192-px patch once downscaled by 0.75.
    caltech_fraction: float = 0.0  # share of each batch drawn from Caltech-101 train photos
    caltech_scale: float = 0.75  # downscale factor for those photos (hides JPEG artefacts)
    # Caltech-101 train photos never trained on (data.caltech_train_split), so that runs which
    # mix Caltech photos in can be checked on them: `benchmarks/heldout_anchors.py --caltech N`.
    caltech_holdout: int = 0
    holdout: int = 16  # last patches kept for the validation curve, never trained on
    # Large patches: with zero padding, the networks learn to use the image border as a
    # position cue, and a model trained on small patches (4x4 fMaps at 64x64) lost 4 dB on
    # 128x128 images against the same pixels coded as 64x64 tiles (measured). 192x192 gives
    # 12x12 fMaps; x 4 keeps the pixels per step of 128x128 x 8.
    patch: int = 192
    batch: int = 4
    steps: int = 200_000
    lr: float = 3e-4
    warmup_steps: int = 100
    decay_frac: float = 0.25
    ae_steps: int = 300
    ramp_steps: int = 1500
    clip: float = 1.0
    schedule: str = "variable-rate"  # or "paper" (see the module docstring)
    paper_lambda_step: float = 0.0001
    paper_lambda_max: float = 0.002
    paper_stage_steps: int = 2000  # the paper raises lambda every 5 epochs
    # Start from these weights (a checkpoint.pt or a released model folder) with a fresh optimiser
    # and schedule: a warm restart of a finished run. The model config must match.
    init_from: str | None = None
    # How a new run (no init_from) starts: "default" (codedvision.networks' initialisation) or
    # "pca": the networks as a hierarchical PCA of the training patches, a linear transform
    # code that the training makes non-linear (codedvision.train.pca_init)
    init: str = "default"
    # "all", or "decoder": only the backward network trains (the encoder, gains and entropy
    # model, so the coded fMaps, the file sizes and what Codec.fmaps returns, stay those of
    # init_from; its first conv can rescale its inputs as the inverse gains would), on the mean
    # PSNR over the batch's qualities; e.g. after widening it (backward_channels).
    train_parts: str = "all"
    # The checkerboard context nets (model.checkerboard) learn at this many times lr: added to
    # trained transforms by init_from, they start from zero while the rest is nearly settled.
    context_lr_scale: float = 1.0
    # Share of MS-SSIM in the distortion at the lowest anchor, falling linearly to none at the
    # top one: D = (1-w)*255^2*MSE + w*MSSSIM_SCALE*(1-MS-SSIM). Pure MSE leaves low-rate
    # reconstructions smooth, which MS-SSIM (and the eye) punish most.
    msssim_weight: float = 0.0
    # 0: off. Else the run also keeps an exponential moving average of the weights with this
    # decay per step (about 1/(1-decay) steps of memory), and validates, checkpoints and exports
    # that average: at a constant lr it smooths out the step noise that only a decay removes
    # otherwise, at any step, while the run goes on. Only the variable-rate schedule.
    ema_decay: float = 0.0
    # 0: off. Else an image's loss at lambda l is weighted (l_mid / l)^quality_balance, l_mid
    # the geometric mean of the anchors' lambdas. Unweighted, the gradient of the shared
    # networks grows about 2.1x per anchor (measured on a 9-anchor run: 390x from the lowest
    # to the top one; 19x with 0.5; benchmarks/quality_gradients.py), so the highest quality
    # in a batch steers them alone; 0.5 makes the weighted losses, i.e. the relative RD gains
    # of every quality, count about alike. Each quality's own trade-off (lambda) is unchanged.
    quality_balance: float = 0.0
    seed: int = 0
    threads: int = 0  # 0: all cores
    autocast: str = "auto"  # "auto", "bf16" or "off"
    log_every: int = 25
    val_every: int = 250
    checkpoint_minutes: float = 4.0

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["model"] = self.model.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        d = dict(d)
        model = ModelConfig.from_dict(d.pop("model", {}))
        check_fields(cls, d, "training config")
        return cls(model=model, **d)


def paper_preset() -> TrainConfig:
    """The CodedVision paper's recipe: one fixed-rate factorized model per lambda."""
    cfg = TrainConfig(model=ModelConfig(entropy_model="factorized"), schedule="paper", lr=1e-4,
                      warmup_steps=0, decay_frac=0.0)
    return dataclasses.replace(cfg, steps=cfg.paper_stage_steps * (paper_stages(cfg) + 1))


PRESETS = {"default": TrainConfig, "paper": paper_preset}


def paper_stages(cfg: TrainConfig) -> int:
    """Number of lambda stages after the pure-distortion one."""
    return max(1, round(cfg.paper_lambda_max / cfg.paper_lambda_step))


def paper_lambda(cfg: TrainConfig, step: int) -> float:
    """The paper's lambda at `step`: 0 for the first stage, then one more increment a stage."""
    stage = min(step // cfg.paper_stage_steps, paper_stages(cfg))
    return stage * cfg.paper_lambda_step


def quality_weights(cfg: TrainConfig, lam: torch.Tensor) -> torch.Tensor:
    """Per-image loss weights (l_mid / l)^quality_balance for lambdas `lam` (see TrainConfig)."""
    mid = torch.tensor(cfg.model.lambdas).log().mean().exp()
    return (mid / lam) ** cfg.quality_balance


def rd_objective(model: CodedVisionModel, cfg: TrainConfig, out: dict, x: torch.Tensor,
                 pos: torch.Tensor, rate_weight: float = 1.0
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The variable-rate loss of batch x coded at anchor positions pos (out = model(x, pos)),
    as rd_loss returns it: lambda*D + rate_weight*bpp per image, D with MS-SSIM mixed in at the
    low anchors (msssim_weight), each image weighted by its quality (quality_balance)."""
    distortion = None
    if cfg.msssim_weight:
        w = cfg.msssim_weight * (1 - pos / max(1, len(cfg.model.lambdas) - 1))
        distortion = ((1 - w) * 255.0**2 * out["mse"]
                      + w * MSSSIM_SCALE * (1 - batch_ms_ssim(out["x_hat"], x)))
    weight = quality_weights(cfg, model.lambdas(pos)) if cfg.quality_balance else None
    return model.rd_loss(out, pos, x.shape[2] * x.shape[3], rate_weight, distortion, weight)


def check_config(cfg: TrainConfig) -> None:
    """Refuse a training config that cannot run, with a one-line reason."""
    stride = cfg.model.stride
    if cfg.patch % stride:
        raise ValueError(f"patch {cfg.patch} is not a multiple of the model's stride {stride}")
    if cfg.schedule not in ("variable-rate", "paper"):
        raise ValueError(f"unknown schedule {cfg.schedule!r} (variable-rate or paper)")
    if cfg.caltech_holdout < 0:
        raise ValueError("caltech_holdout must be 0 or more")
    if not cfg.context_lr_scale > 0:
        raise ValueError("context_lr_scale must be positive")
    if cfg.init not in ("default", "pca"):
        raise ValueError(f"unknown init {cfg.init!r} (default or pca)")
    if cfg.init == "pca":
        if cfg.init_from:
            raise ValueError("init 'pca' starts a new model; it cannot be combined with init_from")
        check_pca_init(cfg.model)
    if cfg.train_parts not in ("all", "decoder"):
        raise ValueError(f"unknown train_parts {cfg.train_parts!r} (all or decoder)")
    if not 0.0 <= cfg.msssim_weight <= 1.0:
        raise ValueError("msssim_weight must be between 0 and 1")
    if cfg.msssim_weight and (cfg.schedule != "variable-rate" or cfg.train_parts != "all"):
        raise ValueError("msssim_weight needs the variable-rate schedule and train_parts 'all'")
    if cfg.msssim_weight and cfg.patch < MS_SSIM_MIN_SIDE:
        raise ValueError(f"msssim_weight needs patches of at least {MS_SSIM_MIN_SIDE} px (MS-SSIM's"
                         f" five scales), not {cfg.patch}")
    if cfg.quality_balance and (cfg.schedule != "variable-rate" or cfg.train_parts != "all"):
        raise ValueError("quality_balance needs the variable-rate schedule and train_parts 'all'")
    if not 0.0 <= cfg.quality_balance <= 2.0:
        raise ValueError("quality_balance must be between 0 and 2")
    if not 0.0 <= cfg.ema_decay < 1.0:
        raise ValueError("ema_decay must be in [0, 1) (0: no moving average)")
    if cfg.ema_decay and cfg.schedule != "variable-rate":
        raise ValueError("ema_decay needs the variable-rate schedule (the paper's snapshots "
                         "are the raw weights of each lambda stage)")
    use_bf16(cfg.autocast, "autocast")  # a bad value is an error that names it
    if cfg.train_parts == "decoder" and (not cfg.init_from or cfg.schedule != "variable-rate"):
        raise ValueError("train_parts 'decoder' needs init_from (a trained codec) and the "
                         "variable-rate schedule")


def initial_weights(path: Path, model_cfg: ModelConfig, train_parts: str = "all") -> dict:
    """The network weights of a checkpoint.pt or a released model folder, for `init_from`.

    The source must have the same network, except that its quality anchors (`lambdas`) may
    differ, and then the gain tables are carried over to the new anchors (`transfer_gains`): a
    trained model's quality range can be widened without training it again from scratch; and
    the networks may be wider (`channels`, `backward_channels`), which then start as widened
    copies of the source's computing the same fMaps and images (`networks.widen_net`), or the
    forward network may have more residual units at half resolution (`forward_half_units`,
    added as identities: `networks.add_half_units`); and a scale-only source may start a
    mean-scale run (`mean_scale`): its means start at zero, so the run starts from the
    source's rates and images; and a mean-scale source may start a checkerboard run
    (`checkerboard`): the context's corrections start at zero, the source's function again."""
    from .export import load_trained

    model = load_trained(path)[0]
    same = dataclasses.replace(model.cfg, lambdas=model_cfg.lambdas,
                               channels=model_cfg.channels,
                               backward_channels=model_cfg.backward_channels,
                               mean_scale=model_cfg.mean_scale,
                               forward_half_units=model_cfg.forward_half_units,
                               checkerboard=model_cfg.checkerboard)
    if (same != model_cfg or model.cfg.decoder_channels > model_cfg.decoder_channels
            or model.cfg.channels > model_cfg.channels
            or model.cfg.mean_scale > model_cfg.mean_scale
            or model.cfg.forward_half_units > model_cfg.forward_half_units
            or model.cfg.checkerboard > model_cfg.checkerboard):
        raise ValueError(f"{path}: its model config differs from the run's; init_from needs the "
                         "same network (only the lambdas may differ, the networks may be "
                         "wider or have more forward_half_units, a scale-only model may "
                         "become mean-scale and a mean-scale one gain a checkerboard context)")
    if train_parts == "decoder" and (model.cfg.lambdas != model_cfg.lambdas
                                     or model.cfg.channels != model_cfg.channels
                                     or model.cfg.forward_half_units != model_cfg.forward_half_units
                                     or model.cfg.mean_scale != model_cfg.mean_scale
                                     or model.cfg.checkerboard != model_cfg.checkerboard):
        raise ValueError(f"{path}: a decoder-only run keeps the source's lambdas, forward "
                         "network and entropy model (anything else would change every file)")
    if model_cfg.mean_scale and not model.cfg.mean_scale:
        # the new halves (signed input of the hyper-analysis, means of the hyper-synthesis)
        # start at zero, as in a fresh mean-scale model: the same function as the source
        ha, hs = HyperAnalysis(model_cfg), HyperSynthesis(model_cfg)
        with torch.no_grad():
            for old, new in ((model.hyper_analysis.net, ha.net),
                             (model.hyper_synthesis.net, hs.net)):
                for a, b in zip(old, new):
                    if isinstance(a, nn.Conv2d):
                        b.weight[: a.out_channels, : a.in_channels] = a.weight
                        b.bias[: a.out_channels] = a.bias
        model.hyper_analysis, model.hyper_synthesis = ha, hs
    generator = torch.Generator().manual_seed(0)
    if model.cfg.channels < model_cfg.channels:
        wide = ForwardNet(dataclasses.replace(model_cfg,
                                              forward_half_units=model.cfg.forward_half_units))
        widen_net(model.forward_net, wide, generator)
        model.forward_net = wide
    if model.cfg.forward_half_units < model_cfg.forward_half_units:
        model.forward_net = add_half_units(model.forward_net, model_cfg)
    if model.cfg.decoder_channels < model_cfg.decoder_channels:
        wide = BackwardNet(model_cfg)
        widen_net(model.backward_net, wide, generator)
        model.backward_net = wide
    if model_cfg.checkerboard and not model.cfg.checkerboard:
        # its corrections start at zero (GroupContext): the same function as the source
        model.context = CheckerboardContext(model_cfg)
    state = model.state_dict()
    if model.cfg.lambdas != model_cfg.lambdas:
        for key, slope in (("log_gain", 0.5), ("log_inv_gain", -0.5)):
            state[key] = transfer_gains(state[key], model.cfg.lambdas, model_cfg.lambdas, slope)
    return state


def transfer_gains(table: torch.Tensor, old: tuple[float, ...], new: tuple[float, ...],
                   slope: float) -> torch.Tensor:
    """A (K_old, M) log-gain table trained at anchors `old`, carried to anchors `new`:
    linear in log(lambda) between old anchors (as the model interpolates between its anchors,
    which are geometric), and beyond them extrapolated from the nearest end with the high-rate
    slope (log gain = 0.5 log lambda + c: the quantizer step scales as 1/sqrt(lambda), as at
    initialisation; -0.5 for the inverse gains)."""
    lo, hi = math.log(old[0]), math.log(old[-1])
    log_old = torch.tensor([math.log(v) for v in old], dtype=torch.float64)
    rows = []
    for lam in new:
        x = math.log(lam)
        if x <= lo:
            rows.append(table[0].double() + slope * (x - lo))
        elif x >= hi:
            rows.append(table[-1].double() + slope * (x - hi))
        else:
            i = int(torch.searchsorted(log_old, torch.tensor(x, dtype=torch.float64))) - 1
            t = (x - log_old[i]) / (log_old[i + 1] - log_old[i])
            rows.append((1 - t) * table[i].double() + t * table[i + 1].double())
    return torch.stack(rows).to(table.dtype)


def learning_rate(cfg: TrainConfig, step: int) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    decay_start = int(cfg.steps * (1 - cfg.decay_frac))
    if step < decay_start:
        return cfg.lr
    t = (step - decay_start) / max(1, cfg.steps - decay_start)
    return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


def rate_weight(cfg: TrainConfig, step: int) -> float:
    if step < cfg.ae_steps:
        return 0.0
    return min(1.0, (step - cfg.ae_steps + 1) / max(1, cfg.ramp_steps))


# 255^2*MSE / (1 - MS-SSIM) on Kodak for the PCA pilot: about 1350 at 0.13 bpp and 1700 at
# 0.65 bpp (CompressAI's MS-SSIM lambdas are ~1300x its MSE ones), so the two distortions of a
# msssim_weight mix weigh alike and the mix moves the rate little.
MSSSIM_SCALE = 1500.0


def batch_ms_ssim(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """MS-SSIM (B,) of reconstructions in [0, 1] (clamped, in float32) against the originals."""
    return ms_ssim(x_hat.float().clamp(0, 1), x.float(), data_range=1.0, size_average=False)


class TrainingDiverged(RuntimeError):
    """Training diverged and could not be rolled back (no checkpoint yet, or lr halved too often)."""


# The divergence guard (Trainer._check_health): over the last GUARD_WINDOW steps, this many
# non-finite losses or gradients, or a training PSNR this far below the median of the earlier
# windows, or a loss this many times theirs, is a blow-up. The variable-rate loss swings a few
# times from batch to batch (lambda is drawn per image), the PSNR about 1 dB between windows.
GUARD_WINDOW = 25
GUARD_NONFINITE = 5
GUARD_PSNR_DROP = 6.0
GUARD_LOSS_RATIO = 100.0
GUARD_MIN_LR_FACTOR = 1 / 16


SNAPSHOT_FIELDS = ["lambda", "step", "val_bpp", "val_mse", "val_psnr", "snapshot"]


class Trainer:
    """Owns the model, optimiser, data and run directory; `run()` trains until cfg.steps."""

    def __init__(self, cfg: TrainConfig, run_dir: Path, resume: bool = False, quiet: bool = False,
                 steps: int | None = None, ema_decay: float | None = None):
        self.run_dir = Path(run_dir)
        self.quiet = quiet
        cfg, state = open_run(self.run_dir, cfg, resume, steps)
        if ema_decay is not None:  # also on --resume: the average does not steer the training
            cfg = dataclasses.replace(cfg, ema_decay=ema_decay)
        check_config(cfg)
        self.cfg = cfg
        torch.set_num_threads(cfg.threads or os.cpu_count() or 1)
        self.autocast = use_bf16(cfg.autocast)
        torch.manual_seed(cfg.seed)
        self.model = CodedVisionModel(cfg.model).to(memory_format=torch.channels_last)
        if cfg.train_parts == "decoder":
            for name, p in self.model.named_parameters():
                p.requires_grad_(name.startswith("backward_net."))
        named = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        self.params = [p for _, p in named]
        context = [p for n, p in named if n.startswith("context.")]
        groups = [{"params": [p for n, p in named if not n.startswith("context.")]}]
        if context:  # the checkerboard nets: their own lr (learning_rate x lr_scale)
            groups.append({"params": context, "lr_scale": cfg.context_lr_scale})
        self.opt = torch.optim.Adam(groups, lr=cfg.lr)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.step = 0
        self.ema: AveragedModel | None = None  # the moving average (cfg.ema_decay), once started
        # the divergence guard: lr multiplier (halved at each roll-back), its roll-backs, the
        # last GUARD_WINDOW steps' (loss, PSNR, finite) and earlier windows' mean (loss, PSNR)
        self.lr_factor = 1.0
        self.checkpoint_step: int | None = None  # the step of RUN_DIR/checkpoint.pt, once saved
        self.rollbacks: list[dict] = []
        self._recent: deque = deque(maxlen=GUARD_WINDOW)
        self._windows: deque = deque(maxlen=20)
        self._load_data()
        if state is not None:
            self._load_state(state)
        elif cfg.init_from:
            self.model.load_state_dict(initial_weights(Path(cfg.init_from), cfg.model,
                                                       cfg.train_parts))
        elif cfg.init == "pca":
            pca_initialise(self.model, [t.permute(1, 2, 0).numpy()
                                        for t in self.sources[0].images])
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "train_config.json").write_text(json.dumps(cfg.to_dict(), indent=2))

    def _load_state(self, state: dict) -> None:
        """Continue from a checkpoint's state (its log rows after its step are dropped)."""
        self.model.load_state_dict(state["model"])
        self.ema = None  # a checkpoint without one (ema_decay added on --resume) starts it anew
        if self.cfg.ema_decay and "ema" in state:
            self._new_ema().load_state_dict(state["ema"])
        self.opt.load_state_dict(state["optimizer"])
        self.gen.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        self.step = self.checkpoint_step = state["step"]
        self.lr_factor = state.get("lr_factor", 1.0)
        self.rollbacks = list(state.get("rollbacks", []))
        self._recent.clear()
        self._windows.clear()
        RunLog(self.run_dir / "log.csv", self.LOG_FIELDS).truncate_after(self.step)
        RunLog(self.run_dir / "snapshots.csv", SNAPSHOT_FIELDS).truncate_after(self.step)

    def _load_data(self) -> None:
        cfg = self.cfg
        patches = load_patches(Path(cfg.patches_dir), cfg.patch)
        if cfg.holdout >= len(patches):
            raise ValueError("holdout leaves no training patches")
        self.val = PatchSampler(patches[len(patches) - cfg.holdout :], cfg.patch)
        self.sources = [PatchSampler(patches[: len(patches) - cfg.holdout], cfg.patch, True)]
        self.weights = [1.0]
        if cfg.caltech_dir and cfg.caltech_fraction > 0 and Path(cfg.caltech_dir).exists():
            photos = load_caltech_train(Path(cfg.caltech_dir), cfg.patch, cfg.caltech_scale,
                                        holdout=cfg.caltech_holdout)
            if photos:
                self.sources.append(PatchSampler(photos, cfg.patch, True))
                self.weights = [1 - cfg.caltech_fraction, cfg.caltech_fraction]
        g = torch.Generator().manual_seed(1234)  # fixed validation crops and qualities
        self.val_x = self.val.sample(cfg.holdout, g)
        k = len(cfg.model.lambdas)
        self.val_pos = torch.linspace(0, k - 1, cfg.holdout)

    def _batch(self) -> torch.Tensor:
        cfg = self.cfg
        n_cal = 0
        if len(self.sources) > 1:
            n_cal = int(torch.binomial(torch.tensor(float(cfg.batch)),
                                       torch.tensor(self.weights[1]), generator=self.gen))
        parts = [self.sources[0].sample(cfg.batch - n_cal, self.gen)]
        if n_cal:
            parts.append(self.sources[1].sample(n_cal, self.gen))
        return torch.cat(parts).contiguous(memory_format=torch.channels_last)

    def train_step(self) -> dict:
        cfg = self.cfg
        self.model.train()
        x = self._batch()
        k = len(cfg.model.lambdas)
        pos = torch.rand(x.shape[0], generator=self.gen) * (k - 1)
        if cfg.schedule == "paper":
            pos = torch.zeros(x.shape[0])  # one rate: the first anchor's gains
        lr = learning_rate(cfg, self.step) * self.lr_factor
        for group in self.opt.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        out = self.model(x, pos, autocast=self.autocast)
        loss, bpp, psnr = rd_objective(self.model, cfg, out, x, pos, rate_weight(cfg, self.step))
        if cfg.schedule == "paper":
            loss = (255.0**2 * out["mse"] + paper_lambda(cfg, self.step) * out["bits"]).mean()
        elif cfg.train_parts == "decoder":  # every quality counts alike in dB, as in BD-rate
            loss = 10 * torch.log10(out["mse"].clamp_min(1e-10)).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(self.params, cfg.clip)
        if torch.isfinite(gnorm):  # a rare non-finite batch is skipped rather than poisoning Adam
            self.opt.step()
            if cfg.ema_decay:
                if self.ema is None:
                    self._new_ema()
                self.ema.update_parameters(self.model)
        self.step += 1
        return {"loss": loss.item(), "bpp": bpp.item(), "psnr": psnr.item(),
                "grad_norm": float(gnorm), "lr": lr}

    def _new_ema(self) -> AveragedModel:
        """Start the moving average (its first update copies the weights)."""
        self.ema = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(self.cfg.ema_decay))
        return self.ema

    @property
    def eval_model(self) -> CodedVisionModel:
        """The weights that validation reads and export ships: the moving average if the run
        keeps one, else the training weights."""
        return self.ema.module if self.ema is not None else self.model

    @torch.no_grad()
    def _val_pass(self, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(bpp, MSE, reconstruction) per held-out patch at anchor positions `pos` (noise
        seeded, RNG kept)."""
        model = self.eval_model.eval()
        state = torch.get_rng_state()
        torch.manual_seed(0)
        out = model(self.val_x.contiguous(memory_format=torch.channels_last), pos)
        torch.set_rng_state(state)
        bpp = out["bits"] / (self.cfg.patch**2)
        return bpp, out["mse"].clamp_min(1e-10), out["x_hat"]

    def validate(self) -> dict:
        """Estimated bpp, PSNR and MS-SSIM (dB) on the held-out patches, low/mid/high quality
        thirds."""
        pos = torch.zeros_like(self.val_pos) if self.cfg.schedule == "paper" else self.val_pos
        bpp, mse, x_hat = self._val_pass(pos)
        psnr = -10 * torch.log10(mse)
        # None for patches too small for MS-SSIM's five scales
        msssim = batch_ms_ssim(x_hat, self.val_x) if self.cfg.patch >= MS_SSIM_MIN_SIDE else None
        thirds = torch.tensor_split(torch.arange(len(bpp)), 3)
        res = {}
        for name, idx in zip(("low", "mid", "high"), thirds):
            res[f"val_bpp_{name}"] = bpp[idx].mean().item()
            res[f"val_psnr_{name}"] = psnr[idx].mean().item()
            if msssim is not None:
                db = -10 * torch.log10((1 - msssim[idx]).clamp_min(1e-10))
                res[f"val_msssim_db_{name}"] = db.mean().item()
        return res

    def save_checkpoint(self) -> None:
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "generator": self.gen.get_state(),
            "torch_rng": torch.get_rng_state(),
            "step": self.step,
            "lr_factor": self.lr_factor,
            "rollbacks": self.rollbacks,
            "train_config": self.cfg.to_dict(),
            "model_config": self.cfg.model.to_dict(),
        }
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        save_atomic(state, self.run_dir / "checkpoint.pt")
        self.checkpoint_step = self.step
        if (self.run_dir / "log.csv").exists():
            plot_log(self.run_dir)

    def save_snapshot(self) -> None:
        """End of a paper-schedule lambda stage: save a fixed-rate model and its RD point."""
        lam = paper_lambda(self.cfg, self.step - 1)
        state = {k: v.clone() for k, v in self.model.state_dict().items()}
        for key in ("log_gain", "log_inv_gain"):  # every quality gives the trained rate
            state[key][:] = state[key][0]
        snap_dir = self.run_dir / "snapshots"
        snap_dir.mkdir(exist_ok=True)
        path = snap_dir / f"lambda_{lam:.5f}.pt"
        save_atomic({"model": state, "step": self.step, "train_config": self.cfg.to_dict(),
                      "model_config": self.cfg.model.to_dict()}, path)
        bpp, mse, _ = self._val_pass(torch.zeros_like(self.val_pos))
        mse = mse.mean().item()
        RunLog(self.run_dir / "snapshots.csv", SNAPSHOT_FIELDS, quiet=True).append(
            {"lambda": lam, "step": self.step, "val_bpp": bpp.mean().item(), "val_mse": mse,
             "val_psnr": 10 * math.log10(1 / mse), "snapshot": path.name})

    def _check_health(self, stats: dict) -> str | None:
        """After a step: why training has blown up (see GUARD_*), or None. Earlier windows count
        as the reference only where the objective stands still (the rate term fully in; for
        the paper schedule, within one lambda stage)."""
        cfg = self.cfg
        finite = math.isfinite(stats["loss"]) and math.isfinite(stats["grad_norm"])
        self._recent.append((stats["loss"], stats["psnr"], finite))
        bad = sum(not f for *_, f in self._recent)
        if bad >= GUARD_NONFINITE:
            return f"{bad} of the last {len(self._recent)} steps had a non-finite loss or gradient"
        if cfg.schedule == "paper" and self.step % cfg.paper_stage_steps == 0:
            self._windows.clear()
        if len(self._recent) < GUARD_WINDOW:
            return None
        loss, psnr = self._recent_means()
        reference = self._reference()
        if reference is not None:
            ref_loss, ref_psnr = reference
            if psnr < ref_psnr - GUARD_PSNR_DROP:
                return (f"training PSNR {psnr:.1f} dB over the last {GUARD_WINDOW} steps, "
                        f"against {ref_psnr:.1f} dB before")
            if ref_loss > 0 and loss > GUARD_LOSS_RATIO * ref_loss:  # (decoder-only: < 0)
                return (f"loss {loss:.4g} over the last {GUARD_WINDOW} steps, against "
                        f"{ref_loss:.4g} before")
        stationary = cfg.schedule == "paper" or rate_weight(cfg, self.step) >= 1
        if stationary and self.step % GUARD_WINDOW == 0:
            self._windows.append((loss, psnr))
        return None

    def _recent_means(self) -> tuple[float, float]:
        """Mean (loss, PSNR) over the recent window's finite steps (there must be one)."""
        ok = [(loss, psnr) for loss, psnr, f in self._recent if f]
        return statistics.fmean(x[0] for x in ok), statistics.fmean(x[1] for x in ok)

    def _reference(self) -> tuple[float, float] | None:
        """Median (loss, PSNR) of the earlier windows, or None while there are fewer than 4."""
        if len(self._windows) < 4:
            return None
        return (statistics.median(w[0] for w in self._windows),
                statistics.median(w[1] for w in self._windows))

    def _suspect(self) -> bool:
        """Whether the last steps look like the start of a blow-up (a non-finite step, or a
        training PSNR half of GUARD_PSNR_DROP down): then no checkpoint is saved, so that a
        roll-back always has a sound one to go back to."""
        if any(not f for *_, f in self._recent):
            return True
        reference = self._reference()
        if reference is None or not self._recent:
            return False
        return self._recent_means()[1] < reference[1] - GUARD_PSNR_DROP / 2

    def _roll_back(self, why: str) -> None:
        """Training blew up: go back to the last checkpoint (saved before the blow-up: a
        diverged state is never saved) and go on at half the learning rate."""
        path = self.run_dir / "checkpoint.pt"
        if not path.exists():
            raise TrainingDiverged(f"training diverged at step {self.step} ({why}) before its "
                                   "first checkpoint; try a lower lr")
        state = read_checkpoint(path)
        scale = state.get("lr_factor", 1.0) / 2
        if scale < GUARD_MIN_LR_FACTOR:
            raise TrainingDiverged(f"training diverged at step {self.step} ({why}) with the "
                                   f"learning rate already at {scale * 2:g} x lr; giving up")
        diverged_at = self.step
        self._load_state(state)
        self.lr_factor = scale
        self.rollbacks.append({"diverged_at": diverged_at, "back_to": self.step, "why": why,
                               "lr_factor": scale})
        if not self.quiet:
            print(f"diverged at step {diverged_at} ({why}): back to the checkpoint of step "
                  f"{self.step}, learning rate now {scale:g} x the schedule's", flush=True)

    LOG_FIELDS = ["step", "time", "loss", "bpp", "psnr", "grad_norm", "lr", "patches_per_s",
                  "val_bpp_low", "val_psnr_low", "val_bpp_mid", "val_psnr_mid",
                  "val_bpp_high", "val_psnr_high", "val_msssim_db_low", "val_msssim_db_mid",
                  "val_msssim_db_high"]

    def run(self, max_steps: int | None = None, max_minutes: float | None = None) -> None:
        """Train until cfg.steps (or max_steps more steps / max_minutes), checkpointing as it goes."""
        cfg = self.cfg
        end = cfg.steps if max_steps is None else min(cfg.steps, self.step + max_steps)
        start = time.time()
        last_ckpt = time.time()
        stop = []
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
        acc: dict[str, float] = {}
        n = 0
        t_int = time.time()
        while self.step < end:
            stats = self.train_step()
            why = self._check_health(stats)
            if why:
                self._roll_back(why)  # the interval's stats go with the steps undone
                acc, n, t_int = {}, 0, time.time()
                continue
            for k, v in stats.items():
                acc[k] = acc.get(k, 0.0) + v
            n += 1
            if (cfg.schedule == "paper" and self.step % cfg.paper_stage_steps == 0
                    and self.step // cfg.paper_stage_steps >= 2):
                self.save_snapshot()
            if self.step % cfg.log_every == 0 or self.step == end:
                row = {"step": self.step, "time": round(time.time() - start, 1)}
                row.update({k: v / n for k, v in acc.items()})
                # in 128x128-patch equivalents, so that runs with other patch sizes compare
                row["patches_per_s"] = (n * cfg.batch * cfg.patch**2 / 128**2
                                        / (time.time() - t_int))
                if self.step % cfg.val_every == 0:
                    row.update(self.validate())
                RunLog(self.run_dir / "log.csv", self.LOG_FIELDS, self.quiet).append(row)
                acc, n, t_int = {}, 0, time.time()
            if time.time() - last_ckpt > cfg.checkpoint_minutes * 60 and not self._suspect():
                self.save_checkpoint()
                last_ckpt = time.time()
            if stop or (max_minutes is not None and time.time() - start > max_minutes * 60):
                break
        if self._suspect() and self.checkpoint_step is not None:
            if not self.quiet:
                print(f"not saving step {self.step}: its last steps look unstable; the "
                      f"checkpoint keeps step {self.checkpoint_step}", flush=True)
        else:
            self.save_checkpoint()
        signal.signal(signal.SIGTERM, previous)
