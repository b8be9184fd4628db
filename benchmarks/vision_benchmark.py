"""Classification accuracy and file-to-label time of the vision task engine against the
decode-then-classify baselines, on the Caltech-101 val split (this machine).

    python benchmarks/vision_benchmark.py [--head DIR] [--rgb-head DIR] [--qualities 10,30,50,70,90]
    python benchmarks/vision_benchmark.py --limit 20          # quick smoke run

Protocol: every val photo is scaled so that its shorter side is the heads' `eval_side` (the
size they were validated at) and saved losslessly as PNG. Then, per photo and quality q:
  fmaps    the photo compressed to .cvz at q; file -> entropy decoding -> fMaps head
  decoded  the same .cvz file -> codedvision decode -> RGB head      (baseline 3)
  jpeg     the photo as JPEG at the quality whose size is closest to the .cvz's (about the same
           bpp); file -> JPEG decode -> RGB head                     (baseline 2)
and once per photo
  rgb      the PNG file -> RGB head                                   (baseline 1, uncompressed)
Every path goes through `codedvision.vision.classify.Classifier` (the CLI's code); the time is
wall time from reading the file's bytes to the label, one image at a time, after a warm-up.
Threads (--threads 1,2): every path and quality is timed with torch on the first count (1: the
setting that gives every path its highest throughput on a 2-core machine, one file per core),
the paths taking turns image by image ("interleaved": each path starts with caches that the
others have just used). Then, at the first quality and for the uncompressed path, each path is
timed again over all its files in a row at every thread count ("steady": what a service that
classifies a stream of files of one kind sees; 2 threads: one file at a time using both cores,
the lowest latency for the pixel paths). The
heads have the same size on every path ("same classifier budget"); --rgb-head-jpeg and
--rgb-head-decoded give the baselines heads trained on their own degraded pixels
(`codedvision train classifier --input rgb --degrade jpeg|codec`), else all use --rgb-head.
The shipped heads' JPEG baseline is kept with this script (benchmarks/models/classifier-rgb-jpeg,
JPEG qualities 5-60 in training) and used unless --rgb-head or --rgb-head-jpeg is given.

Writes OUT/vision_benchmark.json (OUT/vision_benchmark_limit<N>.json with --limit; OUT:
results/vision) with the mean bpp, top-1, mean per-class accuracy and median seconds per path
and quality, and a plot of accuracy against bpp (accuracy_vs_bpp*.png).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from codedvision.codec import Codec  # noqa: E402
from codedvision.vision import release as head_release  # noqa: E402
from codedvision.vision.classify import Classifier  # noqa: E402
from codedvision.vision.data import accuracy, load_dataset, load_rgb, resize_shorter  # noqa: E402

PATHS = ("fmaps", "decoded", "jpeg", "rgb")
# the JPEG baseline's head (`train classifier --input rgb --degrade jpeg`), kept with the benchmark
JPEG_HEAD = HERE / "models" / "classifier-rgb-jpeg"
PATH_LABELS = {
    "fmaps": "compressed domain (fMaps of .cvz)",
    "decoded": "codedvision decode -> RGB head",
    "jpeg": "JPEG (same bpp) -> RGB head",
    "rgb": "uncompressed RGB (PNG) -> RGB head",
}


def jpeg_near(image: Image.Image, target_bytes: int) -> tuple[bytes, int]:
    """The JPEG of `image` whose size is closest to target_bytes (quality 1..100)."""
    def enc(q: int) -> bytes:
        buf = io.BytesIO()
        image.save(buf, format="JPEG", quality=q)
        return buf.getvalue()

    lo, hi = 1, 100
    while lo < hi:  # highest quality whose file fits
        mid = (lo + hi + 1) // 2
        if len(enc(mid)) <= target_bytes:
            lo = mid
        else:
            hi = mid - 1
    best = min({lo, min(lo + 1, 100)}, key=lambda q: abs(len(enc(q)) - target_bytes))
    return enc(best), best


def _spread(items: list, limit: int | None) -> list:
    if not limit or limit >= len(items):
        return items
    return [items[i * len(items) // limit] for i in range(limit)]


def _thread_counts(text: str) -> list[int]:
    try:
        counts = [int(t) for t in str(text).split(",")]
    except ValueError:
        raise SystemExit(f"error: --threads: expected counts like 1,2, got {text!r}") from None
    if not counts or min(counts) < 1:
        raise SystemExit(f"error: --threads: counts must be positive, got {text!r}")
    return counts


def run(args) -> dict:
    threads = _thread_counts(args.threads)
    if args.rgb_head_jpeg is None and args.rgb_head is None and JPEG_HEAD.is_dir():
        args.rgb_head_jpeg = JPEG_HEAD  # the shipped heads' JPEG baseline
    torch.set_num_threads(threads[0])
    codec = Codec(args.model)
    heads = {}
    for key, path, kind in (("fmaps", args.head, "fmaps"), ("rgb", args.rgb_head, "rgb"),
                            ("jpeg", args.rgb_head_jpeg, "rgb"),
                            ("decoded", args.rgb_head_decoded, "rgb")):
        if path is not None or key in ("fmaps", "rgb"):
            try:
                heads[key] = head_release.load(path, kind)
            except FileNotFoundError as e:
                print(f"note: {key}: {e}", file=sys.stderr)
    heads.setdefault("jpeg", heads.get("rgb"))
    heads.setdefault("decoded", heads.get("rgb"))
    paths = [p for p in PATHS if heads.get(p) is not None]
    if not paths:
        raise SystemExit("error: no classifier head to benchmark")
    sides = {h.eval_side for h in heads.values() if h is not None}
    if len(sides) > 1:
        print(f"note: the heads were validated at different sizes {sides}; using the first",
              file=sys.stderr)
    side = next(h.eval_side for h in heads.values() if h is not None)

    ds = load_dataset(args.data, args.labels)
    items = _spread(ds.val, args.limit)
    clf = {p: Classifier(codec if p == "fmaps" else None,
                         heads[p] if p == "fmaps" else None,
                         heads[p] if p != "fmaps" else None, top_k=1) for p in paths}
    name_of = ds.classes
    for p in paths:  # the heads must know every label of the data set
        missing = set(name_of) - set(heads[p].classes)
        if missing:
            raise SystemExit(f"error: the {p} head has no class {sorted(missing)[0]!r}")

    qualities = [int(q) for q in args.qualities.split(",")]
    records: dict[tuple[str, int | None], list[dict]] = {}
    work = Path(tempfile.mkdtemp(prefix="vision-bench-"))
    warmed: set[str] = set()
    in_a_row: list[tuple[str, int | None, Path]] = []  # timed again, path by path, per thread count
    t_start = time.time()
    for n, (path, label) in enumerate(items):
        image = resize_shorter(load_rgb(path), side)
        w, h = image.size
        png = work / f"{n}.png"
        image.save(png)
        jobs: list[tuple[str, int | None, Path, float]] = []
        if "rgb" in paths:
            jobs.append(("rgb", None, png, png.stat().st_size * 8 / (w * h)))
        for q in qualities:
            cvz = work / f"{n}_q{q}.cvz"
            data = codec.encode(image, quality=q)
            cvz.write_bytes(data)
            bpp = len(data) * 8 / (w * h)
            for p in ("fmaps", "decoded"):
                if p in paths:
                    jobs.append((p, q, cvz, bpp))
            if "jpeg" in paths:
                jpg, _ = jpeg_near(image, len(data))
                jf = work / f"{n}_q{q}.jpg"
                jf.write_bytes(jpg)
                jobs.append(("jpeg", q, jf, len(jpg) * 8 / (w * h)))
        for p, q, f, bpp in jobs:
            if p not in warmed:
                _classify_timed(clf[p], codec, p, f)
                warmed.add(p)
            rec, seconds = _classify_timed(clf[p], codec, p, f)
            pred = heads[p].classes.index(rec["top"][0]["label"])
            truth = heads[p].classes.index(name_of[label])
            records.setdefault((p, q), []).append(
                {"pred": pred, "label": truth, "bpp": bpp, "seconds": seconds})
            if q in (None, qualities[0]):
                in_a_row.append((p, q, f))
        if not args.quiet and (n + 1) % 50 == 0:
            print(f"{n + 1}/{len(items)} images, {time.time() - t_start:.0f} s", file=sys.stderr)
    steady: dict[tuple[str, int | None, int], list[float]] = {}
    for t in threads:
        torch.set_num_threads(t)
        for path in paths:
            files = [(q, f) for p, q, f in in_a_row if p == path]
            for q, f in files[:3]:  # warm-up
                _classify_timed(clf[path], codec, path, f)
            for q, f in files:
                steady.setdefault((path, q, t), []).append(
                    _classify_timed(clf[path], codec, path, f)[1])
        if not args.quiet:
            print(f"steady timing with {t} threads, {time.time() - t_start:.0f} s",
                  file=sys.stderr)
    torch.set_num_threads(threads[0])
    for f in work.iterdir():
        f.unlink()
    work.rmdir()

    points = []
    for (p, q), recs in records.items():
        pred = torch.tensor([r["pred"] for r in recs])
        labels = torch.tensor([r["label"] for r in recs])
        top1, mean_class = accuracy(pred, labels, len(heads[p].classes))
        secs = [r["seconds"] for r in recs]
        steady_by_threads = {str(t): statistics.median(steady[(p, q, t)])
                             for t in threads if (p, q, t) in steady}
        points.append({
            "path": p, "description": PATH_LABELS[p], "quality": q, "images": len(recs),
            "bpp": statistics.fmean(r["bpp"] for r in recs),
            "top1": top1, "mean_class_accuracy": mean_class,
            "seconds_median": statistics.median(secs), "seconds_mean": statistics.fmean(secs),
            "seconds_median_steady": steady_by_threads,
        })
    points.sort(key=lambda r: (PATHS.index(r["path"]), r["quality"] or 0))
    return {
        "meta": {
            "script": "benchmarks/vision_benchmark.py",
            "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "machine": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "threads": threads[0], "steady_threads": threads,
            "torch": torch.__version__,
            "codec_model_id": codec.model_id.hex(),
            "codec_transforms": codec.precision,
            "heads": {p: heads[p].head_id for p in paths},
            "data": str(args.data), "split": "val", "images": len(items), "limit": args.limit,
            "eval_side": side, "qualities": qualities,
            "seconds_total": round(time.time() - t_start, 1),
        },
        "points": points,
    }


def _classify_timed(clf: Classifier, codec: Codec, path: str, f: Path) -> tuple[dict, float]:
    """Classify file f along `path`; (record, wall seconds from reading the file to the label)."""
    t0 = time.perf_counter()
    if path == "decoded":  # file -> codedvision decode -> RGB head
        rec = clf.classify_image(codec.decode(f.read_bytes()), str(f))
    else:
        rec = clf.classify_file(f)
    return rec, time.perf_counter() - t0


def plot(results: dict, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4.2))
    FigureCanvasAgg(fig)
    for ax, key, title in zip(fig.subplots(1, 2), ("top1", "mean_class_accuracy"),
                              ("top-1 accuracy", "mean per-class accuracy")):
        for p in ("fmaps", "decoded", "jpeg"):
            pts = sorted((r["bpp"], r[key]) for r in results["points"] if r["path"] == p)
            if pts:
                ax.plot([x for x, _ in pts], [y for _, y in pts], "o-", label=PATH_LABELS[p])
        for r in results["points"]:
            if r["path"] == "rgb":
                ax.axhline(r[key], color="grey", ls="--",
                           label=f"{PATH_LABELS['rgb']}, {r['bpp']:.1f} bpp")
        ax.set_xlabel("bits per pixel")
        ax.set_ylabel(title)
        ax.grid(alpha=0.3)
    m = results["meta"]
    fig.suptitle(f"Caltech-101 val ({m['images']} images, shorter side {m['eval_side']} px), "
                 f"codec {m['codec_model_id']}", fontsize=10)
    fig.axes[0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=HERE.parents[1] / "shared" / "data" / "caltech101")
    ap.add_argument("--labels", type=Path, default=None)
    ap.add_argument("--model", type=Path, default=None, help="codec (default: shipped)")
    ap.add_argument("--head", type=Path, default=None, help="fMaps head (default: shipped)")
    ap.add_argument("--rgb-head", type=Path, default=None, help="RGB head (default: shipped)")
    ap.add_argument("--rgb-head-jpeg", type=Path, default=None,
                    help="RGB head trained on JPEG pixels for the jpeg path (default with the "
                         "shipped heads: benchmarks/models/classifier-rgb-jpeg; with --rgb-head: "
                         "that head)")
    ap.add_argument("--rgb-head-decoded", type=Path, default=None)
    ap.add_argument("--qualities", default="10,30,50,70,90")
    ap.add_argument("--limit", type=int, default=None, help="only N val images (spread evenly)")
    ap.add_argument("--threads", default="1,2",
                    help="torch thread counts: the first times everything interleaved; every "
                         "count times the first quality and the uncompressed path in a row "
                         "(default 1,2)")
    ap.add_argument("--out", type=Path, default=HERE.parent / "results" / "vision")
    ap.add_argument("--quiet", action="store_true")
    return ap.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    results = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = f"_limit{args.limit}" if args.limit else ""
    out = args.out / f"vision_benchmark{suffix}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    plot(results, args.out / f"accuracy_vs_bpp{suffix}.png")
    for r in results["points"]:
        print(f"{r['path']:8s} q={r['quality']!s:>4s} {r['bpp']:7.3f} bpp  top-1 {r['top1']:.3f}  "
              f"mean/class {r['mean_class_accuracy']:.3f}  {r['seconds_median'] * 1000:7.1f} ms")
    print(f"wrote {out}")
    return results


if __name__ == "__main__":
    main()
