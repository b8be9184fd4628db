"""Measuring points: encode, write, decode, compare. The unit of work a worker process runs."""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from PIL import Image

from ..metrics import ms_ssim, ms_ssim_db, psnr
from . import cache
from .codecs import ImageCodec, Setting, get_codec
from .images import EvalImage, load_rgb


def _finite_or_none(x: float | None) -> float | None:
    # JSON has no infinity: an identical decode (PSNR = inf) is stored as null.
    return x if x is not None and math.isfinite(x) else None


def measure_point(
    codec: ImageCodec, img: Image.Image, original: np.ndarray, setting: Setting
) -> tuple[dict, bytes]:
    """Encode and decode one image at one setting and measure the result.

    Returns (metrics, file bytes). Metrics: bytes; bpp = 8 * bytes / pixels; psnr in dB (None
    if the decode is identical); ms_ssim linear and ms_ssim_db in dB (None for images with a
    side <= 160 px); encode_s and decode_s, wall-clock seconds of the codec calls alone.
    """
    t0 = time.perf_counter()
    data = codec.encode(img, setting)
    t1 = time.perf_counter()
    decoded = codec.decode(data)
    t2 = time.perf_counter()
    if decoded.size != img.size:
        raise RuntimeError(
            f"{codec.name} decoded a {decoded.size} image from a {img.size} original"
        )
    rec = np.asarray(decoded.convert("RGB"))
    ms = ms_ssim(original, rec)
    metrics = {
        "bytes": len(data),
        "bpp": 8.0 * len(data) / (img.width * img.height),
        "psnr": _finite_or_none(psnr(original, rec)),
        "ms_ssim": ms,
        "ms_ssim_db": _finite_or_none(ms_ssim_db(ms)),
        "encode_s": t1 - t0,
        "decode_s": t2 - t1,
    }
    return metrics, data


@dataclass(frozen=True)
class Task:
    """The points of one image under one codec still to be measured (picklable)."""

    out: Path
    image: EvalImage
    codec_name: str
    codec_tag: str
    codec_version: str
    settings: tuple[Setting, ...]


def run_task(task: Task, on_point: Callable[[], None] | None = None) -> list[dict]:
    """Measure every setting of a task, storing each point in the cache as soon as it is done.

    on_point is called after each point (for a progress bar in the serial case).
    """
    codec = get_codec(task.codec_name)
    img = load_rgb(task.image.path)
    original = np.asarray(img)
    records = []
    for setting in task.settings:
        try:
            metrics, data = measure_point(codec, img, original, setting)
        except Exception as exc:  # name the point: a bare codec error says nothing of where
            raise RuntimeError(
                f"{codec.name} {codec.describe_setting(setting)} on {task.image.path}: {exc}"
            ) from exc
        where = cache.slot(task.out, codec, task.codec_tag, setting, task.image.sha256)
        record = {
            "codec": codec.name,
            "setting": setting,
            "image_sha256": task.image.sha256,
            "width": img.width,
            "height": img.height,
            **metrics,
            "file": where.file_path.relative_to(task.out).as_posix(),
            "codec_version": task.codec_version,
        }
        where.store(record, data)
        records.append(record)
        if on_point is not None:
            on_point()
    return records


def init_worker() -> None:
    """Worker process set-up: one torch thread, since the parallelism is across processes."""
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(1)


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run the serial case with one torch thread too, and restore the caller's count after.

    Timings then do not depend on jobs, and torch's thread pool does not stall when the cores
    are busy with other work (a descheduled OpenMP thread holds up every parallel region).
    """
    try:
        import torch
    except ImportError:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
