"""Tests of the evaluation harness (codedvision.evaluate) and the metrics it reports.

Small and fast: two tiny synthetic images, two settings per codec available here.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from codedvision.evaluate import CODECS, get_codec, parse_settings, run_evaluation
from codedvision.evaluate.bdrate import bd_rate
from codedvision.evaluate.codecs.pillow_codecs import JpegCodec
from codedvision.evaluate.plan import make_plan
from codedvision.metrics import ms_ssim, ms_ssim_db, psnr

SIZES = [(64, 48), (200, 176)]  # the first too small for MS-SSIM, the second large enough


def _synthetic(w: int, h: int, seed: int) -> np.ndarray:
    """A colour gradient with noise: compressible but not trivial."""
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) * 127 / (w + h)], axis=-1)
    noise = np.random.default_rng(seed).normal(0, 10, (h, w, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def _available() -> list[str]:
    return [n for n in CODECS if get_codec(n).available()]


def _two_settings(name: str) -> list:
    d = get_codec(name).default_settings
    return [d[1], d[-2]]


@pytest.fixture(scope="session")
def image_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("images")
    for i, (w, h) in enumerate(SIZES):
        Image.fromarray(_synthetic(w, h, i)).save(d / f"synthetic_{w}x{h}.png")
    return d


@pytest.fixture(scope="session")
def reference_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("reference")
    doc = {"name": "made up", "results": {"bpp": [0.5, 1.0, 2.0], "psnr-rgb": [26.0, 28.0, 31.0],
                                          "ms-ssim-rgb": [0.9, 0.95, 0.98]}}
    (d / "madeup.json").write_text(json.dumps(doc))
    return d


@pytest.fixture(scope="session")
def evaluated(tmp_path_factory, image_dir, reference_dir) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("eval")
    names = _available()
    results = run_evaluation(
        image_dir,
        out,
        codecs=names,
        settings={n: _two_settings(n) for n in names},
        reference=reference_dir,
        per_image=True,
        progress=False,
    )
    return out, results


# --- metrics ---------------------------------------------------------------------------------


def test_psnr_of_an_off_by_one_image_is_48_13_db_and_of_identical_images_infinite():
    a = np.full((8, 8, 3), 100, np.uint8)
    assert psnr(a, a + 1) == pytest.approx(10 * math.log10(255**2), abs=1e-9)
    assert psnr(a, a) == math.inf


def test_ms_ssim_is_not_applicable_to_images_with_a_side_of_160_px_or_less():
    a = _synthetic(300, 160, 0)
    assert ms_ssim(a, a) is None
    assert ms_ssim_db(None) is None


def test_ms_ssim_of_identical_images_is_one_and_its_db_infinite():
    a = _synthetic(176, 176, 0)
    assert ms_ssim(a, a) == pytest.approx(1.0, abs=1e-6)
    assert ms_ssim_db(1.0) == math.inf
    assert ms_ssim_db(0.99) == pytest.approx(20.0)


# --- BD-rate ---------------------------------------------------------------------------------

RATES = [0.2, 0.4, 0.8, 1.6]
PSNRS = [27.0, 30.0, 33.5, 37.0]


def test_bd_rate_of_a_curve_against_itself_is_zero():
    assert bd_rate(RATES, PSNRS, RATES, PSNRS) == pytest.approx(0.0, abs=1e-9)


def test_bd_rate_of_a_curve_needing_half_the_bits_is_minus_fifty_percent():
    half = [r / 2 for r in RATES]
    assert bd_rate(RATES, PSNRS, half, PSNRS) == pytest.approx(-50.0, abs=1e-6)


def test_bd_rate_is_none_when_the_quality_ranges_do_not_overlap():
    assert bd_rate(RATES, PSNRS, [2.0, 3.0], [40.0, 42.0]) is None


def test_bd_rate_ignores_unusable_points():
    assert bd_rate(RATES + [None], PSNRS + [50.0], RATES, PSNRS) == pytest.approx(0.0, abs=1e-9)


# --- codecs ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CODECS))
def test_every_available_codec_round_trips_an_odd_sized_image_at_its_size(name):
    codec = get_codec(name)
    if not codec.available():
        pytest.skip(f"{name}: {codec.unavailable_reason()}")
    img = Image.fromarray(_synthetic(33, 17, 3))
    setting = codec.default_settings[-1]  # highest quality: the decode must resemble the input
    decoded = codec.decode(codec.encode(img, setting))
    assert decoded.mode == "RGB" and decoded.size == img.size
    if not name.startswith("codedvision"):  # a learned codec's quality is measured by benchmarks, not tests
        assert psnr(np.asarray(img), np.asarray(decoded)) > 20


def test_default_settings_are_valid_and_distinct_for_every_codec():
    for cls in CODECS.values():
        codec = cls()
        checked = [codec.check_setting(s) for s in cls.default_settings]
        assert len(set(checked)) == len(checked) >= 6, cls.name


def test_settings_given_as_text_are_converted_and_out_of_range_ones_rejected():
    assert get_codec("hevc").check_setting("22") == 22
    assert get_codec("jpeg2000").check_setting("0.5") == 0.5
    with pytest.raises(ValueError, match="outside"):
        get_codec("jpeg").check_setting(101)
    with pytest.raises(ValueError, match="integer"):
        get_codec("hevc").check_setting(22.5)


def test_an_unavailable_codec_is_skipped_with_a_note_unless_asked_for(monkeypatch):
    monkeypatch.setattr(JpegCodec, "unavailable_reason", lambda self: "not built here")
    plan = make_plan(None, None)
    assert plan.skipped["jpeg"] == "not built here"
    assert "jpeg" not in plan.settings
    with pytest.raises(ValueError, match="not available here: not built here"):
        make_plan(["jpeg"], None)


def test_an_opt_in_codec_runs_only_when_named():
    plan = make_plan(None, None)
    for name in ("vvc", "codedvision-refine"):
        assert name not in plan.settings and "slow" in plan.skipped[name]
    if get_codec("vvc").available():
        assert "vvc" in make_plan(["jpeg", "vvc"], None).settings
        assert "vvc" in make_plan(None, {"vvc": [40]}).settings


def test_parse_settings_reads_bare_qualities_as_codedvisions_and_named_ones_per_codec():
    assert parse_settings(["10,50", "hevc=27,32", "codedvision=90"]) == {
        "codedvision": ["10", "50", "90"],
        "hevc": ["27", "32"],
    }


# --- the full run ----------------------------------------------------------------------------


def test_results_json_has_every_codec_setting_and_image(evaluated, image_dir):
    out, results = evaluated
    on_disk = json.loads((out / "results.json").read_text())
    names = _available()
    assert list(on_disk["codecs"]) == names
    images = sorted(p.name for p in image_dir.iterdir())
    got = {(p["codec"], p["setting"], p["image"]) for p in on_disk["points"]}
    want = {(n, s, im) for n in names for s in _two_settings(n) for im in images}
    assert got == want and len(on_disk["points"]) == len(want)
    for n in names:
        assert [a["setting"] for a in on_disk["averages"][n]] == _two_settings(n)
    assert on_disk["versions"]["packages"]["pillow"]
    assert on_disk["versions"]["python"]


def test_bpp_is_eight_times_the_cached_file_size_over_the_pixel_count(evaluated):
    out, results = evaluated
    for p in results["points"]:
        size = (out / p["file"]).stat().st_size
        assert size == p["bytes"]
        assert p["bpp"] == pytest.approx(8 * size / (p["width"] * p["height"]), rel=1e-12)


def test_ms_ssim_is_null_for_the_small_image_and_measured_for_the_large_one(evaluated):
    _, results = evaluated
    for p in results["points"]:
        if p["width"] <= 160 or p["height"] <= 160:
            assert p["ms_ssim"] is None and p["ms_ssim_db"] is None
        else:
            assert 0 < p["ms_ssim"] <= 1
            assert p["ms_ssim_db"] == pytest.approx(-10 * math.log10(1 - p["ms_ssim"]))
        assert p["psnr"] is None or 0 < p["psnr"] < 100
        assert p["encode_s"] >= 0 and p["decode_s"] >= 0


def test_the_anchors_bd_rate_against_itself_is_zero_in_the_results(evaluated):
    _, results = evaluated
    if "hevc" not in results["codecs"]:
        pytest.skip("hevc not available")
    assert results["bd_rate"]["hevc"]["psnr"]["bd_rate"] == pytest.approx(0.0, abs=1e-9)
    assert "madeup" in results["reference_bd_rate"]


def test_plots_and_side_by_side_are_valid_pngs(evaluated):
    out, results = evaluated
    files = ["rd_psnr.png", "rd_msssim.png", "side_by_side.png", *results["files"]["per_image"]]
    assert any(f.startswith("per_image/") for f in files)
    for f in files:
        with Image.open(out / f) as im:
            im.verify()
            assert im.format == "PNG"
    shown = {p["codec"] for p in results["side_by_side"]["panels"]}
    assert shown <= set(results["codecs"]) and shown


def test_report_has_the_bd_rate_table_times_and_settings(evaluated):
    out, results = evaluated
    report = (out / "report.md").read_text()
    assert "BD-rate PSNR" in report and "median encode (ms)" in report
    assert f"{len(results['images'])} image(s)" in report
    for info in results["codecs"].values():
        assert info["label"] in report
    if "hevc" in results["codecs"]:
        assert "| HEVC intra 4:4:4 (x265) | +0.0% |" in report


class _FakeLearnedCodec:
    """Stands in for codedvision.load()'s codec (the real one may not exist yet): JPEG inside."""

    model_id = bytes.fromhex("0badc0de")
    precision = "float32"

    def encode(self, img, quality):
        return JpegCodec().encode(img, max(1, min(95, int(quality))))

    def decode(self, data):
        return JpegCodec().decode(data)


def test_the_codedvision_codec_runs_through_load_and_leads_the_side_by_side(
    tmp_path, image_dir, monkeypatch
):
    import codedvision
    from codedvision.evaluate import codecs as registry
    from codedvision.evaluate.codecs.learned import CodedVisionCodec

    monkeypatch.setattr(codedvision, "load", lambda: _FakeLearnedCodec(), raising=False)
    monkeypatch.setitem(registry._instances, "codedvision", CodedVisionCodec())
    results = run_evaluation(
        image_dir, tmp_path, codecs=["codedvision", "jpeg", "hevc"],
        settings={"codedvision": [10, 70], "jpeg": [10, 70], "hevc": [37, 27]}, progress=False,
    )
    assert "model 0badc0de, float32 transforms" in results["codecs"]["codedvision"]["version"]
    sbs = results["side_by_side"]
    assert [p["codec"] for p in sbs["panels"]] == ["codedvision", "jpeg", "hevc"]
    ours = [
        p for p in results["points"] if p["codec"] == "codedvision" and p["image"] == sbs["image"]
    ]
    assert sbs["target_bpp"] == min((p["bpp"] for p in ours), key=lambda b: abs(b - 0.5))


# --- cache and resume ------------------------------------------------------------------------


def _count_jpeg_encodes(monkeypatch) -> list:
    calls = []
    real = JpegCodec.encode

    def counting(self, img, setting):
        calls.append(setting)
        return real(self, img, setting)

    monkeypatch.setattr(JpegCodec, "encode", counting)
    return calls


def test_a_second_run_reuses_the_cache_and_an_interrupted_one_redoes_only_the_missing_point(
    tmp_path, image_dir, monkeypatch
):
    kwargs = dict(codecs=["jpeg"], settings={"jpeg": [20, 60]}, progress=False)
    first = run_evaluation(image_dir, tmp_path, **kwargs)
    calls = _count_jpeg_encodes(monkeypatch)

    second = run_evaluation(image_dir, tmp_path, **kwargs)
    assert calls == []
    assert [p["bpp"] for p in second["points"]] == [p["bpp"] for p in first["points"]]

    (tmp_path / first["points"][0]["file"]).with_suffix(".json").unlink()  # as if killed there
    run_evaluation(image_dir, tmp_path, **kwargs)
    assert calls == [first["points"][0]["setting"]]


def test_a_new_codec_version_is_not_served_from_the_old_cache(tmp_path, image_dir, monkeypatch):
    kwargs = dict(codecs=["jpeg"], settings={"jpeg": [50]}, progress=False)
    run_evaluation(image_dir, tmp_path, **kwargs)
    calls = _count_jpeg_encodes(monkeypatch)
    monkeypatch.setattr(JpegCodec, "version", lambda self: "libjpeg from the future")
    run_evaluation(image_dir, tmp_path, **kwargs)
    assert len(calls) == len(SIZES)


def test_parallel_jobs_measure_the_same_points_as_a_serial_run(tmp_path, image_dir):
    kwargs = dict(codecs=["jpeg"], settings={"jpeg": [30]}, progress=False)
    serial = run_evaluation(image_dir, tmp_path / "serial", **kwargs)
    parallel = run_evaluation(image_dir, tmp_path / "parallel", jobs=2, **kwargs)
    key = lambda r: [(p["image"], p["bytes"], p["psnr"]) for p in r["points"]]  # noqa: E731
    assert key(parallel) == key(serial)


# --- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(images="EMPTY"), "no images found"),
        (dict(images=Path("/nonexistent/kodak")), "not found"),
        (dict(codecs=["jpeg", "bpg"]), "unknown codec 'bpg'"),
        (dict(codecs=[]), "no codecs"),
        (dict(settings={"jpeg": [150]}), "outside"),
        (dict(settings={"hevc": [30]}), "not in the codecs"),
        (dict(jobs=0), "jobs"),
        (dict(reference=Path("/nonexistent/ref")), "reference path not found"),
    ],
)
def test_bad_input_raises_a_one_line_value_error(tmp_path, image_dir, change, message):
    args = dict(images=image_dir, out=tmp_path / "out", codecs=["jpeg"], progress=False)
    args.update(change)
    if args["images"] == "EMPTY":
        args["images"] = tmp_path / "empty"
        args["images"].mkdir()
    with pytest.raises(ValueError, match=message) as err:
        run_evaluation(**args)
    assert "\n" not in str(err.value)


def test_compare_releases_accepts_only_a_model_better_on_both_metrics(tmp_path, load_benchmark):
    cmp = load_benchmark("compare_releases")

    def results(name, bpps, psnrs, msdb):
        pts = [{"setting": i, "bpp": b, "bpp_ms_ssim": b, "psnr": p, "ms_ssim_db": m}
               for i, (b, p, m) in enumerate(zip(bpps, psnrs, msdb))]
        (tmp_path / name).write_text(json.dumps({"averages": {"codedvision": pts}}))
        return str(tmp_path / name)

    old = results("old.json", [0.2, 0.4, 0.8], [26, 28, 30], [10, 12, 14])
    better = results("better.json", [0.18, 0.35, 0.7], [26, 28, 30], [10, 12, 14])
    mixed = results("mixed.json", [0.18, 0.35, 0.7], [26, 28, 30], [9, 11, 13])
    assert cmp.main([old, better]) == 0
    assert cmp.main([better, old]) == 1
    assert cmp.main([old, mixed]) == 1  # fewer bits for PSNR, more for MS-SSIM
    assert cmp.main([old]) == 2
    assert cmp.main([old, better, "--plot"]) == 2
    assert cmp.main([old, better, "--plot", str(tmp_path / "cmp")]) == 0
    assert (tmp_path / "cmp_psnr.png").stat().st_size > 0
    assert (tmp_path / "cmp_msssim.png").stat().st_size > 0


def test_flat_content_counts_flat_blocks_and_bd_rates_per_image(tmp_path, load_benchmark):
    bench = load_benchmark("flat_content")
    flat = np.zeros((32, 48, 3), np.uint8) + 120
    flat[:16, :16] = np.random.RandomState(0).randint(0, 255, (16, 16, 3))  # 1 busy block of 6
    Image.fromarray(flat).save(tmp_path / "a.png")
    assert bench.flat_share(tmp_path / "a.png") == pytest.approx(5 / 6)
    curves = {c: [(s, b * f, q) for s, (b, q) in enumerate(((0.5, 30), (1, 33), (2, 36)))]
              for c, f in (("hevc", 1.0), ("codedvision", 1.5))}
    pts = [{"image": "a.png", "codec": c, "setting": s, "bpp": b, "psnr": q,
            "ms_ssim": 1 - 10 ** (-q / 30), "encode_s": 0.1, "decode_s": 0.1}
           for c, curve in curves.items() for s, b, q in curve]
    averages = {c: [{"setting": s} for s, _, _ in curve] for c, curve in curves.items()}
    bd = bench.per_image_bd_rates({"anchor": "hevc", "points": pts, "averages": averages})
    assert bd["a.png"]["psnr"] == pytest.approx(50.0, abs=0.5)
    assert bd["a.png"]["ms_ssim_db"] == pytest.approx(50.0, abs=0.5)


def test_flat_content_reports_each_images_change_from_an_earlier_model(load_benchmark):
    bench = load_benchmark("flat_content")

    def rows(psnr):
        return [{"image": f"{i}.png", "flat_share": share, "bd_rate_psnr": v,
                 "bd_rate_ms_ssim_db": None if i == 2 else -v}
                for i, (share, v) in enumerate(zip((0.1, 0.5, 0.9), psnr))]

    new, old = rows([20.0, 30.0, 40.0]), {"codec": "old", "images": rows([21.0, 33.0, 46.0])}
    summary = bench.changes(new, old)
    assert [r["change_psnr"] for r in new] == [-1.0, -3.0, -6.0]
    assert [r["change_ms_ssim_db"] for r in new] == [1.0, 3.0, None]  # no BD-rate: no change
    assert summary["codec"] == "old" and summary["images_per_third"] == 1
    assert summary["psnr"]["flattest_third"] == -6.0
    assert summary["psnr"]["least_flat_third"] == -1.0
    assert summary["psnr"]["correlation"] < -0.9  # the flatter, the more it gained
    assert summary["ms_ssim_db"]["flattest_third"] is None
    with pytest.raises(ValueError, match="no 2.png"):
        bench.changes(new, {"images": old["images"][:2]})


def test_rate_gap_reads_the_anchors_rate_at_each_settings_quality(load_benchmark):
    bench = load_benchmark("rate_gap")

    def averages(points):
        return [{"setting": s, "bpp": b, "bpp_ms_ssim": b, "psnr": q, "ms_ssim_db": q / 2}
                for s, (b, q) in enumerate(points)]

    anchor = averages([(0.2, 30.0), (0.4, 33.0), (0.8, 36.0), (1.6, 39.0)])
    # the anchor's own points at 1.5x the rate, one below its range, one halfway in log-rate
    test = averages([(0.1, 28.0), (0.3, 30.0), (1.2, 36.0), (0.8 * 2 ** 0.5, 37.5)])
    rows = bench.rate_gaps(anchor, test, "psnr")
    assert [r["setting"] for r in rows] == [0, 1, 2, 3]
    assert rows[0]["anchor_bpp"] is None and rows[0]["extra_rate_percent"] is None
    assert rows[1]["extra_rate_percent"] == pytest.approx(50.0)
    assert rows[2]["extra_rate_percent"] == pytest.approx(50.0)
    assert rows[3]["anchor_bpp"] == pytest.approx(0.8 * 2 ** 0.5, rel=0.01)
    assert bench.rate_gaps(anchor, test, "ms_ssim_db")[2]["extra_rate_percent"] == pytest.approx(50.0)


def test_readme_results_tabulates_the_rate_gap_per_quality(load_benchmark):
    bench = load_benchmark("readme_results")
    assert bench.gap_section(None) == []
    gap = {"codec": "codedvision x", "anchor": "hevc", "settings": {
        "psnr": [{"setting": 0, "extra_rate_percent": None},
                 {"setting": 50, "extra_rate_percent": 12.34}],
        "ms_ssim_db": [{"setting": 0, "extra_rate_percent": -20.0},
                       {"setting": 50, "extra_rate_percent": None}]}}
    lines = bench.gap_section(gap)
    assert "| quality | 0 | 50 |" in lines
    assert "| at equal PSNR | n/a | +12.3% |" in lines
    assert "| at equal MS-SSIM | -20.0% | n/a |" in lines


def test_readme_results_says_when_a_committed_run_measured_another_model(load_benchmark):
    bench = load_benchmark("readme_results")
    res = {"codecs": {"codedvision": {"version": "codedvision 0.1.0, model aaaa1111, bf16"}}}
    assert bench._stale_note(res, "aaaa1111") == []
    assert bench._stale_note(res, None) == []
    note = bench._stale_note(res, "bbbb2222")
    assert "model aaaa1111" in note[0] and "`bbbb2222`" in note[0]


def test_measured_model_reads_the_model_id_from_a_codec_version():
    from codedvision.evaluate.codecs.learned import measured_model

    assert measured_model("codedvision 0.1.0, model faa3be26, bf16 transforms") == "faa3be26"
    assert measured_model("libx265 3.5") is None
