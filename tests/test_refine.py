"""Encoder-side refinement (codedvision.refine): the fMaps are optimised against the decoder,
and the result is an ordinary file."""

from __future__ import annotations

import pytest
import torch

import codedvision.codec
from codedvision.config import quality_to_position
from codedvision.images import InputError
from codedvision.refine import refine_fmaps


def _cost(model, x, y_g, pos) -> float:
    with torch.no_grad():
        lam = model.lambdas(torch.tensor([pos]))
        out = model.coded_rd(x, y_g, model.gains(torch.tensor([pos]))[1])
    return float(lam * 255.0**2 * out["mse"] + out["bits"] / (x.shape[2] * x.shape[3]))


@pytest.mark.parametrize("quality", [10, 90])
def test_refined_fmaps_cost_no_more_than_the_forward_networks(default_codec, small_photo,
                                                             quality):
    x, (h, w) = default_codec._to_tensor(small_photo)
    model = default_codec.model
    pos = quality_to_position(quality, len(model.cfg.lambdas))
    y_g = default_codec.analysis(x) * default_codec._gains(quality)[0]
    x = x[:, :, :h, :w]
    flags = [p.requires_grad for p in model.parameters()]
    with torch.no_grad():  # as an encoder is often called; refine turns gradients on itself
        refined = refine_fmaps(model, x, y_g, pos, steps=6)
    assert refined.shape == y_g.shape
    assert _cost(model, x, refined, pos) <= _cost(model, x, y_g, pos)
    assert [p.requires_grad for p in model.parameters()] == flags  # the model is left as it was
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(refine_fmaps(model, x, y_g, pos, steps=0), y_g)


def test_a_refined_file_is_an_ordinary_file(default_codec, small_photo, monkeypatch):
    calls = []

    def spy(model, x, y_g, position, steps, **kw):
        calls.append((tuple(x.shape[2:]), position, steps))
        return refine_fmaps(model, x, y_g, position, steps, **kw)

    monkeypatch.setattr(codedvision.codec, "refine_fmaps", spy)
    res = default_codec.encode_ex(small_photo, quality=60, refine=3)
    # the picture's own pixels (80x96), not the padded ones, at quality 60's position
    assert calls == [((80, 96), quality_to_position(60, len(default_codec.cfg.lambdas)), 3)]
    assert default_codec.header(res.data).quality == 60
    assert default_codec.decode(res.data).size == small_photo.size
    plain = default_codec.encode(small_photo, 60)
    assert default_codec.fmaps(res.data).shape == default_codec.fmaps(plain).shape


def test_refine_with_a_target_bpp_still_fits_it(default_codec, small_photo):
    target = len(default_codec.encode(small_photo, 50)) * 8 / (96 * 80)
    res = default_codec.encode_ex(small_photo, bpp=target, refine=2)
    assert len(res.data) * 8 / (96 * 80) <= target


@pytest.mark.parametrize("steps", [-1, 1.5, True, "3"])
def test_refine_steps_must_be_a_whole_number(tiny_codec, small_photo, steps):
    with pytest.raises(ValueError, match="refine"):
        tiny_codec.encode_ex(small_photo, refine=steps)


def test_the_rate_distortion_estimate_counts_the_pictures_own_pixels(default_codec,
                                                                    small_photo):
    x, (h, w) = default_codec._to_tensor(small_photo)  # padded by repeating the edges
    y_g = default_codec.analysis(x) * default_codec._gains(50)[0]
    inv = default_codec._gains(50)[1]
    with torch.no_grad():  # the same fMaps, scored on the picture or on its padded copy
        mse_own = default_codec.model.coded_rd(x[:, :, :h, :w], y_g, inv)["mse"]
        mse_pad = default_codec.model.coded_rd(x, y_g, inv)["mse"]
    assert x.shape[2:] != (h, w) and not torch.allclose(mse_own, mse_pad)


def test_refine_needs_a_rate_estimate_and_a_picture_that_fits(factorized_codec, tiny_codec,
                                                              small_photo, monkeypatch):
    with pytest.raises(ValueError, match="hyperprior"):
        factorized_codec.encode_ex(small_photo, refine=2)
    monkeypatch.setattr(codedvision.codec, "REFINE_MAX_PIXELS", 1000)
    with pytest.raises(InputError, match="pixels"):
        tiny_codec.encode_ex(small_photo, refine=2)
    assert tiny_codec.encode_ex(small_photo, refine=0).data  # without refine: no limit
