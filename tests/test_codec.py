"""Round trips of the codec: sizes, both entropy models, the fMaps API, quality and target bpp."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from codedvision import codec as codec_module
from codedvision.config import ModelConfig, quality_to_position
from codedvision.model import CodedVisionModel
from codedvision.networks import anchor_mask

from conftest import synthetic


def gained_fmaps(codec, image: Image.Image, quality: int) -> torch.Tensor:
    """y * gain recomputed: pad by edge replication to the stride, the codec's forward net (in
    its precision), x gain (small images only)."""
    x = torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1)[None].float() / 255
    s = codec.cfg.stride
    x = F.pad(x, (0, -x.shape[3] % s, 0, -x.shape[2] % s), mode="replicate")
    with torch.no_grad():
        gain, _ = codec.model.gains(torch.tensor([quality_to_position(quality,
                                                                      len(codec.cfg.lambdas))]))
        return codec.analysis(x) * gain


def coded_integers(codec, image: Image.Image, quality: int) -> torch.Tensor:
    """The integer fMaps a scale-only encoder should code: round(y * gain)."""
    return torch.round(gained_fmaps(codec, image, quality))


def expected_fmap_shape(codec, width: int, height: int) -> tuple[int, int, int, int]:
    s, d = codec.cfg.stride, 2**codec.cfg.downsamples
    return (1, codec.cfg.fmaps, math.ceil(height / s) * s // d, math.ceil(width / s) * s // d)


def count_decoded_symbols(monkeypatch) -> list[int]:
    """From now on, the number of symbols of every coder.decode call, in order."""
    decoded: list[int] = []
    real_decode = codec_module.coder.decode
    monkeypatch.setattr(codec_module.coder, "decode",
                        lambda dec, ids, tables: decoded.append(ids.size) or real_decode(
                            dec, ids, tables))
    return decoded


# -- round trips of odd sizes -------------------------------------------------------------------

@pytest.mark.parametrize("size", [(1, 1), (17, 33), (33, 17), (64, 64), (65, 63)],
                         ids=lambda s: f"{s[0]}x{s[1]}")
def test_round_trip_keeps_odd_sizes(tiny_codec, size):
    w, h = size
    data = tiny_codec.encode(synthetic(w, h), quality=60)
    decoded = tiny_codec.decode(data)
    assert decoded.size == (w, h)
    assert decoded.mode == "RGB"
    header = tiny_codec.header(data)
    assert (header.width, header.height, header.quality) == (w, h, 60)


def test_decoded_fmaps_equal_encoded_symbols(tiny_codec, photo):
    crop = photo.crop((0, 0, 768, 512))
    data = tiny_codec.encode(crop, quality=40)
    header, y_hat = tiny_codec.quantized_fmaps(data)
    assert (header.width, header.height) == (768, 512)
    assert y_hat.shape == (1, 16, 32, 48)
    assert torch.equal(y_hat, coded_integers(tiny_codec, crop, 40))
    assert tiny_codec.decode(data).size == (768, 512)


def test_decoded_fmaps_equal_encoded_symbols_for_odd_size(tiny_codec, photo):
    crop = photo.crop((101, 37, 101 + 150, 37 + 77))
    data = tiny_codec.encode(crop, quality=90)
    _, y_hat = tiny_codec.quantized_fmaps(data)
    assert torch.equal(y_hat, coded_integers(tiny_codec, crop, 90))


def test_fmaps_are_quantized_fmaps_times_inverse_gain(tiny_codec, small_photo):
    data = tiny_codec.encode(small_photo, quality=33)
    header, y_hat = tiny_codec.quantized_fmaps(data)
    _, inv_gain = tiny_codec._gains(header.quality)
    fm = tiny_codec.fmaps(data)
    assert fm.shape == y_hat.shape == expected_fmap_shape(tiny_codec, *small_photo.size)
    assert torch.equal(fm, y_hat * inv_gain)


def test_decoding_is_deterministic(tiny_codec, small_photo):
    data = tiny_codec.encode(small_photo, quality=75)
    assert tiny_codec.encode(small_photo, quality=75) == data
    a, b = tiny_codec.decode(data), tiny_codec.decode(data)
    assert np.array_equal(np.asarray(a), np.asarray(b))


def test_large_image_round_trips_tile_by_tile(tiny_codec, photo):
    """4000x3000 runs the networks tile by tile (Codec._tiled), bounding memory."""
    big = photo.resize((4000, 3000), Image.BILINEAR)  # uint8, 36 MB
    nets = {"forward": tiny_codec.model.forward_net, "backward": tiny_codec.model.backward_net}
    seen: dict[str, list[tuple[int, int]]] = {k: [] for k in nets}
    handles = [net.register_forward_pre_hook(
        lambda mod, args, k=k: seen[k].append(tuple(args[0].shape[2:]))) for k, net in nets.items()]
    try:
        data = tiny_codec.encode(big, quality=50)
        del big
        decoded = tiny_codec.decode(data)
    finally:
        for h in handles:
            h.remove()
    assert decoded.size == (4000, 3000)
    d = 2**tiny_codec.cfg.downsamples
    limit = codec_module.TILE_FMAP + 2 * codec_module.TILE_OVERLAP  # fMap positions per side
    assert len(seen["forward"]) > 1 and len(seen["backward"]) > 1
    assert max(max(s) for s in seen["forward"]) <= limit * d
    assert max(max(s) for s in seen["backward"]) <= limit
    header, y1 = tiny_codec.quantized_fmaps(data)
    _, y2 = tiny_codec.quantized_fmaps(data)
    assert torch.equal(y1, y2)
    assert y1.shape == (1, 16, math.ceil(3000 / 64) * 4, math.ceil(4000 / 64) * 4)
    assert (header.width, header.height) == (4000, 3000)
    # the decoded image resembles the input (a random model only passes colours through
    # loosely, so just check it is not empty or constant)
    assert np.asarray(decoded).std() > 0


# -- both entropy models -------------------------------------------------------------------------

@pytest.mark.parametrize("which", ["tiny_codec", "factorized_codec", "mean_scale_codec",
                                   "checkerboard_codec"])
def test_both_entropy_models_round_trip(request, which, photo):
    codec = request.getfixturevalue(which)
    crop = photo.crop((0, 0, 200, 130))
    data = codec.encode(crop, quality=70)
    assert codec.decode(data).size == (200, 130)
    _, y_hat = codec.quantized_fmaps(data)
    if codec.cfg.mean_scale:  # rounded around the means: within half a step of y * gain
        assert (y_hat - gained_fmaps(codec, crop, 70)).abs().max() <= 0.5 + 1e-4
    else:
        assert torch.equal(y_hat, coded_integers(codec, crop, 70))
    assert codec.fmaps(data).shape == expected_fmap_shape(codec, 200, 130)


def test_factorized_fmaps_shape_follows_forward_stride(factorized_codec):
    data = factorized_codec.encode(synthetic(33, 17), quality=50)
    assert factorized_codec.cfg.stride == 16
    assert factorized_codec.fmaps(data).shape == (1, 16, 2, 3)


def test_hyperprior_fmaps_shape_follows_hyperprior_stride(tiny_codec):
    data = tiny_codec.encode(synthetic(33, 17), quality=50)
    assert tiny_codec.fmaps(data).shape == (1, 16, 4, 4)


def test_files_of_one_model_are_refused_by_the_other(tiny_codec, factorized_codec):
    from codedvision import FormatError

    data = tiny_codec.encode(synthetic(20, 20), quality=50)
    with pytest.raises(FormatError, match="model"):
        factorized_codec.decode(data)


# -- quality --------------------------------------------------------------------------------------

def test_higher_quality_gives_larger_file(default_codec, photo):
    sizes = [len(default_codec.encode(photo, quality=q)) for q in (0, 50, 100)]
    assert sizes[0] < sizes[1] < sizes[2]


@pytest.mark.parametrize("quality", [-1, -0.5, 100.5, 101, 1000, float("nan"), float("inf"), "x",
                                     None])
def test_quality_outside_0_to_100_raises_value_error(tiny_codec, quality):
    with pytest.raises(ValueError, match="quality"):
        tiny_codec.encode(synthetic(8, 8), quality=quality)


def test_fractional_quality_is_rounded(tiny_codec):
    data = tiny_codec.encode(synthetic(8, 8), quality=49.6)
    assert tiny_codec.header(data).quality == 50


# -- target bpp -----------------------------------------------------------------------------------

def _bpp(data: bytes, image: Image.Image) -> float:
    return len(data) * 8 / (image.width * image.height)


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9])
def test_target_bpp_picks_highest_quality_that_fits(default_codec, photo, fraction):
    """The target lies between the rates of quality 0 and 100 (whatever the model's quality)."""
    crop = photo.crop((256, 128, 512, 384))
    lo = _bpp(default_codec.encode(crop, quality=0), crop)
    hi = _bpp(default_codec.encode(crop, quality=100), crop)
    target = lo + fraction * (hi - lo)
    res = default_codec.encode_ex(crop, bpp=target)
    assert default_codec.header(res.data).quality == res.quality
    assert _bpp(res.data, crop) <= target
    assert res.quality < 100
    assert _bpp(default_codec.encode(crop, quality=res.quality + 1), crop) > target
    assert res.notes == []
    assert default_codec.decode(res.data).size == crop.size


def test_target_bpp_below_quality_0_gives_quality_0_with_a_note(tiny_codec, small_photo):
    res = tiny_codec.encode_ex(small_photo, bpp=0.001)
    assert res.quality == 0
    assert res.data == tiny_codec.encode(small_photo, quality=0)
    assert any("quality 0 exceeds" in n for n in res.notes)


def test_target_bpp_above_quality_100_gives_quality_100(tiny_codec, small_photo):
    res = tiny_codec.encode_ex(small_photo, bpp=1000)
    assert res.quality == 100
    assert res.notes == []


@pytest.mark.parametrize("bpp", [0, -1, float("nan")])
def test_target_bpp_must_be_positive(tiny_codec, bpp):
    with pytest.raises(ValueError, match="bpp"):
        tiny_codec.encode_ex(synthetic(8, 8), bpp=bpp)


# -- channel groups: decoding only the first fMaps ------------------------------------------------

@pytest.mark.parametrize("which", ["tiny_codec", "factorized_codec", "mean_scale_codec"])
def test_first_fmaps_decode_alone_and_equal_the_full_decode(request, which, small_photo,
                                                            monkeypatch):
    """With groups of 4 channels (16 fMaps: 4 groups), asking for the first 5 fMaps decodes 2
    groups and gives exactly the full decode's first 5 channels."""
    codec = request.getfixturevalue(which)
    monkeypatch.setattr(codec_module, "FMAP_GROUP", 4)
    data = codec.encode(small_photo, quality=45)
    _, full = codec.quantized_fmaps(data)
    if not codec.cfg.mean_scale:  # (mean-scale: test_mean_scale_codes_around_exact_means)
        assert torch.equal(full, coded_integers(codec, small_photo, 45))
    decoded = count_decoded_symbols(monkeypatch)
    _, first = codec.quantized_fmaps(data, channels=5)
    assert torch.equal(first, full[:, :5])
    y_calls = decoded[1:] if codec.hyper else decoded  # hyperprior: z first
    assert sum(y_calls) == 8 * full[0, 0].numel()  # two groups of 4 channels, no more
    assert torch.equal(codec.fmaps(data, channels=5), codec.fmaps(data)[:, :5])
    with pytest.raises(ValueError, match="channels must be from 1 to 16"):
        codec.fmaps(data, channels=17)
    with pytest.raises(ValueError, match="channels must be an integer"):
        codec.fmaps(data, channels=4.0)


def test_shipped_model_decodes_its_first_group_alone(default_codec, small_photo):
    data = default_codec.encode(small_photo, quality=30)
    first = default_codec.fmaps(data, channels=32)
    assert torch.equal(first, default_codec.fmaps(data)[:, :32])
    # the first group holds the most spread fMaps (sorted at export, or kept in that order)
    _, y_hat = default_codec.quantized_fmaps(data)
    spread = y_hat[0].flatten(1).std(1)
    assert spread[:32].mean() > 2 * spread[32:].mean()


@pytest.mark.parametrize("entropy_model", ["hyperprior", "factorized", "mean-scale"])
def test_permuting_fmaps_permutes_every_fmap_path(entropy_model):
    torch.manual_seed(3)
    mean_scale = entropy_model == "mean-scale"
    cfg = ModelConfig(channels=16, fmaps=16, hyper_channels=16, mean_scale=mean_scale,
                      entropy_model="hyperprior" if mean_scale else entropy_model)
    model = CodedVisionModel(cfg).eval()
    if mean_scale:  # the halves that start at zero: the means and the signed input
        with torch.no_grad():
            model.hyper_synthesis.net[-1].weight.normal_(0, 0.05)
            model.hyper_analysis.net[0].weight.normal_(0, 0.05)
    x = torch.rand(1, 3, 64, 64)
    pos = torch.tensor([1.3])
    with torch.no_grad():
        y = model.forward_net(x) * model.gains(pos)[0]
        x_hat = model.backward_net(torch.round(y) * model.gains(pos)[1])
        order = model.spread_order([x])
        assert torch.equal(torch.sort(order).values, torch.arange(16))
        spread = y[0].flatten(1).std(1)
        assert torch.all(spread[order][:-1] >= spread[order][1:])
        if cfg.entropy_model == "hyperprior":
            z = model.hyper_analysis(y)
            scales = model.hyper_synthesis(torch.round(z))
        else:
            pmf = model.y_model.pmf()
        model.permute_fmaps(order)
        y2 = model.forward_net(x) * model.gains(pos)[0]
        assert torch.allclose(y2, y[:, order], atol=1e-5)
        x_hat2 = model.backward_net(torch.round(y2) * model.gains(pos)[1])
        assert torch.allclose(x_hat2, x_hat, atol=1e-4)
        if cfg.entropy_model == "hyperprior":
            assert torch.allclose(model.hyper_analysis(y[:, order]), z, atol=1e-4)
            both = torch.cat([order, order + 16]) if mean_scale else order
            assert torch.allclose(model.hyper_synthesis(torch.round(z)), scales[:, both],
                                  atol=1e-5)
        else:
            assert torch.equal(model.y_model.pmf(), pmf[order])
    with pytest.raises(ValueError, match="permutation"):
        model.permute_fmaps(torch.zeros(16, dtype=torch.long))


def test_mean_scale_codes_around_exact_means(mean_scale_codec, small_photo):
    """A mean-scale file holds round(y*gain - mean) with the means of the exact integer
    hyper-synthesis; decoding adds them back: within half a step of y*gain, not integers."""
    codec = mean_scale_codec
    data = codec.encode(small_photo, quality=55)
    _, y_hat = codec.quantized_fmaps(data)
    y_g = gained_fmaps(codec, small_photo, 55)
    with torch.no_grad():
        z = torch.round(codec.model.hyper_analysis(y_g)).double()
    _, mean = codec._hyper_params(z, codec.cfg.fmaps)
    sym = y_hat.double().numpy() - mean
    assert np.array_equal(sym, np.round(sym))  # integers once the exact means are removed
    assert np.abs(mean).max() > 1 and not torch.equal(y_hat, torch.round(y_hat))
    assert (y_hat - y_g).abs().max() <= 0.5 + 1e-4
    # the float hyper networks (what classifier training uses) agree up to rare rounding flips
    from codedvision.vision.data import quantized_fmaps

    x = torch.from_numpy(np.array(small_photo)).permute(2, 0, 1)[None].float() / 255
    x = F.pad(x, (0, -x.shape[3] % codec.cfg.stride, 0, -x.shape[2] % codec.cfg.stride),
              mode="replicate")
    with torch.no_grad():
        approx = quantized_fmaps(codec, codec.analysis(x), torch.tensor([55]))
    steps = ((approx - codec.fmaps(data)) / codec._gains(55)[1]).abs()  # in quantizer steps
    assert (steps < 0.01).float().mean() > 0.95 and steps.max() < 1.01
    with torch.no_grad():  # any crop of the fMaps (validation crops to the picture): no grid
        y = codec.analysis(x)[:, :, :3, :5]
        assert quantized_fmaps(codec, y, torch.tensor([55])).shape == y.shape


def test_checkerboard_codes_anchors_then_the_rest_around_context_means(checkerboard_codec,
                                                                         small_photo, monkeypatch):
    """A checkerboard file codes each group's anchors around the hyperprior's exact means, then
    the other positions around means corrected from the decoded anchors (exact integer context
    nets); the first group decodes alone, and the float model (what training and classifier
    heads use) agrees up to rounding."""
    codec = checkerboard_codec
    data = codec.encode(small_photo, quality=55)
    _, y_hat = codec.quantized_fmaps(data)
    y_g = gained_fmaps(codec, small_photo, 55)
    assert (y_hat - y_g).abs().max() <= 0.5 + 1e-4
    with torch.no_grad():
        z = torch.round(codec.model.hyper_analysis(y_g)).double()
    _, mean = codec._hyper_params(z, codec.cfg.fmaps)
    sym = y_hat.double().numpy() - mean
    a = np.broadcast_to(anchor_mask(*y_hat.shape[2:]).numpy(), sym.shape)
    assert np.array_equal(sym[a], np.round(sym[a]))  # anchors: around the hyperprior's means
    assert not np.array_equal(sym[~a], np.round(sym[~a]))  # the rest: around corrected ones
    decoded = count_decoded_symbols(monkeypatch)
    _, first = codec.quantized_fmaps(data, channels=5)
    assert torch.equal(first, y_hat[:, :5])
    hw = y_hat[0, 0].numel()
    assert decoded[1:] == [(hw + 1) // 2 * 32, hw // 2 * 32]  # the first group: 2 passes
    x = torch.from_numpy(np.array(small_photo)).permute(2, 0, 1)[None].float() / 255
    x = F.pad(x, (0, -x.shape[3] % codec.cfg.stride, 0, -x.shape[2] % codec.cfg.stride),
              mode="replicate")
    with torch.no_grad():
        approx = codec.model.quantize(codec.analysis(x) * codec._gains(55)[0], 1e4)
    steps = (approx - y_hat).abs()  # in quantizer steps (before the inverse gain)
    assert (steps < 0.05).float().mean() > 0.95 and steps.max() < 1.05


def test_context_params_equal_the_full_exact_nets_at_every_non_anchor(checkerboard_codec,
                                                                      small_photo):
    """The codec computes the context only where it is used (sub-kernels per parity, both
    parities in one batch): the same integers as the full exact nets, call after call."""
    codec = checkerboard_codec
    _, y_hat = codec.quantized_fmaps(codec.encode(small_photo, quality=70))
    with torch.no_grad():
        z = torch.round(codec.model.hyper_analysis(gained_fmaps(codec, small_photo, 70))).double()
    log_scale, mean = codec._hyper_params(z, codec.cfg.fmaps)
    for g, s in enumerate(codec_module._fmap_groups(codec.cfg.fmaps)):
        anchors = (y_hat[:, s].double() * anchor_mask(*y_hat.shape[2:])).numpy()
        ctx_net, params_net = codec.context_exact[g]
        ctx = ctx_net(torch.from_numpy(anchors))
        want_ls, want_mu = log_scale[:, s].copy(), mean[:, s].copy()
        c = want_ls.shape[1]
        for pi, pj in ((0, 1), (1, 0)):
            d = params_net(torch.from_numpy(np.concatenate(
                [want_ls[:, :, pi::2, pj::2], want_mu[:, :, pi::2, pj::2],
                 ctx[:, :, pi::2, pj::2]], 1)))
            want_ls[:, :, pi::2, pj::2] += d[:, :c]
            want_mu[:, :, pi::2, pj::2] += d[:, c:]
        for _ in range(2):  # the second call reads the cached sub-kernels
            got_ls, got_mu = codec._context_params(g, log_scale[:, s], mean[:, s], anchors)
            assert np.array_equal(got_ls, want_ls) and np.array_equal(got_mu, want_mu)


# -- precision: bf16 transforms, exact entropy coding -------------------------------------------

def test_precision_setting_is_checked(tiny_model_dir, monkeypatch):
    with pytest.raises(ValueError, match="precision must be one of auto, bf16, float32"):
        codec_module.Codec(tiny_model_dir, precision="fp16")
    monkeypatch.setenv("CODEDVISION_PRECISION", "half")
    with pytest.raises(ValueError, match="CODEDVISION_PRECISION must be one of .* got 'half'"):
        codec_module.Codec(tiny_model_dir)
    monkeypatch.setenv("CODEDVISION_PRECISION", "float32")
    assert not codec_module.Codec(tiny_model_dir).bf16
    assert codec_module.Codec(tiny_model_dir, precision="bf16").bf16


def test_bf16_and_float32_codecs_read_each_others_files(default_model_dir, photo):
    exact = codec_module.Codec(default_model_dir, precision="float32")
    fast = codec_module.Codec(default_model_dir, precision="bf16")
    crop = photo.crop((64, 64, 64 + 192, 64 + 128))
    for writer, reader in ((fast, exact), (exact, fast)):
        data = writer.encode(crop, quality=60)
        assert torch.equal(writer.quantized_fmaps(data)[1], reader.quantized_fmaps(data)[1])
        a = np.asarray(writer.decode(data), dtype=np.int16)
        b = np.asarray(reader.decode(data), dtype=np.int16)
        assert np.abs(a - b).mean() < 0.3 and np.abs(a - b).max() <= 4  # grey levels
    # the encoders differ where bf16 moves an fMap or a hyper-latent across a rounding boundary
    # (a moved hyper-latent shifts the means of a whole 4x4 block of fMap positions, so many
    # quantized fMaps differ by a fraction); what a user sees must not: size and quality
    ref = np.asarray(crop, dtype=np.float64)
    sizes, psnrs = [], []
    for codec in (fast, exact):
        data = codec.encode(crop, quality=60)
        out = np.asarray(codec.decode(data), dtype=np.float64)
        sizes.append(len(data))
        psnrs.append(10 * np.log10(255**2 / ((out - ref) ** 2).mean()))
    assert abs(sizes[0] - sizes[1]) <= 0.01 * sizes[1], sizes
    assert abs(psnrs[0] - psnrs[1]) < 0.1, psnrs


@pytest.mark.parametrize("which", ["forward", "backward"])
def test_output_layer_stays_float32_under_bf16_autocast(which):
    from codedvision.networks import BackwardNet, ForwardNet
    from codedvision.precision import autocast

    torch.manual_seed(0)
    cfg = ModelConfig(channels=8, fmaps=6)
    net = ForwardNet(cfg) if which == "forward" else BackwardNet(cfg)
    with torch.no_grad():
        for p in net.parameters():  # the residual branches start at zero: give them a say
            p.add_(torch.randn_like(p) * 0.05)
        x = torch.rand(1, 3, 32, 48) if which == "forward" else torch.randn(1, 6, 2, 3)
        exact = net(x)
        assert torch.equal(net(x, float32_output=True), exact)  # no autocast: the same net
        with autocast(True):
            fast = net(x, float32_output=True)
            plain = net(x)
    assert fast.dtype == torch.float32 and plain.dtype == torch.bfloat16
    assert torch.allclose(fast, exact, rtol=0.05, atol=0.02)


def test_load_caches_the_shipped_model_per_precision():
    fast, exact = codec_module.load(precision="bf16"), codec_module.load(precision="float32")
    assert fast is codec_module.load(precision="bf16") and fast.bf16 and not exact.bf16
    assert exact is codec_module.load(precision="float32") and fast is not exact


def test_tiled_transforms_handle_a_batch(tiny_codec, monkeypatch):
    x = torch.rand(2, 3, 5 * tiny_codec.cfg.stride, 3 * tiny_codec.cfg.stride)
    monkeypatch.setattr(codec_module, "TILE_FMAP", 2)  # force tiles on this small input
    monkeypatch.setattr(codec_module, "TILE_OVERLAP", 1)
    one_by_one = torch.cat([tiny_codec.analysis(x[i : i + 1]) for i in range(2)])
    tiled = tiny_codec.analysis(x)
    assert tiled.shape == one_by_one.shape
    assert torch.allclose(tiled, one_by_one, atol=1e-4)
    pixels = tiny_codec.synthesis(tiled)
    assert pixels.shape == (2, 3, *x.shape[2:])
    assert torch.allclose(pixels[1:], tiny_codec.synthesis(tiled[1:]), atol=1e-4)


def test_channel_context_probe_starts_from_the_models_own_coding(checkerboard_codec,
                                                                  load_benchmark):
    """benchmarks/context_probe.py --kind channel codes group by group as the model does: with
    its channel context at zero correction (as it starts), the same bits and the model's own
    quantized fMaps (anchors around the hyperprior's means, the rest around the checkerboard
    context's)."""
    probe = load_benchmark("context_probe")
    model = checkerboard_codec.model
    cc = probe.ChannelContext(model.cfg.fmaps)
    y = torch.randn(2, model.cfg.fmaps, 8, 8, generator=torch.Generator().manual_seed(0)) * 4
    position = torch.tensor([0.0, 1.0])
    with torch.no_grad():
        out = probe.code_channel(model, cc, y, position, relaxed=False)
        assert len(cc.slices) > 1 and torch.equal(out["bits"], out["bits_context"])
        assert torch.equal(out["y_hat"], out["y_hat_context"])
        expected = model.quantize(y * model.gains(position)[0], 1e9)
    assert torch.allclose(out["y_hat"], expected, atol=1e-5)
