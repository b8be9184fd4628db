"""Independent check of an evaluation run: re-measure its cached files, recompute its BD-rates.

    python benchmarks/verify_bdrate.py RESULTS_DIR [--images DIR] [--anchor hevc] [--tolerance 0.5]

Checks "the BD-rates in the report agree with an independent measurement of the same files"
without importing anything from codedvision.evaluate or codedvision.metrics:

1. Every point in RESULTS_DIR/results.json is re-measured from its cached encoded file: the
   size on disk gives the rate (8 * bytes / pixels, pixels from the original image read here);
   the file is decoded here (Pillow for JPEG, JPEG 2000, WebP and AVIF; pillow_heif for HEVC;
   pillow-jxl-plugin for JPEG XL; codedvision.load().decode for codedvision, refined or not;
   VVC is not re-measured and its points are taken from results.json, marked as such); PSNR
   is computed here with numpy over 8-bit RGB, all channels, 10 * log10(255^2 / MSE); MS-SSIM with
   pytorch_msssim (data_range=255) on images whose shorter side is > 160 px.
   Each bpp must equal the harness's exactly, each PSNR and MS-SSIM (dB) within 0.01 dB.
2. Points are averaged per (codec, setting) the way the harness documents it: mean bpp and
   mean PSNR over the images (PSNR undefined when an image decoded identically); MS-SSIM as
   the mean of the linear values over the images where it applies, with its own mean bpp over
   the same images, then -10 * log10(1 - mean).
3. BD-rates against the anchor are recomputed three ways, none of them the harness's code:
   the classic Bjontegaard method written out here (log rate fitted as a polynomial of quality
   with numpy.polyfit, degree 3, or n-1 when a curve has fewer than 4 points; integrated over
   the quality range both curves cover; exp of the mean difference -> percent),
   bjontegaard.bd_rate(method="pchip"), and Akima interpolation written out here (the
   harness's method, so this one should agree to rounding). Akima and PCHIP must agree with
   the harness's number within --tolerance percentage points; the cubic fit is shown for
   information only (with few, unevenly spaced points it differs from Akima by up to ~3 points,
   also on the published Kodak curves).
4. The BD-rate table in report.md (if present) must show the numbers of results.json.

Prints the tables, writes RESULTS_DIR/bdrate_check.json, and exits 1 with a one-line message
on any disagreement (2 when the run cannot be checked at all).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import importlib.metadata
import io
import json
import math
import re
import sys
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

#: Per-point agreement required of the re-measured quality (dB).
PSNR_TOL_DB = 0.01
MSSSIM_TOL_DB = 0.01
#: pytorch_msssim's five-scale pyramid needs the shorter side > (11 - 1) * 2**4 = 160 px.
MSSSIM_MAX_SKIPPED_SIDE = 160
#: Codecs whose files this script cannot decode on its own.
NOT_REMEASURED = {"vvc": "VVC is decoded through ffmpeg with a custom padding prefix and "
                         "colour conversion; not re-implemented here"}
METRICS = ("psnr", "ms_ssim_db")
METHODS = ("classic_cubic", "pchip", "akima_own")
#: Shown, not gated: a cubic polynomial fit of few, unevenly spaced points legitimately differs
#: from Akima by a few points (up to 2.7 on the published 8-point Kodak curves).
INFORMATIONAL = ("classic_cubic",)


class CheckError(Exception):
    """The run cannot be checked at all (missing results.json, unreadable original...)."""


# --------------------------------------------------------------------------- decoding


def _rgb(img: Image.Image) -> Image.Image:
    return img if img.mode == "RGB" else img.convert("RGB")


def _pillow_open(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        return _rgb(im)


class Decoders:
    """Decode a cached file given its codec name, with this script's own library calls."""

    def __init__(self) -> None:
        self._codedvision = None

    def decode(self, codec: str, data: bytes) -> Image.Image:
        if codec in ("jpeg", "jpeg2000", "webp", "avif"):
            return _pillow_open(data)
        if codec == "hevc":
            import pillow_heif

            return _rgb(pillow_heif.open_heif(io.BytesIO(data)).to_pillow())
        if codec == "jxl":
            import pillow_jxl  # noqa: F401  (registers JXL with Pillow)

            return _pillow_open(data)
        if codec in ("codedvision", "codedvision-refine"):  # the same decoder and format
            if self._codedvision is None:
                import codedvision

                self._codedvision = codedvision.load()
            return _rgb(self._codedvision.decode(bytes(data)))
        raise CheckError(f"no independent decoder for codec {codec!r}")


# --------------------------------------------------------------------------- metrics


def load_original(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        im.load()
        return np.asarray(_rgb(im))


def pixel_sha256(rgb: np.ndarray) -> str:
    """SHA-256 of "WxH:" + the RGB bytes: the content hash results.json stores per image."""
    h, w = rgb.shape[:2]
    digest = hashlib.sha256(f"{w}x{h}:".encode())
    digest.update(np.ascontiguousarray(rgb).tobytes())
    return digest.hexdigest()


def psnr_db(a: np.ndarray, b: np.ndarray) -> float:
    diff = a.astype(np.float64) - b.astype(np.float64)
    mse = float(np.mean(diff * diff))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0 * 255.0 / mse)


_torch_ready = False


def ms_ssim_linear(a: np.ndarray, b: np.ndarray) -> float | None:
    if min(a.shape[:2]) <= MSSSIM_MAX_SKIPPED_SIDE:
        return None
    global _torch_ready
    import torch
    from pytorch_msssim import ms_ssim

    if not _torch_ready:
        torch.set_num_threads(1)  # keep off the cores a training run may be using
        _torch_ready = True

    def nchw(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32))[None]

    with torch.no_grad():
        return float(ms_ssim(nchw(a), nchw(b), data_range=255, size_average=True))


def to_db(linear: float | None) -> float | None:
    if linear is None:
        return None
    return math.inf if linear >= 1.0 else -10.0 * math.log10(1.0 - linear)


def finite(x) -> bool:
    return x is not None and math.isfinite(x)


def mean(xs: list[float]) -> float:
    return math.fsum(xs) / len(xs)


# --------------------------------------------------------------------------- BD-rate


def usable(rates, quals) -> tuple[np.ndarray, np.ndarray]:
    """(quality, log rate) of points with finite quality and finite positive rate, sorted by
    quality; of equal qualities the lowest rate (interpolators need increasing x)."""
    best: dict[float, float] = {}
    for r, q in zip(rates, quals):
        if finite(r) and finite(q) and r > 0:
            best[q] = min(r, best.get(q, math.inf))
    q = np.array(sorted(best), dtype=float)
    return q, np.log(np.array([best[v] for v in q], dtype=float))


def overlap(qa: np.ndarray, qt: np.ndarray) -> tuple[float, float] | None:
    if len(qa) == 0 or len(qt) == 0:
        return None
    lo, hi = max(qa.min(), qt.min()), min(qa.max(), qt.max())
    return (float(lo), float(hi)) if hi > lo else None


def _percent(mean_log_diff: float) -> float:
    return (math.exp(mean_log_diff) - 1.0) * 100.0


def bd_classic(qa, la, qt, lt, lo, hi) -> tuple[float, int]:
    """Bjontegaard (VCEG-M33): polynomial fit of ln(rate) over quality, integrated on [lo, hi]."""
    deg = min(3, len(qa) - 1, len(qt) - 1)
    pa, pt = np.polyfit(qa, la, deg), np.polyfit(qt, lt, deg)
    ia, it = np.polyint(pa), np.polyint(pt)
    int_a = np.polyval(ia, hi) - np.polyval(ia, lo)
    int_t = np.polyval(it, hi) - np.polyval(it, lo)
    return _percent((int_t - int_a) / (hi - lo)), deg


def _akima_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Akima (1970) slopes at the nodes, ends extended by linear extrapolation of the secants."""
    n = len(x)
    m = np.diff(y) / np.diff(x)
    if n == 2:
        return np.array([m[0], m[0]])
    ext = np.empty(n + 3)
    ext[2:-2] = m
    ext[1] = 2 * ext[2] - ext[3]
    ext[0] = 2 * ext[1] - ext[2]
    ext[-2] = 2 * ext[-3] - ext[-4]
    ext[-1] = 2 * ext[-2] - ext[-3]
    t = np.empty(n)
    dm = np.abs(np.diff(ext))
    w1, w2 = dm[2:], dm[:-2]  # weights of m[i-1] and m[i], for node i
    scale = np.max(w1 + w2)
    for i in range(n):
        if w1[i] + w2[i] > 1e-9 * scale:
            t[i] = (w1[i] * ext[i + 1] + w2[i] * ext[i + 2]) / (w1[i] + w2[i])
        else:  # undefined when neighbouring secants pair up: their mean
            t[i] = 0.5 * (ext[i + 1] + ext[i + 2])
    return t


def _hermite_integral(x: np.ndarray, y: np.ndarray, t: np.ndarray, lo: float, hi: float) -> float:
    """Integral over [lo, hi] (inside [x0, xn]) of the cubic Hermite spline through (x, y, t)."""
    total = 0.0
    for k in range(len(x) - 1):
        a, b = max(lo, x[k]), min(hi, x[k + 1])
        if b <= a:
            continue
        h = x[k + 1] - x[k]
        sec = (y[k + 1] - y[k]) / h
        c2 = (3 * sec - 2 * t[k] - t[k + 1]) / h
        c3 = (t[k] + t[k + 1] - 2 * sec) / (h * h)

        def prim(s):
            return y[k] * s + t[k] * s**2 / 2 + c2 * s**3 / 3 + c3 * s**4 / 4

        total += prim(b - x[k]) - prim(a - x[k])
    return total


def bd_akima(qa, la, qt, lt, lo, hi) -> float:
    ia = _hermite_integral(qa, la, _akima_slopes(qa, la), lo, hi)
    it = _hermite_integral(qt, lt, _akima_slopes(qt, lt), lo, hi)
    return _percent((it - ia) / (hi - lo))


def bd_pchip(ra, da, rt, dt) -> float | None:
    """bjontegaard.bd_rate(method='pchip') on the same cleaned points; None if unavailable."""
    try:
        import bjontegaard
    except ImportError:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            value = bjontegaard.bd_rate(ra, da, rt, dt, method="pchip",
                                        require_matching_points=False, min_overlap=0)
        except ValueError:  # this version has no 'pchip'
            return None
    value = float(value)
    return value if math.isfinite(value) else None


def bd_all(anchor_rates, anchor_q, test_rates, test_q) -> dict:
    qa, la = usable(anchor_rates, anchor_q)
    qt, lt = usable(test_rates, test_q)
    ov = overlap(qa, qt)
    out = {"overlap": list(ov) if ov else None, "n_anchor": len(qa), "n_test": len(qt),
           "fit_degree": None, **{m: None for m in METHODS}}
    if len(qa) < 2 or len(qt) < 2 or ov is None:
        return out
    lo, hi = ov
    out["classic_cubic"], out["fit_degree"] = bd_classic(qa, la, qt, lt, lo, hi)
    out["akima_own"] = bd_akima(qa, la, qt, lt, lo, hi)
    out["pchip"] = bd_pchip(np.exp(la), qa, np.exp(lt), qt)
    for m in METHODS:
        if out[m] is not None:
            out[m] = float(out[m]) if math.isfinite(out[m]) else None
    return out


# --------------------------------------------------------------------------- the check


def resolve_images(results: dict, images_dir: Path | None) -> dict[str, np.ndarray]:
    """Each image's RGB pixels by name, content-checked against results.json's sha256."""
    if not results.get("images"):
        raise CheckError("results.json lists no images")
    originals = {}
    for im in results["images"]:
        path = images_dir / Path(im["name"]).name if images_dir else Path(im.get("path", ""))
        if not path.is_file():
            raise CheckError(f"original image {im['name']} not found at {path} (use --images DIR)")
        rgb = load_original(path)
        if pixel_sha256(rgb) != im["sha256"]:
            raise CheckError(f"{path} is not the image that was evaluated (pixel hash differs)")
        originals[im["name"]] = rgb
    return originals


def remeasure_points(results_dir: Path, results: dict, originals: dict) -> tuple[list, list]:
    """One record per point of results.json, re-measured here; and the failures found."""
    decoders = Decoders()
    rows, failures = [], []
    for p in results["points"]:
        where = f"{p['codec']} {p['setting']:g} {p['image']}"
        row = {"codec": p["codec"], "setting": p["setting"], "image": p["image"], "file": p["file"],
               "harness": {k: p.get(k) for k in ("bytes", "bpp", "psnr", "ms_ssim", "ms_ssim_db")}}
        rows.append(row)
        if p["codec"] in NOT_REMEASURED:
            row.update(remeasured=False, note=NOT_REMEASURED[p["codec"]])
            continue
        original = originals[p["image"]]
        h, w = original.shape[:2]
        try:
            data = (results_dir / p["file"]).read_bytes()
        except OSError as exc:
            row["remeasured"] = False
            failures.append(f"{where}: cached file unreadable ({exc.strerror})")
            continue
        decoded = np.asarray(decoders.decode(p["codec"], data))
        if decoded.shape != original.shape:
            row["remeasured"] = False
            failures.append(f"{where}: decoded {decoded.shape}, original {original.shape}")
            continue
        ms = ms_ssim_linear(original, decoded)
        mine = {"bytes": len(data), "bpp": 8.0 * len(data) / (w * h),
                "psnr": psnr_db(original, decoded), "ms_ssim": ms, "ms_ssim_db": to_db(ms)}
        row.update(remeasured=True, mine={k: (v if v is None or math.isfinite(v) else None)
                                          for k, v in mine.items()})
        # bpp: same bytes, same pixels, same formula -> the same float, exactly.
        if mine["bytes"] != p["bytes"] or mine["bpp"] != p["bpp"]:
            failures.append(f"{where}: bpp {mine['bpp']!r} here, {p['bpp']!r} in results.json")
        for key, tol in (("psnr", PSNR_TOL_DB), ("ms_ssim_db", MSSSIM_TOL_DB)):
            a, b = mine[key], p.get(key)  # None: not applicable, or infinite (identical)
            if a is None or b is None:
                ok = a is None and b is None
            else:
                ok = abs(a - b) <= tol
            row[f"{key}_diff"] = a - b if a is not None and b is not None else None
            if not ok:
                failures.append(f"{where}: {key} {a} here, {b} in results.json")
    return rows, failures


def average(rows: list[dict], results: dict) -> dict[str, list[dict]]:
    """Per codec, one averaged point per setting in the run's order, from the values here."""
    out = {}
    for codec, info in results["codecs"].items():
        out[codec] = []
        for s in info["settings"]:
            pts = [r for r in rows if r["codec"] == codec and r["setting"] == s]
            if not pts:
                continue
            vals = [r["mine"] if r.get("remeasured") else r["harness"] for r in pts]
            psnrs = [v["psnr"] for v in vals]
            with_ms = [v for v in vals if v["ms_ssim"] is not None]
            ms = mean([v["ms_ssim"] for v in with_ms]) if with_ms else None
            db = to_db(ms)
            out[codec].append({
                "setting": s, "n_images": len(vals),
                "remeasured": all(r.get("remeasured") for r in pts),
                "bpp": mean([v["bpp"] for v in vals]),
                "psnr": None if any(x is None for x in psnrs) else mean(psnrs),
                "n_ms_ssim": len(with_ms),
                "bpp_ms_ssim": mean([v["bpp"] for v in with_ms]) if with_ms else None,
                "ms_ssim": ms,
                "ms_ssim_db": db if finite(db) else None,
            })
    return out


def compare_averages(mine: dict, results: dict) -> list[str]:
    failures = []
    for codec, avgs in mine.items():
        theirs = {a["setting"]: a for a in results["averages"].get(codec, [])}
        for a in avgs:
            t = theirs.get(a["setting"])
            where = f"average {codec} {a['setting']:g}"
            if t is None:
                failures.append(f"{where}: missing from results.json averages")
                continue
            for key, tol in (("bpp", 1e-12), ("bpp_ms_ssim", 1e-12), ("psnr", PSNR_TOL_DB),
                             ("ms_ssim_db", MSSSIM_TOL_DB)):
                x, y = a[key], t.get(key)
                if (x is None) != (y is None) or (x is not None and abs(x - y) > tol * max(
                        1.0, abs(y) if key.startswith("bpp") else 1.0)):
                    failures.append(f"{where}: {key} {x} here, {y} in results.json")
            if a["n_images"] != t.get("n_images") or a["n_ms_ssim"] != t.get("n_ms_ssim"):
                failures.append(f"{where}: image counts differ from results.json")
    return failures


def curve(avgs: list[dict], metric: str) -> tuple[list, list]:
    rate = "bpp_ms_ssim" if metric == "ms_ssim_db" else "bpp"
    return [a[rate] for a in avgs], [a[metric] for a in avgs]


def bd_table(averages: dict, results: dict, anchor: str, tolerance: float) -> tuple[list, list]:
    rows, failures = [], []
    harness_anchor = results.get("anchor")
    for codec in averages:
        for metric in METRICS:
            got = bd_all(*curve(averages[anchor], metric), *curve(averages[codec], metric))
            entry = (results.get("bd_rate") or {}).get(codec, {}).get(metric) or {}
            harness = entry.get("bd_rate") if anchor == harness_anchor else None
            row = {"codec": codec, "metric": metric, "harness": harness,
                   "harness_overlap": entry.get("overlap"), **got,
                   "remeasured": all(a["remeasured"] for a in averages[codec] + averages[anchor])}
            diffs, agree = {}, True
            for m in METHODS:
                if m in INFORMATIONAL:
                    diffs[m] = None if harness is None or got[m] is None else got[m] - harness
                    continue
                if m == "pchip" and got["pchip"] is None and got["akima_own"] is not None:
                    diffs[m] = None  # pchip unavailable in this bjontegaard: not a disagreement
                    continue
                if harness is None or got[m] is None:
                    diffs[m] = None
                    ok = harness is None and got[m] is None
                else:
                    diffs[m] = got[m] - harness
                    # points, or 0.1% of the value for huge BD-rates fitted on 2-3 points
                    ok = abs(diffs[m]) <= max(tolerance, 1e-3 * abs(harness))
                if not ok and anchor == harness_anchor:
                    agree = False
                    failures.append(f"{codec} {metric}: {m} {_fmt(got[m])} vs harness "
                                    f"{_fmt(harness)} (> {tolerance} points)")
            row["diff_vs_harness"] = diffs
            row["agree"] = agree if anchor == harness_anchor else None
            rows.append(row)
    return rows, failures


def check_report_md(results_dir: Path, results: dict) -> tuple[dict, list[str]]:
    """report.md's BD-rate table shows results.json's numbers (as +x.x%)."""
    path = results_dir / "report.md"
    if not path.is_file():
        return {"checked": False, "note": "no report.md"}, []
    text = path.read_text()
    failures, seen = [], 0
    for codec, info in results["codecs"].items():
        m = re.search(r"^\| " + re.escape(info["label"]) + r" \| ([^|]+) \| [^|]+ \| ([^|]+) \|",
                      text, re.M)
        if m is None:
            failures.append(f"report.md: no BD-rate row for {info['label']}")
            continue
        seen += 1
        bd = (results.get("bd_rate") or {}).get(codec, {})
        for shown, metric in zip(m.groups(), METRICS):
            v = (bd.get(metric) or {}).get("bd_rate")
            expect = "n/a" if v is None else f"{v:+.1f}%"
            if shown.strip() != expect:
                failures.append(f"report.md: {codec} {metric} shows {shown.strip()}, "
                                f"results.json has {expect}")
    return {"checked": True, "rows": seen}, failures


def _fmt(x, spec="+.2f") -> str:
    return "n/a" if x is None else format(x, spec)


def print_tables(points: list, averages: dict, bd_rows: list, tolerance: float) -> None:
    done = [r for r in points if r.get("remeasured")]
    bpp_ok = sum(1 for r in done if r["mine"]["bpp"] == r["harness"]["bpp"])
    dp = [abs(r["psnr_diff"]) for r in done if r.get("psnr_diff") is not None]
    dm = [abs(r["ms_ssim_db_diff"]) for r in done if r.get("ms_ssim_db_diff") is not None]
    print(f"points: {len(done)} of {len(points)} re-measured from the cached files; "
          f"bpp identical {bpp_ok}/{len(done)}; max |dPSNR| {max(dp, default=0):.2e} dB; "
          f"max |dMS-SSIM| {max(dm, default=0):.2e} dB ({len(dm)} with MS-SSIM)")
    for r in points:
        if not r.get("remeasured") and r.get("note"):
            print(f"  not re-measured: {r['codec']} {r['setting']:g} {r['image']}: {r['note']}")
    print()
    w = max([12, *map(len, averages)])  # the codec column fits the longest name
    print("averaged points (re-measured):")
    print(f"  {'codec':<{w}} {'setting':>8} {'bpp':>9} {'PSNR':>8} {'bpp(MS)':>9} "
          f"{'MS-SSIM dB':>10}")
    for codec, avgs in averages.items():
        for a in avgs:
            print(f"  {codec:<{w}} {a['setting']:>8g} {_fmt(a['bpp'], '.4f'):>9} "
                  f"{_fmt(a['psnr'], '.3f'):>8} {_fmt(a['bpp_ms_ssim'], '.4f'):>9} "
                  f"{_fmt(a['ms_ssim_db'], '.3f'):>10}")
    print()
    print(f"BD-rate (%) against the anchor; agree = Akima and PCHIP within {tolerance} points (cubic shown only) "
          "of the harness")
    head = (f"  {'codec':<{w}} {'metric':<10} {'harness':>8} {'cubic':>8} {'pchip':>8} "
            f"{'akima*':>8} {'d cubic':>8} {'d pchip':>8} {'d akima':>8} {'deg':>3}  agree")
    print(head)
    for r in bd_rows:
        d = r["diff_vs_harness"]
        agree = "n/a" if r["agree"] is None else ("yes" if r["agree"] else "NO")
        mark = "" if r["remeasured"] else "  (harness points, not re-measured)"
        print(f"  {r['codec']:<{w}} {r['metric']:<10} {_fmt(r['harness']):>8} "
              f"{_fmt(r['classic_cubic']):>8} {_fmt(r['pchip']):>8} {_fmt(r['akima_own']):>8} "
              f"{_fmt(d['classic_cubic']):>8} {_fmt(d['pchip']):>8} {_fmt(d['akima_own']):>8} "
              f"{r['fit_degree'] if r['fit_degree'] is not None else '-':>3}  {agree}{mark}")
    print("  cubic: classic Bjontegaard polynomial fit (degree 'deg'; 3 needs >= 4 points); "
          "pchip: bjontegaard package; akima*: Akima written out here (the harness's method)")


def _package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def run(args: argparse.Namespace) -> int:
    results_dir = args.results_dir
    try:
        results = json.loads((results_dir / "results.json").read_text())
    except (OSError, ValueError) as exc:
        raise CheckError(f"cannot read {results_dir / 'results.json'}: {exc}") from None
    if not str(results.get("format", "")).startswith("codedvision-evaluation/"):
        raise CheckError(f"{results_dir / 'results.json'} is not a codedvision evaluation result")
    anchor = args.anchor or results.get("anchor") or "hevc"
    if anchor not in results["codecs"]:
        raise CheckError(f"anchor {anchor!r} was not evaluated in this run")

    originals = resolve_images(results, args.images)
    points, failures = remeasure_points(results_dir, results, originals)
    n_ms = sum(1 for a in originals.values() if min(a.shape[:2]) > MSSSIM_MAX_SKIPPED_SIDE)
    if n_ms != results.get("n_ms_ssim_images"):
        failures.append(f"{n_ms} images qualify for MS-SSIM here, "
                        f"results.json says {results.get('n_ms_ssim_images')}")
    expected = sum(len(i["settings"]) for i in results["codecs"].values()) * len(originals)
    if len(points) != expected:
        failures.append(f"results.json has {len(points)} points, expected {expected} "
                        "(codecs x settings x images)")
    averages = average(points, results)
    failures += compare_averages(averages, results)
    bd_rows, bd_failures = bd_table(averages, results, anchor, args.tolerance)
    failures += bd_failures
    report, report_failures = check_report_md(results_dir, results)
    failures += report_failures
    if anchor != results.get("anchor"):
        print(f"note: anchor {anchor} differs from the run's ({results.get('anchor')}); "
              "harness BD-rates not compared")

    print_tables(points, averages, bd_rows, args.tolerance)
    doc = {
        "checked": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "results_dir": str(results_dir),
        "results_created": results.get("created"),
        "anchor": anchor,
        "tolerance_points": args.tolerance,
        "point_tolerance_db": {"psnr": PSNR_TOL_DB, "ms_ssim_db": MSSSIM_TOL_DB},
        "images": {name: str(args.images / Path(name).name) if args.images else
                   next(i.get("path") for i in results["images"] if i["name"] == name)
                   for name in originals},
        "method": {
            "rate": "8 * file bytes / pixels of the original",
            "psnr": "numpy, 8-bit RGB, all channels, 10*log10(255^2/MSE)",
            "ms_ssim": "pytorch_msssim.ms_ssim, data_range=255, float32 NCHW RGB, "
                       f"images with shorter side > {MSSSIM_MAX_SKIPPED_SIDE} px",
            "averaging": "mean bpp and PSNR per setting; MS-SSIM dB of the mean linear "
                         "MS-SSIM, rate = mean bpp over the same images",
            "classic_cubic": "numpy.polyfit of ln(rate) vs quality, degree min(3, n-1), "
                             "integrated over the shared quality range",
            "pchip": "bjontegaard.bd_rate(method='pchip')",
            "akima_own": "Akima (1970) Hermite spline of ln(rate) vs quality, written out here",
        },
        "versions": {k: _package_version(k) for k in
                     ("bjontegaard", "numpy", "pillow", "pillow-heif", "pillow-jxl-plugin",
                      "pytorch-msssim", "torch")},
        "points": points,
        "averages": averages,
        "bd_rate": bd_rows,
        "report_md": report,
        "failures": failures,
        "ok": not failures,
    }
    out = results_dir / "bdrate_check.json"
    out.write_text(json.dumps(doc, indent=1, allow_nan=False))
    print(f"\nwrote {out}")
    if failures:
        more = (f" (and {len(failures) - 1} more, see bdrate_check.json)"
                if len(failures) > 1 else "")
        print(f"verify_bdrate: FAIL: {failures[0]}{more}", file=sys.stderr)
        return 1
    compared = (f"{len(bd_rows)} BD-rates agree within {args.tolerance} points"
                if anchor == results.get("anchor")
                else f"BD-rates against {anchor} not compared (the run's anchor is "
                     f"{results.get('anchor')})")
    print(f"verify_bdrate: OK: {compared}; "
          f"{sum(1 for p in points if p.get('remeasured'))} points re-measured")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results_dir", type=Path, metavar="RESULTS_DIR")
    ap.add_argument("--images", type=Path, default=None,
                    help="directory of the original images (default: paths in results.json)")
    ap.add_argument("--anchor", default=None, help="anchor codec (default: the run's, hevc)")
    ap.add_argument("--tolerance", type=float, default=0.5,
                    help="allowed BD-rate difference, percentage points (default 0.5)")
    args = ap.parse_args(argv)
    try:
        return run(args)
    except CheckError as exc:
        print(f"verify_bdrate: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
