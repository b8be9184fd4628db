"""The `codedvision` command line. Every command has --help.

Errors are one line on stderr (`error: ...`) and a non-zero exit status; in batch use the other
files still complete and the summary counts the failures.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

import click

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm",
                  ".gif", ".heic", ".heif", ".avif", ".jxl"}


class CLIError(click.ClickException):
    def show(self, file=None) -> None:
        click.echo(f"error: {self.message}", err=True)


def _fail(msg: str) -> None:
    raise CLIError(msg)


def _load_codec(model: str | None):
    from .codec import load
    from .precision import resolve

    try:
        resolve()  # a bad $CODEDVISION_PRECISION is the user's setting, not the model's fault
    except ValueError as e:
        _fail(str(e))
    try:
        return load(model)
    except FileNotFoundError as e:
        _fail(str(e))
    except Exception as e:  # a damaged release: say which, in one line
        _fail(f"cannot load model {model or '(default)'}: {e}")


def _expand(inputs: tuple[str, ...], suffixes: set[str]) -> tuple[list[Path], bool]:
    """Files named on the command line, directories expanded (not recursive).
    Returns (files, batch) where batch is True when outputs go into a folder."""
    files: list[Path] = []
    batch = len(inputs) > 1
    for s in inputs:
        p = Path(s)
        if p.is_dir():
            batch = True
            found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in suffixes)
            if not found:
                click.echo(f"warning: {p}: no files with suffix {', '.join(sorted(suffixes))}",
                           err=True)
            files += found
        else:
            files.append(p)
    return files, batch


def _plan_outputs(files: list[Path], out: str | None, batch: bool, suffix: str) -> list[Path]:
    if out is not None and not batch and not out.endswith(("/", "\\")) and not Path(out).is_dir():
        return [Path(out)]
    folder = Path(out) if out is not None else None
    if folder is not None and (folder.is_file() or (
            not folder.exists() and folder.suffix.lower() in IMAGE_SUFFIXES | {".cvz"})):
        _fail(f"-o {out}: several inputs need an output folder, not a file name")
    return [(folder or f.parent) / (f.stem + suffix) for f in files]


def _run_batch(files: list[Path], outputs: list[Path], job, verb: str, force: bool) -> None:
    """Run job(src, dst) -> (bytes_in, bytes_out, extra) for each pair with a progress bar.

    Refuses, per file, an output that exists (unless force), that is an input, or that another
    input of this run already wrote."""
    from tqdm import tqdm

    inputs = {f.resolve() for f in files}
    seen: dict[Path, Path] = {}
    failed, done, total_in, total_out = 0, 0, 0, 0
    t0 = time.perf_counter()
    show_bar = len(files) > 1
    bar = tqdm(list(zip(files, outputs)), unit="file", file=sys.stderr, leave=False,
               disable=None if show_bar else True)  # None: only on a terminal
    for src, dst in bar:
        try:
            key = dst.resolve()
            if key in inputs:
                raise ValueError(f"output {dst} would overwrite an input")
            if key in seen:
                raise ValueError(f"output {dst} already written from {seen[key]} in this run")
            seen[key] = src
            if dst.exists() and not force:
                raise FileExistsError(f"{dst} exists (use --force to overwrite)")
            n_in, n_out, extra = job(src, dst)
            total_in += n_in
            total_out += n_out
            done += 1
            msg = f"{src} -> {dst} ({n_in:,} -> {n_out:,} bytes{extra})"
            (bar.write(msg, file=sys.stderr) if show_bar else click.echo(msg, err=True))
        except KeyboardInterrupt:
            raise
        except Exception as e:  # one bad file must not stop the batch
            failed += 1
            msg = _file_error(src, e)
            (bar.write(msg, file=sys.stderr) if show_bar else click.echo(msg, err=True))
    bar.close()
    if show_bar or failed:
        click.echo(f"{verb} {done} of {len(files)} file(s) in {time.perf_counter() - t0:.1f} s, "
                   f"{total_in:,} -> {total_out:,} bytes" + (f"; {failed} failed" if failed else ""),
                   err=True)
    if failed:
        sys.exit(1)


def _one_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def _file_error(path: Path, e: Exception) -> str:
    """'error: PATH: reason', naming the file once even when the reason already does."""
    msg = _one_line(e)
    return f"error: {msg if msg.startswith(str(path)) else f'{path}: {msg}'}"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="codedvision")
def main() -> None:
    """codedvision: learned image compression whose files can be understood without decoding."""


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", "out", help="Output file (one input) or folder (several inputs "
              "or a folder). Default: beside each input, as <stem>.cvz.")
@click.option("-q", "--quality", type=click.FloatRange(0, 100), default=None,
              help="0 (smallest) .. 100 (best). Default 75.")
@click.option("--bpp", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Target rate: pick per image the highest quality whose file is at most this "
                   "many bits per pixel (quality 0, with a note, if none is).")
@click.option("-f", "--force", is_flag=True, help="Overwrite existing output files.")
@click.option("--refine", type=click.IntRange(min=0), default=0, show_default=True,
              help="Optimise each picture's fMaps for N steps against the decoder before "
              "coding: smaller or better files, each step costing about four decodes' time "
              "(with --bpp, at each quality the search tries, up to 8).")
@click.option("--model", type=click.Path(), default=None, help="Model folder (default: shipped).")
def compress(inputs, out, quality, bpp, force, refine, model):
    """Compress images (PNG, JPEG, ...) to .cvz files."""
    from .images import InputError, atomic_write

    if quality is not None and bpp is not None:
        _fail("give --quality or --bpp, not both")
    files, batch = _expand(inputs, IMAGE_SUFFIXES)
    if not files:
        _fail("no input images")
    outputs = _plan_outputs(files, out, batch, ".cvz")
    codec = _load_codec(model)
    if refine and not codec.hyper:
        _fail("--refine needs a model with a hyperprior (its rate estimate)")

    def job(src: Path, dst: Path):
        if _is_cvz(src):  # decoding and coding again would lose quality a second time
            raise InputError("already a .cvz file (decompress it first to code it again)")
        res = codec.encode_ex(src, quality=75 if quality is None else quality, bpp=bpp,
                              refine=refine)
        atomic_write(dst, res.data, force=force)
        w, h = _size_of(codec, res.data)
        notes = "".join(f"; {n}" for n in res.notes)
        return src.stat().st_size, len(res.data), (
            f", {len(res.data) * 8 / (w * h):.3f} bpp, quality {res.quality}{notes}")

    _run_batch(files, outputs, job, "compressed", force)


def _size_of(codec, data: bytes) -> tuple[int, int]:
    h = codec.header(data)
    return h.width, h.height


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", "out", help="Output image (one input; its extension picks the "
              "format) or folder (PNG files). Default: beside each input, as <stem>.png.")
@click.option("-f", "--force", is_flag=True, help="Overwrite existing output files.")
@click.option("--model", type=click.Path(), default=None, help="Model folder (default: shipped).")
def decompress(inputs, out, force, model):
    """Decompress .cvz files to images."""
    from .images import atomic_write

    files, batch = _expand(inputs, {".cvz"})
    if not files:
        _fail("no input files")
    outputs = _plan_outputs(files, out, batch, ".png")
    _check_image_name(outputs[0])
    codec = _load_codec(model)

    def job(src: Path, dst: Path):
        data = _read(src)
        image = codec.decode(data)
        atomic_write(dst, image=image, force=force)
        return len(data), dst.stat().st_size, ""

    _run_batch(files, outputs, job, "decompressed", force)


def _check_image_name(path: Path) -> None:
    """An output image's name must say its format (and not be .cvz): refuse before any work."""
    from .images import InputError, image_format

    try:
        image_format(path)
    except InputError as e:
        _fail(_one_line(e))


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"no such file") from None
    except IsADirectoryError:
        raise IsADirectoryError("is a directory") from None


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="One JSON object per file.")
def info(inputs, as_json):
    """Show the header of .cvz files (or of the .cvz files in folders): size, quality, bpp, model."""
    from .container import FormatError, read_header
    from .release import DEFAULT_MODEL_DIR

    default_id = None
    manifest = DEFAULT_MODEL_DIR / "manifest.json"
    if manifest.exists():
        default_id = json.loads(manifest.read_text()).get("model_id")
    failed = 0
    for p in _expand(inputs, {".cvz"})[0]:  # folders: their .cvz files
        try:
            data = _read(p)
            header, start, length = read_header(data)
            rec = {
                "file": str(p), "bytes": len(data), "width": header.width,
                "height": header.height, "quality": header.quality,
                "bpp": round(len(data) * 8 / (header.width * header.height), 5),
                "header_bytes": start, "payload_bytes": length,
                "model_id": header.model_id.hex(),
                "default_model": header.model_id.hex() == default_id,
            }
        except (OSError, FormatError) as e:
            failed += 1
            click.echo(f"error: {p}: {_one_line(e)}", err=True)
            continue
        if as_json:
            click.echo(json.dumps(rec))
        else:
            click.echo(f"{p}: {rec['width']}x{rec['height']}, quality {rec['quality']}, "
                       f"{rec['bytes']:,} bytes ({rec['header_bytes']} header), "
                       f"{rec['bpp']:.4f} bpp, model {rec['model_id']}"
                       + (" (shipped default)" if rec["default_model"] else ""))
    if failed:
        sys.exit(1)


def _is_cvz(path: Path) -> bool:
    from .container import MAGIC

    try:
        with open(path, "rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except OSError:
        return path.suffix.lower() == ".cvz"


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-k", "--top-k", type=click.IntRange(1), default=5, show_default=True,
              help="How many labels to print per file.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per file.")
@click.option("--head", type=click.Path(), default=None,
              help="fMaps classifier head folder for .cvz files (default: shipped).")
@click.option("--rgb-head", type=click.Path(), default=None,
              help="RGB classifier head folder for ordinary images, the decode-then-classify "
                   "baseline (default: shipped).")
@click.option("--model", type=click.Path(), default=None,
              help="Codec model folder for .cvz files (default: shipped).")
def classify(inputs, top_k, as_json, head, rgb_head, model):
    """Classify images: .cvz files straight from their fMaps (entropy decoding + classifier, no
    pixel decoding); JPEG, PNG, ... with the RGB classifier."""
    from .vision.classify import Classifier, VisionError
    from .vision.release import load as load_head

    files, _ = _expand(inputs, {".cvz"} | IMAGE_SUFFIXES)
    if not files:
        _fail("no input files")
    failed = 0
    for f in [f for f in files if not f.is_file()]:  # reported now, so a head is not demanded
        failed += 1
        click.echo(f"error: {f}: {'is a directory' if f.is_dir() else 'no such file'}", err=True)
    files = [f for f in files if f.is_file()]
    if not files:
        sys.exit(1)
    kinds = [_is_cvz(f) for f in files]

    def _head(path, kind, needed):
        if path is None and not needed:
            return None  # no file of this kind: its (shipped) head is not loaded
        try:
            return load_head(path, kind)
        except (OSError, ValueError, KeyError) as e:
            _fail(_one_line(e))

    fmaps_head = _head(head, "fmaps", True in kinds)
    image_head = _head(rgb_head, "rgb", False in kinds)
    codec = _load_codec(model) if fmaps_head is not None else None
    try:
        clf = Classifier(codec, fmaps_head, image_head, top_k)
    except VisionError as e:
        _fail(_one_line(e))
    total = len(files) + failed
    for f in files:
        try:
            rec = clf.classify_file(f)
        except (OSError, ValueError) as e:
            failed += 1
            click.echo(_file_error(f, e), err=True)
            continue
        for note in rec["notes"]:
            click.echo(f"note: {f}: {note}", err=True)
        if as_json:
            click.echo(json.dumps(rec))
        else:
            labels = ", ".join(f"{t['label']} {t['probability']:.3f}" for t in rec["top"])
            click.echo(f"{f}: {labels}  ({'fMaps' if rec['input'] == 'fmaps' else 'RGB'}, "
                       f"{rec['seconds'] * 1000:.0f} ms)")
    if failed:
        if total > 1:
            click.echo(f"classified {total - failed} of {total} file(s); {failed} failed",
                       err=True)
        sys.exit(1)


@main.command()
@click.argument("input_file", metavar="FILE.cvz", type=click.Path())
@click.option("-o", "--output", "out", required=True, type=click.Path(dir_okay=False),
              help="Image to write (PNG; the extension picks the format).")
@click.option("-f", "--force", is_flag=True, help="Overwrite an existing output file.")
@click.option("--channels", type=click.IntRange(1), default=None,
              help="Show only the N channels with the largest variance (default: all).")
@click.option("--model", type=click.Path(), default=None, help="Model folder (default: shipped).")
def show(input_file, out, force, channels, model):
    """Write a grid of the fMap channels of a .cvz file (entropy decoding only) to an image."""
    from .container import FormatError
    from .images import InputError
    from .vision.show import show as show_fmaps

    src, dst = Path(input_file), Path(out)
    _check_image_name(dst)
    if dst.exists() and dst.resolve() == src.resolve():
        _fail(f"output {dst} would overwrite the input")
    try:
        data = _read(src)
    except OSError as e:
        _fail(f"{src}: {_one_line(e)}")
    codec = _load_codec(model)
    try:
        res = show_fmaps(data, dst, codec, channels=channels, force=force)
    except (OSError, FormatError, InputError, ValueError) as e:
        _fail(f"{src}: {_one_line(e)}")
    h, w = res["fmap_size"]
    click.echo(f"{src} -> {dst} ({res['channels']} fMap channels of {w}x{h}, "
               f"{res['size'][0]}x{res['size'][1]} px)", err=True)


@main.command()
@click.option("-o", "--output", "out", default="codedvision-demo", show_default=True,
              help="Folder for the demo's files (its own files there are replaced).")
@click.option("-q", "--quality", type=click.FloatRange(0, 100), default=75, show_default=True)
def demo(out, quality):
    """Compress and decompress the shipped sample photo; print size, bpp, PSNR, MS-SSIM, times."""
    from .demo import run_demo

    if Path(out).exists() and not Path(out).is_dir():
        _fail(f"-o {out}: exists and is not a folder")
    try:
        run_demo(Path(out), quality)
    except (OSError, ValueError) as e:  # e.g. a bad $CODEDVISION_PRECISION
        _fail(_one_line(e))


@main.command()
@click.option("--images", required=True, type=click.Path(exists=True),
              help="Folder of images (or one image).")
@click.option("--out", required=True, type=click.Path(), help="Output folder.")
@click.option("--codecs", default=None,
              help="Comma-separated codec names (default: all available except the slow "
              "opt-in ones, vvc and codedvision-refine).")
@click.option("--qualities", multiple=True, help="'10,50,90' for codedvision, or 'jpeg=10,50' "
              "for any codec; repeatable.")
@click.option("--jobs", type=click.IntRange(1), default=1, show_default=True)
@click.option("--reference", type=click.Path(exists=True), default=None,
              help="Folder of published RD points (JSON) to draw on the plots.")
@click.option("--per-image", is_flag=True, help="Also plot each image's curves.")
def evaluate(images, out, codecs, qualities, jobs, reference, per_image):
    """Rate-distortion evaluation against classical codecs: JSON, plots, BD-rate report."""
    from .evaluate import parse_settings, run_evaluation

    try:
        res = run_evaluation(
            Path(images), Path(out),
            codecs=[c.strip() for c in codecs.split(",") if c.strip()] if codecs else None,
            settings=parse_settings(qualities) if qualities else None,
            jobs=jobs, reference=Path(reference) if reference else None, per_image=per_image,
        )
    except ValueError as e:
        _fail(_one_line(e))
    averages = res.get("averages", {})
    click.echo(f"wrote {Path(out) / 'results.json'}, {Path(out) / 'report.md'} "
               f"({sum(map(len, averages.values()))} averaged points, {len(averages)} codecs)")


def _run_options(f):
    """--run-dir, --resume and --steps: the options every resumable training command takes."""
    f = click.option("--steps", type=click.IntRange(1), default=None,
                     help="Total steps (on --resume: extend or shorten the schedule).")(f)
    f = click.option("--resume", is_flag=True,
                     help="Continue the run in --run-dir bit for bit.")(f)
    return click.option("--run-dir", required=True, type=click.Path(file_okay=False),
                        help="Folder for checkpoints and logs (keep it outside git).")(f)


@main.group()
def train():
    """Train codecs and classifier heads; export released models."""


@train.command("codec")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False),
              default=None, help="JSON TrainConfig (default: the built-in recipe).")
@click.option("--preset", type=click.Choice(["default", "paper"]), default=None,
              help="A built-in recipe: 'default' (ours: one variable-rate model) or 'paper' "
                   "(a fixed-rate snapshot per lambda; then 'train hull').")
@_run_options
@click.option("--minutes", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Stop (with a checkpoint) after this many minutes.")
@click.option("--init-from", type=click.Path(exists=True), default=None,
              help="Start from these weights (a checkpoint.pt or a model folder) with a fresh "
                   "optimiser and schedule; the same network, except that other lambdas (gains "
                   "are carried over), wider networks (channels, backward_channels), more "
                   "forward_half_units, a mean-scale hyperprior and a checkerboard context "
                   "are allowed.")
@click.option("--ema-decay", type=click.FloatRange(0, 1, max_open=True), default=None,
              help="Keep a moving average of the weights with this decay per step (e.g. "
                   "0.999; 0: none) and validate, checkpoint and export it. May be added on "
                   "--resume: the training itself is unchanged.")
def train_codec(config_path, preset, run_dir, resume, steps, minutes, init_from, ema_decay):
    """Train a codec (resumable; logs to RUN_DIR/log.csv)."""
    from .train.codec import PRESETS, TrainConfig, Trainer, TrainingDiverged

    if config_path and preset:
        _fail("give --config or --preset, not both")
    if resume and init_from:
        _fail("--resume continues the run's own weights; --init-from starts a new run")
    try:
        cfg = PRESETS[preset or "default"]()
        if config_path:
            cfg = TrainConfig.from_dict(json.loads(Path(config_path).read_text()))
        if init_from:
            cfg = dataclasses.replace(cfg, init_from=str(Path(init_from).resolve()))
        trainer = Trainer(cfg, Path(run_dir), resume=resume, steps=steps, ema_decay=ema_decay)
    except (OSError, ValueError, json.JSONDecodeError) as e:
        _fail(_one_line(e))
    try:
        trainer.run(max_minutes=minutes)
    except TrainingDiverged as e:
        _fail(_one_line(e))
    click.echo(f"stopped at step {trainer.step}; checkpoint {Path(run_dir) / 'checkpoint.pt'}"
               + (f" (step {trainer.checkpoint_step})"
                  if trainer.checkpoint_step != trainer.step else ""))


@train.command("hull")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print hull.json instead of a table.")
def train_hull(run_dir, as_json):
    """Pick the paper-preset snapshots on the lower convex RD hull (writes RUN_DIR/hull.json)."""
    from .train.hull import select_snapshots

    try:
        res = select_snapshots(Path(run_dir))
    except (OSError, ValueError, KeyError) as e:
        _fail(_one_line(e))
    if as_json:
        click.echo(json.dumps(res, indent=2))
        return
    click.echo(f"{'lambda':>8} {'step':>7} {'bpp':>7} {'PSNR':>7}  hull  snapshot")
    for r in res["snapshots"]:
        click.echo(f"{r['lambda']:>8.5f} {r['step']:>7} {r['val_bpp']:>7.3f} {r['val_psnr']:>7.2f}"
                   f"  {'yes ' if r['on_hull'] else '    '}  {r['snapshot']}")
    click.echo("export one with: codedvision train export SNAPSHOT -o DIR")


def _export_command(name: str, writes: str):
    """A `train` subcommand that turns a CHECKPOINT into a folder (-o, --force)."""
    def decorate(f):
        f = click.option("-f", "--force", is_flag=True, help="Replace an existing folder.")(f)
        f = click.option("-o", "--output", "out", required=True, type=click.Path(file_okay=False),
                         help=f"Folder to write ({writes}).")(f)
        f = click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False))(f)
        return train.command(name)(f)
    return decorate


@_export_command("export", "model.safetensors + manifest.json")
def train_export(checkpoint, out, force):
    """Turn a training checkpoint into a released model the codec loads directly."""
    from .train.export import export_checkpoint

    try:
        manifest = export_checkpoint(Path(checkpoint), Path(out), force=force)
    except (OSError, ValueError, KeyError) as e:
        _fail(_one_line(e))
    if manifest["fmap_order"]["by"].startswith("as trained (training patches not found"):
        click.echo("note: the training patches were not found, so the fMaps are not sorted "
                   "most-spread first: classifier heads on the first fMaps will do worse", err=True)
    click.echo(f"exported model {manifest['model_id']} to {out}")


@train.command("classifier")
@click.option("--data", type=click.Path(exists=True, file_okay=False), default=None,
              help="Image folder: a folder per class, or with a labels CSV (DATA/labels.csv is "
                   "used when present).")
@click.option("--labels", type=click.Path(exists=True, dir_okay=False), default=None,
              help="CSV with columns relative_path,label,split (train/val), paths relative to "
                   "--data; class order from DATA/classes.txt when present.")
@_run_options
@click.option("--minutes", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Stop (with a checkpoint and a validation) after this many minutes.")
@click.option("--input", "input_kind", type=click.Choice(["fmaps", "rgb"]), default=None,
              help="fmaps: the compressed-domain head (default); rgb: the decode-then-classify "
                   "baseline.")
@click.option("--degrade", type=click.Choice(["none", "jpeg", "codec"]), default=None,
              help="rgb heads: train and validate on JPEG-decoded or codec-decoded pixels.")
@click.option("--quality-range", default=None, metavar="LO-HI",
              help="Training qualities, e.g. 0-100 (fMaps) or 5-95 (--degrade jpeg), or one Q.")
@click.option("--model", type=click.Path(), default=None,
              help="Codec model folder whose fMaps the head reads (default: shipped).")
@click.option("--cache-fmaps", is_flag=True,
              help="fMaps heads: compute the frozen forward net's fMaps of every training "
                   "image once (at both ends of the resize range, mirrored; ~0.15 MB of memory "
                   "per image) and train on windows of them, ~5x faster per step.")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False),
              default=None, help="JSON HeadTrainConfig; the options above override it.")
def train_classifier(data, labels, run_dir, resume, steps, minutes, input_kind, degrade,
                     quality_range, model, cache_fmaps, config_path):
    """Train a classifier head on a frozen codec (resumable; logs to RUN_DIR/log.csv, keeps the
    best head by val top-1 in RUN_DIR/best.pt)."""
    from .vision.train import HeadTrainConfig, HeadTrainer

    overrides = {"data": data, "labels": labels, "input": input_kind, "degrade": degrade,
                 "codec": model}
    given = [k for k, v in overrides.items() if v is not None]
    if resume and (given or quality_range or cache_fmaps or config_path):
        _fail("--resume continues with the run's saved config; give only --run-dir, --steps, "
              "--minutes")
    try:
        cfg = HeadTrainConfig()
        if config_path:
            cfg = HeadTrainConfig.from_dict(json.loads(Path(config_path).read_text()))
        elif data is None and not resume:
            _fail("--data is required (a folder per class, or a folder with labels.csv)")
        changes = {k: str(Path(overrides[k]).resolve()) if k in ("data", "labels", "codec")
                   else overrides[k] for k in given}
        if quality_range:
            changes["quality_range"] = _parse_range(quality_range)
        if cache_fmaps:
            changes["fmap_cache"] = list(cfg.resize)
        if changes:
            cfg = HeadTrainConfig.from_dict({**cfg.to_dict(), **changes})
        trainer = HeadTrainer(cfg, Path(run_dir), resume=resume, steps=steps)
    except (OSError, ValueError, json.JSONDecodeError) as e:
        _fail(_one_line(e))
    if not resume:
        click.echo(f"data: {trainer.data.describe()}; head {trainer.head_cfg.input}, "
                   f"{trainer.head.num_parameters():,} parameters; codec "
                   f"{trainer.codec.model_id.hex()}", err=True)
    trainer.run(max_minutes=minutes)
    best = trainer.best or {}
    click.echo(f"stopped at step {trainer.step}; best val top-1 {best.get('val_top1', 0):.4f} "
               f"at step {best.get('step')}; {Path(run_dir) / 'best.pt'}")


def _parse_range(text: str) -> tuple[int, int]:
    try:
        parts = [int(p) for p in text.split("-")]
    except ValueError:
        raise ValueError(f"--quality-range: expected LO-HI or Q, got {text!r}") from None
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2:
        raise ValueError(f"--quality-range: expected LO-HI or Q, got {text!r}")
    return parts[0], parts[1]


@_export_command("export-head", "head.safetensors + manifest.json")
def train_export_head(checkpoint, out, force):
    """Turn a classifier checkpoint (RUN_DIR/best.pt) into a head `classify --head` loads."""
    from .vision.train import export_head_checkpoint

    try:
        manifest = export_head_checkpoint(Path(checkpoint), Path(out), force=force)
    except (OSError, ValueError, KeyError) as e:
        _fail(_one_line(e))
    val = (manifest.get("val") or {}).get("val_top1")
    click.echo(f"exported {manifest['config']['input']} head {manifest['head_id']} "
               f"({len(manifest['classes'])} classes"
               + (f", val top-1 {val:.4f}" if val is not None else "") + f") to {out}")


if __name__ == "__main__":  # pragma: no cover
    main()
