"""Pillow plugin: after `import codedvision`, Pillow reads and writes .cvz (default model)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

import codedvision  # noqa: F401  (registers the plugin)
from codedvision import container

from conftest import synthetic


def test_save_and_open_round_trip(tmp_path, small_photo, default_codec):
    path = tmp_path / "photo.cvz"
    small_photo.save(path, quality=60)
    data = path.read_bytes()
    assert data[:3] == b"CVZ"
    header = container.read_header(data)[0]
    assert header.quality == 60 and header.model_id == default_codec.model_id
    with Image.open(path) as im:
        assert im.format == "CVZ"
        assert im.size == small_photo.size and im.mode == "RGB"
        assert im.info["quality"] == 60
        assert im.info["model_id"] == default_codec.model_id.hex()
        pixels = np.asarray(im)
    assert pixels.shape == (small_photo.height, small_photo.width, 3)
    assert np.array_equal(pixels, np.asarray(default_codec.decode(data)))


def test_save_uses_default_quality_75(tmp_path):
    path = tmp_path / "q.cvz"
    synthetic(24, 16).save(path)
    assert container.read_header(path.read_bytes())[0].quality == 75


def test_open_reads_the_header_without_decoding(tmp_path, default_codec):
    path = tmp_path / "lazy.cvz"
    path.write_bytes(default_codec.encode(synthetic(50, 30), quality=20))
    with Image.open(path) as im:
        assert (im.format, im.size, im.mode) == ("CVZ", (50, 30), "RGB")
        assert im.info["quality"] == 20


def test_save_to_a_file_object_with_explicit_format(default_codec):
    buf = io.BytesIO()
    synthetic(20, 12).convert("L").save(buf, format="CVZ", quality=30)
    buf.seek(0)
    with Image.open(buf) as im:
        assert im.format == "CVZ" and im.size == (20, 12)
        im.load()
        assert im.mode == "RGB"


def test_open_of_a_non_cvz_file_is_not_claimed(tmp_path):
    path = tmp_path / "x.cvz"
    path.write_bytes(b"not a cvz file at all")
    with pytest.raises(Image.UnidentifiedImageError):
        Image.open(path)


def test_open_of_a_damaged_header_is_refused(tmp_path):
    path = tmp_path / "x.cvz"
    path.write_bytes(b"CVZ\x09" + bytes(20))
    with pytest.raises(Image.UnidentifiedImageError):
        Image.open(path)
