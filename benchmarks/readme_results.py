"""Regenerate the README's Results section from the committed result files.

    python benchmarks/readme_results.py            # rewrites README.md between the markers

Reads results/kodak/results.json (from `codedvision evaluate`), results/caltech_val/results.json
and results/kodak_refine/results.json (if present) and their benchmarks/results/rate_gap_*.json,
benchmarks/results/codec_speed.json (and codec_speed_float32.json if present), benchmarks/results/train_throughput.json,
benchmarks/results/refine_gain*.json (if present), results/vision/vision_benchmark.json and
results/vision/table1.json (if present) and the shipped model's manifest. Numbers are printed
as measured; nothing is typed by hand.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from codedvision.config import ModelConfig  # noqa: E402
from codedvision.evaluate.codecs.learned import measured_model  # noqa: E402
START, END = "<!-- results:start -->", "<!-- results:end -->"
# the committed `codedvision evaluate` runs, in the README's order; kodak_refine is the slow
# opt-in codedvision-refine beside the plain codec and HEVC (release_candidate.sh skips it with
# KODAK_REFINE=0, and its table then says which model it measured)
RD_RUNS = (("results/kodak", "Kodak (24 images)"),
           ("results/caltech_val", "Caltech-101 val photos (not tuned on)"),
           ("results/kodak_refine", "Kodak with encoder-side refinement (`--refine 20`)"))


def _load(rel: str) -> dict | None:
    p = ROOT / rel
    return json.loads(p.read_text()) if p.exists() else None


def repo_path(path: Path) -> str:
    """A path as a committed result records it: relative to the repository when inside it, so
    the file does not depend on where the clone lives."""
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def _fmt(v, spec: str, none: str = "n/a") -> str:
    return none if v is None else format(v, spec)


def _pct(v) -> str:
    return "n/a" if v is None else f"{v:+.1f}%"


def _stale_note(res: dict, model_id: str | None) -> list[str]:
    """A line saying so when a committed run measured another model than the shipped one."""
    version = res.get("codecs", {}).get("codedvision", {}).get("version", "")
    if not model_id or measured_model(version) == model_id:
        return []
    return [f"Measured with an earlier model ({version}), not yet re-run for `{model_id}`.", ""]


def rd_section(res: dict, folder: str, title: str, model_id: str | None = None) -> list[str]:
    n = len(res["images"])
    lines = [f"### {title}", "", *_stale_note(res, model_id),
             f"{n} images; every point is the mean over the images of real file sizes and "
             f"decoded pixels. Full data: [`{folder}/results.json`]({folder}/results.json), "
             f"[report]({folder}/report.md), plots below. Times: codedvision's networks on one "
             "torch thread (the images run in parallel processes; Speed, below, uses both cores), "
             "the classical codecs with their libraries' own threading.", "",
             "| codec | BD-rate vs HEVC (PSNR) | BD-rate vs HEVC (MS-SSIM dB) | bpp range | PSNR range (dB) | median encode / decode (s) |",
             "|---|---|---|---|---|---|"]
    times = res.get("median_times", {})
    for name, avg in res["averages"].items():
        bd = res.get("bd_rate", {}).get(name, {})
        bpps = [a["bpp"] for a in avg]
        ps = [a["psnr"] for a in avg if a["psnr"] is not None]
        t = times.get(name, {})
        label = res["codecs"][name]["label"]
        lines.append(
            f"| {label} | {_pct(bd.get('psnr', {}).get('bd_rate'))} "
            f"| {_pct(bd.get('ms_ssim_db', {}).get('bd_rate'))} "
            f"| {min(bpps):.3f}-{max(bpps):.3f} | {min(ps):.2f}-{max(ps):.2f} "
            f"| {_fmt(t.get('encode_s'), '.3f')} / {_fmt(t.get('decode_s'), '.3f')} |")
    lines += ["", "A negative BD-rate means fewer bits than HEVC intra 4:4:4 (pillow-heif, x265, fixed QP) "
              "for the same quality, over the quality range both curves cover (n/a: no overlap).", ""]
    lines += gap_section(_load(f"benchmarks/results/rate_gap_{Path(folder).name}.json"))
    lines += [f"![RD PSNR]({folder}/rd_psnr.png) ![RD MS-SSIM]({folder}/rd_msssim.png)", ""]
    if (ROOT / folder / "side_by_side.png").exists():
        lines += [f"Side by side at a matched rate: [{folder}/side_by_side.png]({folder}/side_by_side.png)", ""]
    return lines


def gap_section(gap: dict | None) -> list[str]:
    """The per-quality split of codedvision's BD-rate (benchmarks/rate_gap.py), if measured."""
    if not gap:
        return []
    rows = gap["settings"]
    settings = [r["setting"] for r in rows["psnr"]]
    label = gap.get("label", "codedvision")
    codec = gap["codec"] + ("" if label == "codedvision" else f"; {label}")
    return [f"Where the bits go (`benchmarks/rate_gap.py`, {codec}): the extra rate over "
            f"{gap['anchor'].upper()} at the same quality, at each quality setting "
            f"(n/a: outside {gap['anchor'].upper()}'s range).", "",
            "| quality | " + " | ".join(str(q) for q in settings) + " |",
            "|---|" + "---|" * len(settings),
            *(f"| at equal {label} | "
              + " | ".join(_pct(r["extra_rate_percent"]) for r in rows[m]) + " |"
              for m, label in (("psnr", "PSNR"), ("ms_ssim_db", "MS-SSIM"))), ""]


def _warm_start(training: dict) -> str:
    w = training.get("warm_start")
    if not w:
        return ""
    extra = w.get("decoder_only_steps", 0)
    start = (f"model `{w['from_model']}`" if w.get("from_model") else
             "earlier runs of the same network, begun as a hierarchical PCA of the training "
             "patches" if w.get("from_init") == "pca" else "earlier runs of the same network")
    if w.get("its_steps") is None:  # a source that was gone at export
        return f", continuing {start}"
    return (f", continuing {start} ({w['its_steps']:,} steps"
            + (f") after {extra:,} steps that trained only its widened backward network ("
               if extra else "; ")
            + f"{training['steps'] + w['its_steps'] + extra:,} in all)")


def model_section(manifest: dict) -> list[str]:
    tr, cfg = manifest.get("training", {}), ModelConfig.from_dict(manifest["config"])
    backward = (f" (backward network {cfg.decoder_channels})"
                if cfg.decoder_channels != cfg.channels else "")
    entropy = cfg.entropy_model + (" (mean-scale)" if cfg.mean_scale else "") + (
        " with a checkerboard context" if cfg.checkerboard else "")
    lines = ["### The shipped model", "",
             f"Model `{manifest['model_id']}`: {manifest['parameters']:,} parameters, "
             f"{cfg.channels} channels{backward}, {cfg.fmaps} fMaps, "
             f"{entropy}; trained {tr.get('steps', '?'):,} steps of "
             f"{tr.get('batch', '?')} patches of {tr.get('patch', '?')}x{tr.get('patch', '?')} "
             f"on this 2-core CPU" + _warm_start(tr) + "."]
    kodak = manifest.get("kodak")
    if kodak:
        lines += ["", "| quality | bpp | PSNR (dB) | MS-SSIM | MS-SSIM (dB) |", "|---|---|---|---|---|"]
        for p in kodak:
            lines.append(f"| {p['setting']} | {p['bpp']:.3f} | {p['psnr']:.2f} | {p['ms_ssim']:.4f} "
                         f"| {p['ms_ssim_db']:.2f} |")
        lines += ["", "(Kodak, 24 images, means; from `results/kodak/results.json`.)"]
    return lines + [""]


def speed_section(speed: dict | None, thr: dict | None, recipe: dict | None,
                  speed_fp32: dict | None = None) -> list[str]:
    cpu = thr["cpu_capability"] if thr else "?"
    lines = [f"### Speed (this machine: 2 cores, {cpu}, no GPU)", ""]
    if speed:
        m = speed["median"]
        precision = f", transforms in {speed['precision']}" if "precision" in speed else ""
        lines.append(
            f"`benchmarks/codec_speed.py`, {speed['count']} Kodak images at quality "
            f"{speed['quality']:g}, {speed['threads']} threads{precision}, median per image: encode "
            f"{m['encode_s']:.2f} s, decode {m['decode_s']:.2f} s, entropy decoding to fMaps "
            f"only {m['fmaps_only_s']:.3f} s"
            + (f", only the first 32 fMaps (what a classifier head reads) "
               f"{m['first_group_s']:.3f} s" if "first_group_s" in m else "")
            + f" ({m['bpp']:.3f} bpp median).")
    if speed and speed_fp32 and speed_fp32.get("model_id") == speed["model_id"]:
        m = speed_fp32["median"]
        lines[-1] += (f" With the transforms in float32 (`--precision float32`): encode "
                      f"{m['encode_s']:.2f} s, decode {m['decode_s']:.2f} s "
                      f"({m['bpp']:.3f} bpp median).")
    if thr:
        parts = ", ".join(f"{k} {v:g}" for k, v in thr["patches_per_s"].items())
        lines.append("")
        lines.append(f"`benchmarks/train_throughput.py`, default config "
                     f"({thr['config']['channels']} channels), batch {thr['batch']}, "
                     f"128x128 patches unless said, patches/s: {parts}; data pipeline alone "
                     f"{thr['data_patches_per_s']:g} patches/s.")
    if recipe:
        parts = "; ".join(f"{v['name']}: {v['curve'][-1]['train_psnr']:.2f} dB"
                          for v in recipe["variants"])
        lines += ["", f"`benchmarks/train_recipe.py`, the autoencoder phase, training PSNR after "
                      f"{recipe['steps']} steps (same pixels per step): {parts} "
                      f"([plot](benchmarks/results/train_recipe.png))."]
    return lines + [""]


def _head_training(head_id: str, heads: list[dict]) -> str:
    """How a benchmarked head was trained, from the shipped head manifest with that id."""
    for h in heads:
        if h.get("head_id") == head_id:
            tc, c = h["training"]["train_config"], h["config"]
            how = ", windows of the fMap cache" if tc.get("fmap_cache") else ""
            reads = (f"the first {c['keep_fmaps']} fMaps" if c.get("keep_fmaps")
                     else "all fMaps" if c["input"] == "fmaps" else "the pixels")
            step, total = h["training"]["steps"], tc["steps"]
            steps = (f"{step:,} steps" if step == total
                     else f"the best validation, at step {step:,} of a {total:,}-step schedule")
            return (f"{head_id} ({c['channels']} wide, {c['units']} residual units, reads "
                    f"{reads}; {steps}, batches of {tc['batch']}{how})")
    return head_id


def vision_section(bench: dict | None, table1: dict | None, heads: list[dict] = ()) -> list[str]:
    if not bench and not table1:
        return []
    lines = ["### Vision task engine (Caltech-101 val)", ""]
    if bench:
        m, pts = bench["meta"], bench["points"]
        for r in pts:  # results written before the benchmark timed paths in a row
            r.setdefault("seconds_median_steady", {})
        by = {(r["path"], r["quality"]): r for r in pts}
        fm = [r for r in pts if r["path"] == "fmaps"]
        # the stated operating point: the fMaps quality whose bpp is nearest 0.4, among those
        # timed in a row when there are any (the benchmark does that at its first quality)
        timed = [r for r in fm if r["seconds_median_steady"]] or fm
        q = min(timed, key=lambda r: abs(r["bpp"] - 0.4))["quality"]
        rows = [by.get(("fmaps", q)), by.get(("decoded", q)), by.get(("jpeg", q)),
                by.get(("rgb", None))]
        counts = list(m.get("steady_threads", []))
        lines += [f"{m['images']} val photos scaled to a shorter side of {m['eval_side']} px, "
                  f"codec {m['codec_model_id']}, fMaps head "
                  f"{_head_training(m['heads']['fmaps'], heads)}, RGB head "
                  f"{_head_training(m['heads']['rgb'], heads)}"
                  + (f", JPEG path's RGB head trained on JPEG pixels "
                     f"{_head_training(m['heads']['jpeg'], heads)}"
                     if m["heads"].get("jpeg", m["heads"]["rgb"]) != m["heads"]["rgb"] else "")
                  + "; time is the median "
                  f"wall time per image from the file's bytes to the label, one image at a time: "
                  f"interleaved (the paths take turns image by image, torch on {m['threads']} "
                  f"thread{'s' if m['threads'] > 1 else ''}) and in a row (each path over all its "
                  f"files, as a service classifying a stream sees it) on "
                  f"{' or '.join(map(str, counts))} threads "
                  f"([`results/vision/vision_benchmark.json`](results/vision/vision_benchmark.json),"
                  f" `benchmarks/vision_benchmark.py`). At quality {q}:", "",
                  "| path | bpp | top-1 | mean per class | ms, interleaved | "
                  + " | ".join(f"ms in a row, {t} thread{'s' if t > 1 else ''}" for t in counts)
                  + " |",
                  "|---|---|---|---|---|" + "---|" * len(counts)]

        def ms(r: dict, t: int) -> str:
            v = r["seconds_median_steady"].get(str(t))
            return "-" if v is None else f"{v * 1000:.1f}"

        for r in rows:
            if r:
                lines.append(f"| {r['description']} | {r['bpp']:.3f} | {r['top1']:.3f} | "
                             f"{r['mean_class_accuracy']:.3f} | {r['seconds_median'] * 1000:.1f} | "
                             + " | ".join(ms(r, t) for t in counts) + " |")
        f, j, u = by.get(("fmaps", q)), by.get(("jpeg", q)), by.get(("rgb", None))
        if f and j and u:
            fs, js = f["seconds_median_steady"], j["seconds_median_steady"]
            per = "".join(f"; in a row with {t} thread{'s' if t > 1 else ''} "
                          f"{js[str(t)] / fs[str(t)]:.2f}x" for t in counts
                          if str(t) in fs and str(t) in js)
            best = (f"; each path at its own best thread count {min(js.values()) / min(fs.values()):.2f}x"
                    if fs and js else "")
            lines += ["", f"Compressed domain against uncompressed: {100 * (f['top1'] - u['top1']):+.1f} "
                      f"points top-1. File-to-label speed against JPEG decode-then-classify at "
                      f"about the same bpp: interleaved "
                      f"{j['seconds_median'] / f['seconds_median']:.2f}x{per}{best}."]
        lines += ["", "All qualities:", "", "| path | quality | bpp | top-1 | mean per class | ms, interleaved |",
                  "|---|---|---|---|---|---|"]
        for r in pts:
            lines.append(f"| {r['path']} | {_fmt(r['quality'], 'd', '-')} | {r['bpp']:.3f} | "
                         f"{r['top1']:.3f} | {r['mean_class_accuracy']:.3f} | "
                         f"{r['seconds_median'] * 1000:.1f} |")
        lines += ["", "![accuracy against bpp](results/vision/accuracy_vs_bpp.png)", ""]
    if table1:
        qs = sorted({int(k.rsplit("_q", 1)[1]) for r in table1["rows"] for k in r["per_quality"]})
        codec = table1["rows"][0].get("codec_model_id", "?")
        lines += [f"Accuracy against the number of fMaps and quantization (Table 1 analog, codec "
                  f"{codec}{'' if not bench or codec == bench['meta']['codec_model_id'] else ', an earlier release'}, "
                  f"`benchmarks/vision_table1.py`, [`results/vision/table1.json`]"
                  f"(results/vision/table1.json)): one head per row, {table1['steps_per_head']} "
                  "training steps each, accuracy at the end of training (quantized: mean over "
                  f"qualities {', '.join(map(str, qs))}).", "",
                  "| fMaps | quantized | top-1 | mean per class |", "|---|---|---|---|"]
        for r in table1["rows"]:
            lines.append(f"| {r['fmaps']} | {'yes' if r['quantized'] else 'no'} | "
                         f"{r['val_top1']:.3f} | {r['val_mean_class']:.3f} |")
        lines.append("")
    return lines


def refine_section(runs: list[dict], model_id: str | None) -> list[str]:
    """Encoder-side refinement (benchmarks/refine_gain.py): one table per result file of the
    shipped model (files of other models are stale and left out)."""
    runs = [r for r in runs if model_id and str(r.get("model", "")).startswith(model_id)]
    if not runs:
        return []
    lines = ["### Encoder-side refinement (`--refine`)", ""]
    for r in runs:
        lines.append(
            f"`benchmarks/refine_gain.py --steps {r['steps']}` (step size {r.get('lr', 'n/a')}), "
            f"{r['images']}, real files, "
            f"{r['threads']} thread{'s' if r['threads'] > 1 else ''}, transforms in "
            f"{r['precision']}; BD-rate (PSNR) of the refined files against the plain ones: "
            f"{_pct(r['bd_rate_psnr_refined_vs_plain'])}.")
        lines += ["", "| quality | bpp | PSNR (dB) | encode (s) | bpp, refined | PSNR, refined "
                  "(dB) | encode, refined (s) |", "|---|---|---|---|---|---|---|"]
        for a, b in zip(r["plain"], r["refined"]):
            lines.append(f"| {a['quality']} | {a['bpp']:.4f} | {a['psnr']:.2f} | "
                         f"{a['seconds']:.2f} | {b['bpp']:.4f} | {b['psnr']:.2f} | "
                         f"{b['seconds']:.2f} |")
        lines.append("")
    return lines


def main() -> None:
    argparse.ArgumentParser(description=__doc__.strip().splitlines()[0]).parse_args()
    lines: list[str] = []
    manifest = _load("codedvision/models/default/manifest.json")
    if manifest:
        lines += model_section(manifest)
    for folder, title in RD_RUNS:
        res = _load(f"{folder}/results.json")
        if res:
            lines += rd_section(res, folder, title, (manifest or {}).get("model_id"))
    lines += speed_section(_load("benchmarks/results/codec_speed.json"),
                           _load("benchmarks/results/train_throughput.json"),
                           _load("benchmarks/results/train_recipe.json"),
                           _load("benchmarks/results/codec_speed_float32.json"))
    refine_runs = [json.loads(p.read_text())
                   for p in sorted((ROOT / "benchmarks" / "results").glob("refine_gain*.json"))]
    lines += refine_section(refine_runs, (manifest or {}).get("model_id"))
    heads = [_load(f"codedvision/models/classifier-{k}/manifest.json") for k in ("fmaps", "rgb")]
    heads.append(_load("benchmarks/models/classifier-rgb-jpeg/manifest.json"))
    lines += vision_section(_load("results/vision/vision_benchmark.json"),
                            _load("results/vision/table1.json"), [h for h in heads if h])
    readme = (ROOT / "README.md").read_text()
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    (ROOT / "README.md").write_text(head + START + "\n" + "\n".join(lines) + END + tail)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
