"""Training classifier heads: a resumable, logged loop like the codec's (codedvision.train.codec).

    codedvision train classifier --data ../shared/data/caltech101 --run-dir ~/cv-runs/cls-fmaps
    codedvision train classifier --data ../shared/data/caltech101 --run-dir ~/cv-runs/cls-rgb \
        --input rgb [--degrade jpeg|codec --quality-range 5-95]
    codedvision train export-head ~/cv-runs/cls-fmaps/best.pt -o my-head/

input="fmaps" (the compressed-domain head), per step:
    random crops/flips (shorter side scaled to a random size in `resize`, crop `crop` px)
    -> the codec's FROZEN forward net -> x gain(q) at a random integer quality q per image
    -> round (the real quantization, clamped to the coder's range) -> x inverse gain(q)
    -> head -> cross-entropy.
So the head sees exactly what `Codec.fmaps` returns for a .cvz of that crop at quality q (for a
mean-scale codec, up to its means, which come from the crop alone: `CodedVisionModel.quantize`).

input="rgb" (the decode-then-classify baselines): the same crops, transformed by `degrade`
("none": uncompressed RGB; "jpeg": JPEG round trip at a random quality in `quality_range`;
"codec": this codec's decode at a random quality), into a head that starts with a ForwardNet
copy (initialised from the codec's, `rgb_init`; see codedvision.vision.head).

Validation (every `val_every` steps, at the end and on a --minutes stop): whole val images,
shorter side scaled to `eval_side`, padded to the codec stride like the codec pads, at each of
`val_qualities`; top-1 and mean per-class accuracy per quality and averaged. `best.pt` keeps
the head with the best averaged top-1; `checkpoint.pt` (head, optimizer, step, config, RNG
states; every few minutes, on SIGTERM and at the end) lets `--resume` continue bit for bit.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..codec import Codec
from ..config import check_fields
from ..container import FMAP_GROUP
from ..precision import autocast, use_bf16
from ..train.runlog import RunLog, open_run, read_checkpoint, save_atomic
from . import data as D
from .head import INPUTS, ClassifierHead, HeadConfig, valid_fmap_size

SHARED = Path(__file__).resolve().parents[2].parent / "shared"


@dataclass
class HeadTrainConfig:
    """Everything that defines a head training run (saved in every checkpoint)."""

    data: str = str(SHARED / "data" / "caltech101")
    labels: str | None = None  # labels CSV; None: DATA/labels.csv if present, else folders
    codec: str | None = None  # codec release folder; None: the shipped default model
    input: str = "fmaps"  # "fmaps" or "rgb"
    rgb_init: str = "codec"  # rgb heads: ForwardNet copy from the codec's, or "random"
    rgb_lr_scale: float = 0.1  # learning-rate factor of that copy when it starts from the codec
    degrade: str = "none"  # rgb heads: "none", "jpeg" or "codec" (the baselines' inputs)
    quality_range: tuple[int, int] = (0, 100)  # training qualities (fMaps, or the degradation)
    val_qualities: tuple[int, ...] = (10, 50, 90)
    # the head's width and depth: 64 x 2 units is what keeps a .cvz file-to-label 5x faster
    # than JPEG -> decode -> classify with the same head (benchmarks/vision_benchmark.py)
    channels: int = 64
    units: int = 2
    dropout: float = 0.2
    # fmaps heads: read only the first K fMap channels (0: all). None: the first channel group
    # of the bitstream (container.FMAP_GROUP = 32), so a file decodes only that group
    keep_fmaps: int | None = None
    # fmaps heads: False feeds the forward net's output unrounded (the Table 1 "unquantized"
    # row, a measurement: such a head never sees what a file holds and cannot be exported)
    quantized: bool = True
    crop: int = 128
    # fmaps heads: shorter sides at which every training image's fMaps are computed once
    # (each also mirrored); steps then draw crop-sized windows of them instead of running the
    # frozen forward net on every crop (D.FMapCache). () = crops on the fly.
    fmap_cache: tuple[int, ...] = ()
    resize: tuple[int, int] = (144, 192)  # training: shorter side scaled into this range
    eval_side: int | None = 160  # validation/classification: shorter side scaled to this
    batch: int = 32
    steps: int = 8000
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    label_smoothing: float = 0.1
    clip: float = 5.0
    seed: int = 0
    threads: int = 0  # 0: all cores
    # "auto": the trained networks (the head, an rgb head's ForwardNet copy) and the frozen
    # codec's transforms run in bf16 autocast where the CPU has native bf16, as the codec
    # trainer and the codec itself do (so the rounded fMaps are a file's as this machine's codec
    # writes it); "bf16" or "off" force it.
    autocast: str = "auto"
    log_every: int = 25
    val_every: int = 500
    val_limit: int | None = None  # validate on an evenly spread subset of this many images
    norm_batches: int = 4  # batches that set the head's input normalisation
    checkpoint_minutes: float = 5.0

    def __post_init__(self) -> None:
        self.quality_range = tuple(int(q) for q in self.quality_range)
        self.val_qualities = tuple(int(q) for q in self.val_qualities)
        self.resize = tuple(int(s) for s in self.resize)
        self.fmap_cache = tuple(int(s) for s in self.fmap_cache)
        if self.input not in INPUTS:
            raise ValueError(f"input must be one of {INPUTS}, got {self.input!r}")
        if self.degrade not in D.DEGRADATIONS:
            raise ValueError(f"degrade must be one of {D.DEGRADATIONS}, got {self.degrade!r}")
        if self.degrade != "none" and self.input != "rgb":
            raise ValueError("degrade applies to rgb heads only (--input rgb)")
        if self.input != "fmaps" and (self.keep_fmaps or not self.quantized or self.fmap_cache):
            raise ValueError("keep_fmaps, quantized and fmap_cache apply to fmaps heads only")
        if self.rgb_init not in ("codec", "random"):
            raise ValueError(f"rgb_init must be 'codec' or 'random', got {self.rgb_init!r}")
        lo, hi = self.quality_range
        if not 0 <= lo <= hi <= 100 or not all(0 <= q <= 100 for q in self.val_qualities):
            raise ValueError("qualities must be within 0..100 (and the range low <= high)")
        if len(self.resize) != 2 or self.resize[0] > self.resize[1]:
            raise ValueError(f"resize must be (low, high), got {self.resize}")
        use_bf16(self.autocast, "autocast")  # a bad value is an error that names it
        if self.batch < 1 or self.steps < 1 or self.crop < 1:
            raise ValueError("batch, steps and crop must be positive")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        for k in ("quality_range", "val_qualities", "resize", "fmap_cache"):
            d[k] = list(d[k])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "HeadTrainConfig":
        check_fields(cls, d, "classifier training config")
        return cls(**d)


def learning_rate(cfg: HeadTrainConfig, step: int) -> float:
    """Linear warm-up, then a cosine decay to 2% over the remaining steps."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    t = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


def _spread(items: list, limit: int | None) -> list:
    if not limit or limit >= len(items):
        return items
    return [items[i * len(items) // limit] for i in range(limit)]


class HeadTrainer:
    """Owns the frozen codec, the head, optimiser, data and run directory; `run()` trains."""

    def __init__(self, cfg: HeadTrainConfig, run_dir: Path, resume: bool = False,
                 quiet: bool = False, steps: int | None = None,
                 cache: D.FMapCache | None = None):
        """cache: an FMapCache built by another trainer with the same codec, data and
        `fmap_cache` sides (benchmarks train several heads on one), instead of building one."""
        self.run_dir = Path(run_dir)
        self.quiet = quiet
        cfg, state = open_run(self.run_dir, cfg, resume, steps)
        self.cfg = cfg
        torch.set_num_threads(cfg.threads or os.cpu_count() or 1)
        self.autocast = use_bf16(cfg.autocast)
        self.codec = Codec(cfg.codec, precision=cfg.autocast)
        self.codec.model.requires_grad_(False)
        if state is not None and state["codec_model_id"] != self.codec.model_id.hex():
            raise ValueError(f"the run was trained on codec model {state['codec_model_id']}, but "
                             f"{cfg.codec or 'the shipped default'} is {self.codec.model_id.hex()}")
        d = 2**self.codec.cfg.downsamples
        if cfg.crop % d:
            raise ValueError(f"crop {cfg.crop} must be a multiple of the fMap stride {d}")
        self.data = D.load_dataset(cfg.data, cfg.labels)
        if state is not None and state["classes"] != self.data.classes:
            raise ValueError("the data set's classes differ from the checkpoint's")
        self.classes = self.data.classes

        keep = cfg.keep_fmaps
        if keep is None:
            keep = min(FMAP_GROUP, self.codec.cfg.fmaps) if cfg.input == "fmaps" else 0
        self.head_cfg = HeadConfig(
            fmaps=self.codec.cfg.fmaps, num_classes=len(self.classes), channels=cfg.channels,
            units=cfg.units, input=cfg.input, dropout=cfg.dropout,
            forward_channels=self.codec.cfg.channels, downsamples=self.codec.cfg.downsamples,
            keep_fmaps=keep)
        torch.manual_seed(cfg.seed)
        self.head = ClassifierHead(self.head_cfg)
        if cfg.input == "rgb" and cfg.rgb_init == "codec":
            self.head.forward_net.load_state_dict(self.codec.model.forward_net.state_dict())
        self.opt = torch.optim.AdamW(self._param_groups(), lr=cfg.lr,
                                     weight_decay=cfg.weight_decay)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.sampler = D.CropSampler(self.data.train, cfg.crop, cfg.resize,
                                     cfg.degrade if cfg.input == "rgb" else "none",
                                     cfg.quality_range)
        self.cache = None
        if cfg.fmap_cache:
            codec_key = (self.codec.model_id, self.codec.precision)
            if cache is not None and cache.settings != D.FMapCache.settings_of(
                    codec_key, cfg.fmap_cache, d, cfg.crop // d, self.data.train):
                raise ValueError("the shared fMap cache was built for another codec (or "
                                 "precision), sides, crop or data")
            self.cache = cache if cache is not None else D.FMapCache(
                self.codec.analysis, self.data.train, cfg.fmap_cache,
                self.codec.cfg.stride, d, cfg.crop // d, progress=not quiet,
                codec_key=codec_key)
        self.step = 0
        self.best: dict | None = None
        self.last_val: dict | None = None
        self.last_val_step = -1
        self.val_items = _spread(self.data.val, cfg.val_limit)
        self._val_cache = None
        if state is not None:
            self.head.load_weights(state["head"], self.run_dir / "checkpoint.pt")
            self.opt.load_state_dict(state["optimizer"])
            self.gen.set_state(state["generator"])
            torch.set_rng_state(state["torch_rng"])
            self.step = state["step"]
            self.best, self.last_val = state["best"], state["last_val"]
            self.last_val_step = state["last_val_step"]
            RunLog(self.run_dir / "log.csv", self.log_fields).truncate_after(self.step)
        else:
            self._init_normalisation()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "train_config.json").write_text(json.dumps(cfg.to_dict(), indent=2))

    def _param_groups(self) -> list[dict]:
        head = [p for n, p in self.head.named_parameters() if not n.startswith("forward_net.")]
        groups = [{"params": head, "lr_scale": 1.0}]
        if self.head.forward_net is not None:
            scale = self.cfg.rgb_lr_scale if self.cfg.rgb_init == "codec" else 1.0
            groups.append({"params": list(self.head.forward_net.parameters()), "lr_scale": scale})
        return groups

    # -- inputs ------------------------------------------------------------------------------
    def _qualities(self, n: int, gen: torch.Generator) -> torch.Tensor:
        lo, hi = self.cfg.quality_range
        return torch.randint(lo, hi + 1, (n,), generator=gen)

    def inputs(self, x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """Head inputs for a batch of images x (B,3,H,W) in [0,1] (H, W multiples of the fMap
        stride) at qualities q (B,): quantized fMaps, or (degraded) pixels for an rgb head."""
        if self.cfg.input == "fmaps":
            with torch.no_grad():
                return self._fmaps_input(self.codec.analysis(x), q)
        if self.cfg.degrade == "codec":
            return D.codec_roundtrip(self.codec, x, q)
        return x  # "none"; "jpeg" was applied to the image by the sampler

    def _fmaps_input(self, y: torch.Tensor, q) -> torch.Tensor:
        """An fMaps head's input from forward-net output y: what a file at quality q (one per
        image, or one int) holds, or y itself for the unquantized measurement (q unused)."""
        if not self.cfg.quantized:
            return y
        return D.quantized_fmaps(self.codec, y, torch.as_tensor(q).reshape(-1))

    def _init_normalisation(self) -> None:
        gen = torch.Generator().manual_seed(self.cfg.seed + 7919)  # not the training stream
        samples = []
        for _ in range(self.cfg.norm_batches):
            x, _ = self.sampler.sample(self.cfg.batch, gen)
            samples.append(self.inputs(x.float() / 255, self._qualities(len(x), gen)))
        self.head.set_normalisation(samples)

    # -- training ----------------------------------------------------------------------------
    def train_step(self) -> dict:
        cfg = self.cfg
        self.head.train()
        if self.cache is not None:
            y, labels = self.cache.sample(cfg.batch, self.gen)
            inp = self._fmaps_input(y, self._qualities(cfg.batch, self.gen))
        else:
            x, labels = self.sampler.sample(cfg.batch, self.gen)
            inp = self.inputs(x.float() / 255, self._qualities(cfg.batch, self.gen))
        lr = learning_rate(cfg, self.step)
        for group in self.opt.param_groups:
            group["lr"] = lr * group["lr_scale"]
        with autocast(self.autocast):
            logits = self.head(inp).float()
        loss = F.cross_entropy(logits, labels, label_smoothing=cfg.label_smoothing)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(self.head.parameters(), cfg.clip)
        if torch.isfinite(gnorm):
            self.opt.step()
        self.step += 1
        acc = (logits.argmax(1) == labels).float().mean().item()
        return {"loss": loss.item(), "train_acc": acc, "lr": lr}

    # -- validation --------------------------------------------------------------------------
    def _val_settings(self) -> list[int | None]:
        if self.cfg.degrade == "none" and (self.cfg.input == "rgb" or not self.cfg.quantized):
            return [None]
        return list(self.cfg.val_qualities)

    def _val_images(self) -> list[tuple[torch.Tensor, int]]:
        if self._val_cache is None:
            images = D.load_eval_images(self.val_items, self.cfg.eval_side)
            if self.cfg.input == "fmaps":  # the frozen forward net runs once per image
                net, s = self.codec.analysis, self.codec.cfg.stride
                d = 2**self.codec.cfg.downsamples
                images = [(D.picture_fmaps(net, img[None], s, d), label) for img, label in images]
            self._val_cache = images
        return self._val_cache

    def _val_input(self, item: torch.Tensor, q: int | None) -> torch.Tensor:
        """One val image's head input at quality q: (1,M,h,w) fMaps, or (1,3,H,W) pixels padded
        to the head's stride (the rgb head crops its fMaps back to the image)."""
        if self.cfg.input == "fmaps":
            return self._fmaps_input(item, q)
        h, w = item.shape[1:]
        if self.cfg.degrade == "jpeg":
            from PIL import Image

            img = Image.fromarray(item.permute(1, 2, 0).numpy(), "RGB")
            item = D.to_uint8_tensor(D.jpeg_roundtrip(img, q))
        x = item[None].float() / 255
        if self.cfg.degrade == "codec":
            x = D.codec_roundtrip(self.codec, D.pad_to(x, self.codec.cfg.stride),
                                  torch.tensor([q]))[:, :, :h, :w]
        return D.pad_to(x, self.head_cfg.stride)

    @torch.no_grad()
    def validate(self) -> dict:
        self.head.eval()
        items = self._val_images()
        labels = torch.tensor([label for _, label in items])
        res: dict[str, float] = {}
        tops, means = [], []
        for q in self._val_settings():
            preds = torch.empty(len(items), dtype=torch.long)
            groups: dict[tuple, list[int]] = {}
            inputs = [self._val_input(t, q) for t, _ in items]
            for i, t in enumerate(inputs):
                groups.setdefault(tuple(t.shape), []).append(i)
            for idx in groups.values():  # same-size inputs go through together
                for k in range(0, len(idx), 32):
                    chunk = idx[k : k + 32]
                    x = torch.cat([inputs[i] for i in chunk])
                    valid = None
                    if self.cfg.input == "rgb":
                        h, w = items[chunk[0]][0].shape[1:]
                        valid = valid_fmap_size(h, w, self.head_cfg.stride)
                    preds[chunk] = self.head(x, valid).argmax(1)
            top1, mean_class = D.accuracy(preds, labels, len(self.classes))
            tops.append(top1)
            means.append(mean_class)
            if q is not None:
                res[f"val_top1_q{q}"] = top1
                res[f"val_mean_class_q{q}"] = mean_class
        res["val_top1"] = sum(tops) / len(tops)
        res["val_mean_class"] = sum(means) / len(means)
        self.last_val, self.last_val_step = dict(res, step=self.step), self.step
        if self.best is None or res["val_top1"] > self.best["val_top1"]:
            self.best = dict(res, step=self.step)
            self.save_best()
        return res

    # -- checkpoints and log -----------------------------------------------------------------
    def _common_state(self) -> dict:
        return {
            "head": self.head.state_dict(),
            "head_config": self.head_cfg.to_dict(),
            "step": self.step,
            "train_config": self.cfg.to_dict(),
            "classes": self.classes,
            "codec_model_id": self.codec.model_id.hex(),
            "eval_side": self.cfg.eval_side,
        }

    def save_best(self) -> None:
        state = {**self._common_state(), "val": self.best}
        self.run_dir.mkdir(parents=True, exist_ok=True)
        save_atomic(state, self.run_dir / "best.pt")

    def save_checkpoint(self) -> None:
        state = {
            **self._common_state(),
            "optimizer": self.opt.state_dict(),
            "generator": self.gen.get_state(),
            "torch_rng": torch.get_rng_state(),
            "best": self.best,
            "last_val": self.last_val,
            "last_val_step": self.last_val_step,
            "val": self.last_val,
        }
        save_atomic(state, self.run_dir / "checkpoint.pt")

    @property
    def log_fields(self) -> list[str]:
        per_q = [f"val_{m}_q{q}" for q in self.cfg.val_qualities for m in ("top1", "mean_class")]
        if self._val_settings() == [None]:
            per_q = []
        return ["step", "time", "loss", "train_acc", "lr", "images_per_s", "val_top1",
                "val_mean_class", *per_q, "best_val_top1"]

    def run(self, max_steps: int | None = None, max_minutes: float | None = None) -> None:
        """Train until cfg.steps (or max_steps more steps / max_minutes); validate at the end."""
        cfg = self.cfg
        end = cfg.steps if max_steps is None else min(cfg.steps, self.step + max_steps)
        start = last_ckpt = t_int = time.time()
        stop: list[bool] = []
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
        acc: dict[str, float] = {}
        n = 0
        try:
            while self.step < end:
                for k, v in self.train_step().items():
                    acc[k] = acc.get(k, 0.0) + v
                n += 1
                timeout = max_minutes is not None and time.time() - start > max_minutes * 60
                halt = bool(stop) or timeout
                # validate on schedule, at the end and on --minutes; not on SIGTERM (be quick)
                val_now = self.step % cfg.val_every == 0 or self.step == end or timeout
                if self.step % cfg.log_every == 0 or val_now or halt:
                    row = {"step": self.step, "time": round(time.time() - start, 1)}
                    row.update({k: v / n for k, v in acc.items()})
                    row["images_per_s"] = n * cfg.batch / max(time.time() - t_int, 1e-9)
                    if val_now:
                        row.update({k: v for k, v in self.validate().items()
                                    if k in self.log_fields})
                        row["best_val_top1"] = self.best["val_top1"]
                    RunLog(self.run_dir / "log.csv", self.log_fields, self.quiet).append(row)
                    acc, n, t_int = {}, 0, time.time()
                if time.time() - last_ckpt > cfg.checkpoint_minutes * 60:
                    self.save_checkpoint()
                    last_ckpt = time.time()
                if halt:
                    break
        finally:
            self.save_checkpoint()
            signal.signal(signal.SIGTERM, previous)


# -- export ------------------------------------------------------------------------------------

def load_head_checkpoint(checkpoint: Path) -> tuple[ClassifierHead, dict]:
    """Rebuild the head of a checkpoint (best.pt or checkpoint.pt) from its saved config."""
    state = read_checkpoint(checkpoint)
    if "head_config" not in state:
        raise ValueError(f"{checkpoint}: not a classifier checkpoint (no head_config)")
    head = ClassifierHead(HeadConfig.from_dict(state["head_config"]))
    head.load_weights(state["head"], checkpoint)
    return head.eval(), state


def export_head_checkpoint(checkpoint: Path, out_dir: Path, force: bool = False) -> dict:
    """Export a classifier checkpoint to a head release folder (see codedvision.vision.release)."""
    from .release import export

    head, state = load_head_checkpoint(checkpoint)
    tc = state["train_config"]
    if not tc.get("quantized", True):
        raise ValueError(f"{checkpoint}: a head on unquantized fMaps is a measurement; files "
                         "hold quantized fMaps, so it is not exported")
    info = {
        "classes": state["classes"],
        "codec_model_id": state["codec_model_id"],
        "eval_side": state.get("eval_side"),
        "val": state.get("val"),
        "training": {"steps": state["step"], "data": tc["data"], "labels": tc["labels"],
                     "input": tc["input"], "degrade": tc["degrade"], "train_config": tc},
    }
    return export(head, out_dir, info, force=force)
