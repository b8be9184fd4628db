"""The `codedvision` command line: single files, batches, errors, info, demo, help.

Most tests run the CLI in-process (click's CliRunner) with the tiny model; a few run it as a
real process to see exactly what a user sees on stderr.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from PIL import Image

from codedvision.cli import main

from conftest import synthetic


@pytest.fixture
def run(tiny_model_dir):
    """run(*args, model=True) -> click Result; passes --model <tiny> to (de)compress."""
    runner = CliRunner()

    def _run(*args, model: bool = True):
        args = [str(a) for a in args]
        if model and args and args[0] in ("compress", "decompress"):
            args += ["--model", str(tiny_model_dir)]
        return runner.invoke(main, args, catch_exceptions=False)

    return _run


@pytest.fixture
def images(tmp_path) -> list[Path]:
    """Three small PNGs in tmp_path/in."""
    folder = tmp_path / "in"
    folder.mkdir()
    paths = []
    for i, (w, h) in enumerate([(40, 30), (17, 33), (64, 48)]):
        p = folder / f"img{i}.png"
        synthetic(w, h, seed=i).save(p)
        paths.append(p)
    return paths


def tmp_files(folder: Path) -> list[str]:
    return [n for n in os.listdir(folder) if n.endswith(".tmp")]


def assert_one_line_error(result, *parts: str) -> None:
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert lines, result.stderr
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    for part in parts:
        assert any(part in ln for ln in lines), result.stderr


def size_of(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        return im.size


# -- compress ----------------------------------------------------------------------------------

def test_a_bad_precision_setting_is_a_one_line_error(run, images, tmp_path, monkeypatch):
    monkeypatch.setenv("CODEDVISION_PRECISION", "fp8")
    result = run("compress", images[0], "-o", tmp_path / "one.cvz")
    assert result.exit_code == 1
    assert_one_line_error(result, "CODEDVISION_PRECISION must be one of auto, bf16, float32")
    assert not (tmp_path / "one.cvz").exists()
    monkeypatch.setenv("CODEDVISION_PRECISION", "float32")
    assert run("compress", images[0], "-o", tmp_path / "one.cvz").exit_code == 0


def test_compress_single_file_to_named_output(run, images, tmp_path, tiny_codec):
    out = tmp_path / "x" / "one.cvz"
    result = run("compress", images[0], "-o", out, "-q", 40)
    assert result.exit_code == 0, result.stderr
    header = tiny_codec.header(out.read_bytes())
    assert (header.width, header.height, header.quality) == (40, 30, 40)
    assert "bpp" in result.stderr and "quality 40" in result.stderr
    assert tiny_codec.decode(out.read_bytes()).size == (40, 30)


def test_compress_without_output_writes_beside_the_input(run, images):
    result = run("compress", images[1])
    assert result.exit_code == 0, result.stderr
    assert images[1].with_suffix(".cvz").is_file()


def test_compress_batch_writes_one_file_per_input_with_a_summary(run, images, tmp_path,
                                                                 tiny_codec):
    extra = tmp_path / "more"
    extra.mkdir()
    synthetic(20, 10).save(extra / "a.png")
    synthetic(10, 20).save(extra / "b.jpg")
    (extra / "notes.txt").write_text("not an image, ignored in a folder")
    out = tmp_path / "out"
    result = run("compress", images[0], images[1], extra, "-o", out)
    assert result.exit_code == 0, result.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == ["a.cvz", "b.cvz", "img0.cvz", "img1.cvz"]
    assert "compressed 4 of 4 file(s)" in result.stderr
    for name, size in [("a.cvz", (20, 10)), ("b.cvz", (10, 20)), ("img1.cvz", (17, 33))]:
        assert tiny_codec.decode((out / name).read_bytes()).size == size


def test_compress_folder_input_goes_to_output_folder(run, images, tmp_path):
    out = tmp_path / "out"
    result = run("compress", images[0].parent, "-o", out)
    assert result.exit_code == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["img0.cvz", "img1.cvz", "img2.cvz"]
    assert "compressed 3 of 3" in result.stderr


def test_compress_with_target_bpp(run, photo, tmp_path, tiny_codec):
    crop = photo.crop((0, 0, 128, 96))
    src = tmp_path / "crop.png"
    crop.save(src)

    def bpp(data: bytes) -> float:
        return len(data) * 8 / (128 * 96)

    lo, hi = bpp(tiny_codec.encode(crop, 0)), bpp(tiny_codec.encode(crop, 100))
    target = (lo + hi) / 2
    out = tmp_path / "crop.cvz"
    result = run("compress", src, "-o", out, "--bpp", target)
    assert result.exit_code == 0, result.stderr
    data = out.read_bytes()
    q = tiny_codec.header(data).quality
    assert bpp(data) <= target
    assert q < 100 and bpp(tiny_codec.encode(crop, q + 1)) > target
    assert f"quality {q}" in result.stderr


def test_compress_refuses_quality_and_bpp_together(run, images):
    result = run("compress", images[0], "-q", 50, "--bpp", 1)
    assert result.exit_code != 0
    assert_one_line_error(result, "not both")


@pytest.mark.parametrize("args", [["-q", "101"], ["-q", "-1"], ["--bpp", "0"]])
def test_compress_refuses_out_of_range_settings(run, images, args):
    result = run("compress", images[0], *args)
    assert result.exit_code == 2
    assert not images[0].with_suffix(".cvz").exists()


def test_existing_output_is_refused_without_force_and_replaced_with_it(run, images, tmp_path):
    out = tmp_path / "out.cvz"
    out.write_bytes(b"precious")
    result = run("compress", images[0], "-o", out)
    assert result.exit_code != 0
    assert_one_line_error(result, "exists")
    assert out.read_bytes() == b"precious"
    result = run("compress", images[0], "-o", out, "--force")
    assert result.exit_code == 0, result.stderr
    assert out.read_bytes()[:3] == b"CVZ"
    assert tmp_files(tmp_path) == []


def test_output_equal_to_an_input_is_refused(run, images, tiny_codec):
    original = images[0].read_bytes()
    result = run("compress", images[0], "-o", images[0], "--force")
    assert result.exit_code != 0
    assert_one_line_error(result, "overwrite an input")
    assert images[0].read_bytes() == original

    cvz = images[0].with_name("coded.png")  # a .cvz file by content, an image by name
    cvz.write_bytes(tiny_codec.encode(synthetic(8, 8), 50))
    before = cvz.read_bytes()
    result = run("decompress", cvz, "-o", cvz, "--force")
    assert result.exit_code != 0
    assert_one_line_error(result, "overwrite an input")
    assert cvz.read_bytes() == before


def test_two_inputs_with_one_output_name_are_not_both_written(run, tmp_path):
    for sub, (w, h) in [("a", (10, 12)), ("b", (14, 16))]:
        (tmp_path / sub).mkdir()
        synthetic(w, h).save(tmp_path / sub / "same.png")
    out = tmp_path / "out"
    result = run("compress", tmp_path / "a" / "same.png", tmp_path / "b" / "same.png", "-o", out)
    assert result.exit_code == 1
    assert_one_line_error(result, "already written")
    assert [p.name for p in out.iterdir()] == ["same.cvz"]


def test_failing_file_in_batch_gives_nonzero_exit_and_others_are_written(run, images, tmp_path):
    broken = images[0].parent / "broken.png"
    broken.write_bytes(b"definitely not a PNG")
    out = tmp_path / "out"
    result = run("compress", images[0].parent, "-o", out)
    assert result.exit_code == 1
    assert_one_line_error(result, "broken.png")
    assert sorted(p.name for p in out.iterdir()) == ["img0.cvz", "img1.cvz", "img2.cvz"]
    assert "compressed 3 of 4 file(s)" in result.stderr and "1 failed" in result.stderr
    assert tmp_files(out) == []


def test_missing_input_is_an_error(run, tmp_path):
    result = run("compress", tmp_path / "nope.png")
    assert result.exit_code == 1
    assert_one_line_error(result, "no such file")
    error = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")][0]
    assert error.count("nope.png") == 1, error  # the file is named once


def test_bad_model_folder_is_a_one_line_error(run, images, tmp_path):
    result = run("compress", images[0], "--model", tmp_path, model=False)
    assert result.exit_code == 1
    assert_one_line_error(result, "not a codedvision model folder")


# -- decompress --------------------------------------------------------------------------------

@pytest.fixture
def cvz_files(tmp_path, tiny_codec) -> list[Path]:
    folder = tmp_path / "cvz"
    folder.mkdir()
    paths = []
    for name, (w, h) in [("a", (30, 20)), ("b", (21, 9))]:
        p = folder / f"{name}.cvz"
        p.write_bytes(tiny_codec.encode(synthetic(w, h), quality=50))
        paths.append(p)
    return paths


def test_decompress_single_file_format_follows_extension(run, cvz_files, tmp_path):
    for suffix, fmt in [(".png", "PNG"), (".jpg", "JPEG"), (".bmp", "BMP")]:
        out = tmp_path / f"out{suffix}"
        result = run("decompress", cvz_files[0], "-o", out)
        assert result.exit_code == 0, result.stderr
        with Image.open(out) as im:
            assert im.format == fmt and im.size == (30, 20)


def test_decompress_without_output_writes_png_beside_the_input(run, cvz_files):
    result = run("decompress", cvz_files[1])
    assert result.exit_code == 0, result.stderr
    assert size_of(cvz_files[1].with_suffix(".png")) == (21, 9)


def test_decompress_batch_writes_one_png_per_input(run, cvz_files, tmp_path):
    out = tmp_path / "decoded"
    result = run("decompress", cvz_files[0].parent, "-o", out)
    assert result.exit_code == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png"]
    assert size_of(out / "a.png") == (30, 20) and size_of(out / "b.png") == (21, 9)
    assert "decompressed 2 of 2 file(s)" in result.stderr


def test_corrupt_file_in_decompress_batch_fails_alone(run, cvz_files, tmp_path):
    bad = cvz_files[0].parent / "bad.cvz"
    data = bytearray(cvz_files[0].read_bytes())
    data[-3] ^= 0xFF
    bad.write_bytes(bytes(data))
    out = tmp_path / "decoded"
    result = run("decompress", cvz_files[0].parent, "-o", out)
    assert result.exit_code == 1
    assert_one_line_error(result, "bad.cvz", "CRC")
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png"]
    assert tmp_files(out) == []


def test_decompress_to_unknown_format_leaves_no_file(run, cvz_files, tmp_path):
    out = tmp_path / "out.unknownext"
    result = run("decompress", cvz_files[0], "-o", out)
    assert result.exit_code == 1
    assert_one_line_error(result, "unknown image format")
    assert not out.exists() and tmp_files(tmp_path) == []


def test_a_decoded_image_is_never_written_as_cvz(run, cvz_files, tmp_path):
    # Pillow's .cvz plugin would silently compress the decoded image a second time
    for args in (("decompress", cvz_files[0], "-o", tmp_path / "out.cvz"),
                 ("show", cvz_files[0], "-o", tmp_path / "grid.cvz")):
        result = run(*args)
        assert result.exit_code == 1
        assert_one_line_error(result, "not .cvz")
    assert not (tmp_path / "out.cvz").exists() and not (tmp_path / "grid.cvz").exists()


def test_compress_refuses_a_cvz_input(run, cvz_files, tmp_path):
    result = run("compress", cvz_files[0], "-o", tmp_path / "again.cvz")
    assert result.exit_code == 1
    assert_one_line_error(result, "already a .cvz file")
    assert not (tmp_path / "again.cvz").exists()


def test_several_inputs_need_an_output_folder(run, images, tmp_path):
    for out in (tmp_path / "x.cvz", images[2]):  # a file name, an existing file
        result = run("compress", images[0], images[1], "-o", out)
        assert result.exit_code == 1
        assert_one_line_error(result, "output folder")
    assert not (tmp_path / "x.cvz").exists() and images[2].is_file()


def test_failure_while_writing_leaves_no_half_written_file(run, cvz_files, tmp_path,
                                                           monkeypatch):
    def failing_save(self, fp, *args, **kwargs):
        fp.write(b"half an image")
        raise OSError("No space left on device")

    monkeypatch.setattr(Image.Image, "save", failing_save)
    out = tmp_path / "decoded"
    result = run("decompress", cvz_files[0].parent, "-o", out)
    assert result.exit_code == 1
    assert_one_line_error(result, "No space left on device")
    assert list(out.iterdir()) == []


def test_corrupt_cvz_gives_one_line_error_and_no_traceback_in_a_real_process(
        cvz_files, tmp_path, tiny_model_dir):
    bad = tmp_path / "bad.cvz"
    bad.write_bytes(b"CVZ\x02" + os.urandom(60))
    out = tmp_path / "bad.png"
    proc = subprocess.run(
        [sys.executable, "-m", "codedvision.cli", "decompress", str(bad), "-o", str(out),
         "--model", str(tiny_model_dir)],
        capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "bad.cvz" in errors[0], proc.stderr
    assert not out.exists() and tmp_files(tmp_path) == []


def test_compress_and_decompress_in_a_real_process(images, tmp_path, tiny_model_dir):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cvz, png = tmp_path / "r.cvz", tmp_path / "r.png"
    for args in (["compress", str(images[1]), "-o", str(cvz)],
                 ["decompress", str(cvz), "-o", str(png)]):
        proc = subprocess.run([sys.executable, "-m", "codedvision.cli", *args, "--model",
                               str(tiny_model_dir)], capture_output=True, text=True,
                              timeout=120, env=env)
        assert proc.returncode == 0, proc.stderr
    assert size_of(png) == (17, 33)


# -- info --------------------------------------------------------------------------------------

def test_info_shows_the_header(run, cvz_files, tiny_codec):
    result = run("info", *cvz_files)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    assert "30x20" in lines[0] and "quality 50" in lines[0]
    assert tiny_codec.model_id.hex() in lines[0]
    assert "21x9" in lines[1]


def test_info_json_gives_one_object_per_file(run, cvz_files, tiny_codec):
    result = run("info", "--json", *cvz_files)
    assert result.exit_code == 0, result.stderr
    recs = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["width"], r["height"]) for r in recs] == [(30, 20), (21, 9)]
    data = cvz_files[0].read_bytes()
    r = recs[0]
    assert r["bytes"] == len(data) == r["header_bytes"] + r["payload_bytes"]
    assert r["quality"] == 50 and r["model_id"] == tiny_codec.model_id.hex()
    assert r["default_model"] is False
    assert r["bpp"] == pytest.approx(len(data) * 8 / 600, abs=1e-4)


def test_info_of_a_default_model_file_says_so(run, tmp_path, default_codec):
    p = tmp_path / "d.cvz"
    p.write_bytes(default_codec.encode(synthetic(16, 16), quality=50))
    result = run("info", "--json", p)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["default_model"] is True


def test_info_of_a_bad_file_is_a_one_line_error(run, cvz_files, tmp_path):
    bad = tmp_path / "bad.cvz"
    bad.write_bytes(b"GIF89a....")
    result = run("info", cvz_files[0], bad, tmp_path / "missing.cvz")
    assert result.exit_code == 1
    assert_one_line_error(result, "bad.cvz", "missing.cvz")
    assert len(result.stdout.splitlines()) == 1


def test_info_of_a_folder_shows_its_cvz_files(run, cvz_files):
    result = run("info", cvz_files[0].parent)
    assert result.exit_code == 0, result.stderr
    assert [ln.split(":")[0] for ln in result.stdout.splitlines()] == [str(p) for p in cvz_files]


# -- demo and help -----------------------------------------------------------------------------

def test_demo_writes_three_files_and_prints_psnr_and_bpp(run, tmp_path):
    out = tmp_path / "demo"
    result = run("demo", "-o", out, "-q", 50)
    assert result.exit_code == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["sample.cvz", "sample.png",
                                                     "sample_decoded.png"]
    assert "PSNR" in result.stdout and "bpp" in result.stdout
    assert size_of(out / "sample_decoded.png") == size_of(out / "sample.png")


def test_demo_output_must_be_a_folder(run, tmp_path):
    target = tmp_path / "photo.png"
    target.write_bytes(b"mine")
    result = run("demo", "-o", target)
    assert result.exit_code == 1
    assert_one_line_error(result, "not a folder")
    assert target.read_bytes() == b"mine"


def _all_commands(group: click.Group, prefix=()):
    yield prefix
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            yield from _all_commands(cmd, prefix + (name,))
        else:
            yield prefix + (name,)


@pytest.mark.parametrize("command", list(_all_commands(main)), ids=lambda c: " ".join(c) or "main")
def test_help_of_every_command_exits_0(command):
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.stdout


def test_compress_with_refine_writes_a_file_that_decodes(run, photo, tmp_path):
    src = tmp_path / "crop.png"
    photo.crop((0, 0, 96, 64)).save(src)
    result = run("compress", src, "-o", tmp_path / "crop.cvz", "--refine", 2)
    assert result.exit_code == 0, result.stderr
    result = run("decompress", tmp_path / "crop.cvz", "-o", tmp_path / "back.png")
    assert result.exit_code == 0, result.stderr
    assert run("compress", src, "--refine", -1).exit_code == 2


def test_compress_refine_with_a_model_without_rate_estimate_fails_once(run, images,
                                                                       factorized_model_dir):
    result = run("compress", *images[:2], "--refine", 2, "--model", factorized_model_dir,
                 model=False)
    assert result.exit_code != 0
    assert_one_line_error(result, "hyperprior")
