"""Writing what an evaluation produced: results.json, RD plots, side-by-side crops, report.md."""

from __future__ import annotations

import json
import re
from pathlib import Path

from .codecs import get_codec
from .plots import plot_rd
from .report import write_report
from .images import load_rgb
from .side_by_side import choose_panels, render
from .summary import curve

RD_PLOTS = {"psnr": "rd_psnr.png", "ms_ssim_db": "rd_msssim.png"}


def _title(results: dict, what: str) -> str:
    n = len(results["images"])
    return f"{what}: mean of {n} image{'s' if n != 1 else ''} per setting"


def write_rd_plots(out: Path, results: dict, references: list[dict]) -> dict[str, str]:
    """rd_psnr.png and rd_msssim.png: one solid curve per codec, published ones dashed."""
    files = {}
    for metric, filename in RD_PLOTS.items():
        curves = []
        for name, avg in results["averages"].items():
            bpp, values = curve(avg, metric)
            curves.append({"label": results["codecs"][name]["label"], "bpp": bpp, "values": values})
        refs = [
            {"label": r["label"], "bpp": r["bpp"], "values": r[metric]}
            for r in references
            if r[metric] is not None
        ]
        plot_rd(out / filename, metric, curves, refs, _title(results, "Rate-distortion"))
        files[metric] = filename
    return files


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "image"


def write_per_image_plots(out: Path, results: dict) -> list[str]:
    """per_image/<image>_psnr.png (and _msssim.png where MS-SSIM applies) for every image."""
    written = []
    for im in results["images"]:
        pts = [p for p in results["points"] if p["image"] == im["name"]]
        for metric, suffix in (("psnr", "psnr"), ("ms_ssim_db", "msssim")):
            if all(p[metric] is None for p in pts):
                continue  # small image: MS-SSIM not applicable
            curves = []
            for name, info in results["codecs"].items():
                mine = [p for p in pts if p["codec"] == name]
                curves.append({"label": info["label"], "bpp": [p["bpp"] for p in mine],
                               "values": [p[metric] for p in mine]})
            rel = f"per_image/{_safe(str(Path(im['name']).with_suffix('')))}_{suffix}.png"
            plot_rd(out / rel, metric, curves, (), f"{im['name']} ({im['width']}x{im['height']})")
            written.append(rel)
    return written


def write_side_by_side(out: Path, results: dict) -> dict:
    """side_by_side.png for the first image; returns what was shown (for results.json)."""
    im = results["images"][0]
    points: dict[str, list[dict]] = {}
    for p in results["points"]:
        if p["image"] == im["name"]:
            points.setdefault(p["codec"], []).append(p)
    target, chosen = choose_panels(points)
    panels = []
    for p in chosen:
        codec = get_codec(p["codec"])
        decoded = codec.decode((out / p["file"]).read_bytes())
        quality = "identical" if p["psnr"] is None else f"{p['psnr']:.2f} dB"
        lines = [
            codec.label,
            codec.describe_setting(p["setting"]),
            f"{p['bpp']:.3f} bpp, {quality}",
        ]
        panels.append((decoded, lines))
    render(out / "side_by_side.png", load_rgb(Path(im["path"])), panels)
    return {
        "file": "side_by_side.png",
        "image": im["name"],
        "target_bpp": target,
        "panels": [{k: p[k] for k in ("codec", "setting", "bpp", "psnr")} for p in chosen],
    }


def write_outputs(out: Path, results: dict, references: list[dict], per_image: bool) -> dict:
    """Write every output file into out; returns results with their names under "files"."""
    files: dict = {"rd_plots": write_rd_plots(out, results, references)}
    if per_image:
        files["per_image"] = write_per_image_plots(out, results)
    results["side_by_side"] = write_side_by_side(out, results)
    files["report"] = "report.md"
    files["results"] = "results.json"
    results["files"] = files
    # allow_nan=False: the file must stay strict JSON for other tools (no Infinity/NaN).
    (out / "results.json").write_text(json.dumps(results, indent=1, allow_nan=False))
    write_report(out / "report.md", results)
    return results
