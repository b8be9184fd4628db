"""run_evaluation: every codec at every setting on every image, cached, then results and plots."""

from __future__ import annotations

import datetime as _dt
import multiprocessing
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from pathlib import Path

from tqdm import tqdm

from ..metrics import MS_SSIM_MIN_SIDE
from . import cache
from .codecs import ANCHOR
from .images import EvalImage, describe_images, find_images
from .measure import Task, init_worker, one_torch_thread, run_task
from .outputs import write_outputs
from .plan import Plan, make_plan
from .reference import load_references
from .summary import average_points, bd_rate_entry, bd_rates, median_times, reference_as_averages
from .versions import software_versions

RESULTS_FORMAT = "codedvision-evaluation/1"


def run_evaluation(
    images: list[Path] | Path,
    out: Path,
    codecs: list[str] | None = None,
    settings: dict[str, list] | None = None,
    jobs: int = 1,
    reference: Path | None = None,
    per_image: bool = False,
    progress: bool = True,
) -> dict:
    """Evaluate codecs on images and write results, plots and a report into out.

    Args:
        images: a directory (its image files, not recursive), one image file, or a list of files.
        out: output directory, created if needed. Holds cache/ (every encoded file and its
            measured point, reused by the next run), results.json, rd_psnr.png, rd_msssim.png,
            side_by_side.png, report.md, and per_image/ when per_image is set.
        codecs: codec names (see codecs.CODECS); None runs every codec available here and notes
            the others as skipped.
        settings: per codec name, the settings to run instead of its defaults (qualities,
            QPs, or target bpp for jpeg2000).
        jobs: worker processes; >1 measures images in parallel (one torch thread each).
        reference: directory (or file) of published results JSON, drawn dashed on the plots.
        per_image: also plot every image's own curves into out/per_image/.
        progress: show a tqdm progress bar (on stderr) over the points.

    Returns:
        The results.json document as a dict.

    Raises:
        ValueError: one-line message for bad input: no images, unreadable image, unknown or
            unavailable codec, invalid setting, jobs < 1, unusable reference path.
    """
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be a positive integer, got {jobs!r}")
    plan = make_plan(codecs, settings)
    references = load_references(Path(reference)) if reference is not None else []
    test_images = describe_images(find_images(images))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    versions = {c.name: c.version() for c in plan.codecs}
    tags = {c.name: cache.codec_tag(versions[c.name], c.options) for c in plan.codecs}
    for c in plan.codecs:
        cache.write_codec_info(out, c, tags[c.name], versions[c.name])

    records, tasks = _cached_and_missing(out, plan, test_images, tags, versions)
    total = len(test_images) * sum(len(s) for s in plan.settings.values())
    done_before = total - sum(len(t.settings) for t in tasks)
    with tqdm(total=total, initial=done_before, unit="point", desc="evaluate",
              disable=not progress, dynamic_ncols=True) as bar:
        for rec in _measure(tasks, jobs, bar):
            records[(rec["codec"], rec["setting"], rec["image_sha256"])] = rec

    results = _assemble(out, plan, test_images, records, versions, tags, references)
    return write_outputs(out, results, references, per_image)


def _cached_and_missing(
    out: Path, plan: Plan, test_images: list[EvalImage], tags: dict, versions: dict
) -> tuple[dict, list[Task]]:
    """Points already in the cache, and tasks (one per image content and codec) for the rest."""
    records: dict[tuple, dict] = {}
    tasks = []
    unique: dict[str, EvalImage] = {}
    for im in test_images:
        unique.setdefault(im.sha256, im)  # the same pixels under two names are measured once
    for codec in plan.codecs:
        for sha, im in unique.items():
            missing = []
            for s in plan.settings[codec.name]:
                rec = cache.slot(out, codec, tags[codec.name], s, sha).load()
                if rec is None:
                    missing.append(s)
                else:
                    records[(codec.name, s, sha)] = rec
            if missing:
                tasks.append(Task(out, im, codec.name, tags[codec.name], versions[codec.name],
                                  tuple(missing)))
    return records, tasks


def _measure(tasks: list[Task], jobs: int, bar: tqdm):
    """Run the tasks, serially or in worker processes, yielding point records as they finish."""
    if jobs == 1 or len(tasks) <= 1:
        with one_torch_thread():
            for task in tasks:
                yield from run_task(task, on_point=lambda: bar.update(1))
        return
    # spawn, not fork: forking a process that already runs torch/OpenMP threads can deadlock.
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=init_worker) as pool:
        pending = {pool.submit(run_task, t): t for t in tasks}
        while pending:
            finished, _ = wait(pending, return_when=FIRST_EXCEPTION)
            for fut in finished:
                task = pending.pop(fut)
                if fut.exception() is not None:
                    # Finished points are already cached; stop the rest and report this one.
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise fut.exception()
                bar.update(len(task.settings))
                yield from fut.result()


def _assemble(
    out: Path,
    plan: Plan,
    test_images: list[EvalImage],
    records: dict,
    versions: dict,
    tags: dict,
    references: list[dict],
) -> dict:
    """The results.json document: images, per-image points, averages, BD-rates, versions."""
    points = []
    for codec in plan.codecs:
        for s in plan.settings[codec.name]:
            for im in test_images:
                rec = dict(records[(codec.name, s, im.sha256)])
                rec.pop("image_sha256")
                points.append({"image": im.name, "image_sha256": im.sha256, **rec})
    averages = {
        c.name: average_points([p for p in points if p["codec"] == c.name], plan.settings[c.name])
        for c in plan.codecs
    }
    anchor_avg = averages.get(ANCHOR)
    reference_bd = {}
    if anchor_avg is not None:
        for ref in references:
            ref_avg = reference_as_averages(ref)
            reference_bd[ref["name"]] = {
                m: bd_rate_entry(anchor_avg, ref_avg, m) for m in ("psnr", "ms_ssim_db")
            }
    return {
        "format": RESULTS_FORMAT,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "anchor": ANCHOR,
        "images": [
            {"name": im.name, "path": str(im.path), "sha256": im.sha256,
             "width": im.width, "height": im.height}
            for im in test_images
        ],
        "n_points": len(points),
        "n_ms_ssim_images": sum(
            1 for im in test_images if min(im.width, im.height) >= MS_SSIM_MIN_SIDE
        ),
        "codecs": {
            c.name: {
                "label": c.label,
                "version": versions[c.name],
                "options": c.options,
                "setting_name": c.setting_name,
                "settings": list(plan.settings[c.name]),
                "cache_dir": cache.codec_dir(out, c, tags[c.name]).relative_to(out).as_posix(),
            }
            for c in plan.codecs
        },
        "skipped": dict(plan.skipped),
        "averages": averages,
        "bd_rate": bd_rates(averages, ANCHOR),
        "reference_bd_rate": reference_bd,
        "median_times": {
            c.name: median_times([p for p in points if p["codec"] == c.name]) for c in plan.codecs
        },
        "versions": software_versions(versions),
        "points": points,
    }
