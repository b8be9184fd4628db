"""report.md: BD-rates against the HEVC anchor, timings, and what was run, for people to read."""

from __future__ import annotations

from pathlib import Path


def _pct(entry: dict | None) -> str:
    if not entry or entry.get("bd_rate") is None:
        return "n/a"
    return f"{entry['bd_rate']:+.1f}%"


def _range(entry: dict | None) -> str:
    if not entry or not entry.get("overlap"):
        return "no overlap"
    lo, hi = entry["overlap"]
    return f"{lo:.1f}-{hi:.1f}"


def _ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1000:.0f}"


def render_report(results: dict) -> str:
    """The Markdown report of a results.json document."""
    anchor = results["anchor"]
    codecs = results["codecs"]
    images = results["images"]
    lines = [
        "# Rate-distortion evaluation",
        "",
        f"{len(images)} image(s), {results['n_points']} points, written {results['created']}.",
        "Rate is the size of the whole file, 8 * bytes / pixels (bpp). PSNR is over 8-bit RGB;",
        "MS-SSIM is on RGB, in dB = -10 log10(1 - MS-SSIM), over the images with both sides",
        f"> 160 px ({results['n_ms_ssim_images']} of {len(images)}).",
        "",
        f"## BD-rate against the anchor, {codecs[anchor]['label'] if anchor in codecs else anchor}",
        "",
    ]
    if not results["bd_rate"]:
        lines += [f"The anchor ({anchor}) was not evaluated, so there are no BD-rates.", ""]
    else:
        lines += [
            "Negative: fewer bits than the anchor for the same quality (Akima interpolation,",
            "over the quality range both curves cover; n/a when they do not overlap).",
            "",
        ]
    lines += [
        "| codec | BD-rate PSNR | PSNR range (dB) | BD-rate MS-SSIM | MS-SSIM range (dB) "
        "| median encode (ms) | median decode (ms) |",
        "|---|---:|---|---:|---|---:|---:|",
    ]
    for name, info in codecs.items():
        bd = results["bd_rate"].get(name, {})
        t = results["median_times"].get(name, {})
        lines.append(
            f"| {info['label']} | {_pct(bd.get('psnr'))} | {_range(bd.get('psnr'))} "
            f"| {_pct(bd.get('ms_ssim_db'))} | {_range(bd.get('ms_ssim_db'))} "
            f"| {_ms(t.get('encode_s'))} | {_ms(t.get('decode_s'))} |"
        )
    lines.append("")
    lines += [
        "Times are wall-clock milliseconds of the codec's encode or decode call alone (in memory),",
        "codedvision's networks on one torch thread, the classical codecs with their libraries'",
        "own threading; medians over every image and setting.",
        "",
    ]
    refs = results.get("reference_bd_rate") or {}
    if refs:
        lines += [
            "## Published reference curves against our anchor",
            "",
            "Measured elsewhere on their own image set (Kodak for CompressAI's): meaningful only",
            "when this evaluation ran on the same images.",
            "",
            "| reference | BD-rate PSNR | BD-rate MS-SSIM |",
            "|---|---:|---:|",
        ]
        for name, bd in refs.items():
            lines.append(f"| {name} | {_pct(bd.get('psnr'))} | {_pct(bd.get('ms_ssim_db'))} |")
        lines.append("")
    lines += [
        "## Settings",
        "",
        "| codec | settings | bpp range | encoder options | version |",
        "|---|---|---|---|---|",
    ]
    for name, info in codecs.items():
        avg = results["averages"].get(name, [])
        bpps = [a["bpp"] for a in avg]
        span = f"{min(bpps):.3f}-{max(bpps):.3f}" if bpps else "n/a"
        settings = ", ".join(f"{s:g}" for s in info["settings"])
        lines.append(
            f"| {info['label']} | {info['setting_name']} {settings} | {span} "
            f"| {info['options']} | {info['version']} |"
        )
    lines.append("")
    if results["skipped"]:
        lines += ["## Not run", ""]
        lines += [f"- {name}: {why}" for name, why in results["skipped"].items()]
        lines.append("")
    shown = images if len(images) <= 40 else images[:40]
    lines += ["## Images", ""]
    lines += [f"- {im['name']} ({im['width']}x{im['height']})" for im in shown]
    if len(images) > len(shown):
        lines.append(f"- ... and {len(images) - len(shown)} more (see results.json)")
    lines.append("")
    sw = results["versions"]
    pk = ", ".join(f"{k} {v}" for k, v in sw["packages"].items() if v)
    lines += [
        "## Software",
        "",
        f"Python {sw['python']} on {sw['platform']}; {pk}.",
        f"codedvision source: {sw.get('codedvision_git') or 'not a git checkout / no commit'}.",
        "",
    ]
    return "\n".join(lines)


def write_report(path: Path, results: dict) -> Path:
    path = Path(path)
    path.write_text(render_report(results))
    return path
