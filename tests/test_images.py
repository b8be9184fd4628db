"""Input conversions (codedvision.images.to_rgb8) and what the codec does with them."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from codedvision.images import InputError, atomic_write, to_rgb8

from conftest import synthetic


def _assert_round_trip(codec, image, size, note_part=None):
    res = codec.encode_ex(image, quality=50)
    assert codec.decode(res.data).size == size
    if note_part is not None:
        assert any(note_part in n for n in res.notes), res.notes
    return res


def test_rgb_image_needs_no_conversion():
    rgb, notes = to_rgb8(synthetic(10, 7))
    assert rgb.mode == "RGB" and rgb.size == (10, 7)
    assert notes == []


def test_grayscale_is_converted_to_rgb_with_a_note(tiny_codec):
    gray = Image.fromarray(np.arange(60, dtype=np.uint8).reshape(6, 10), "L")
    rgb, notes = to_rgb8(gray)
    a = np.asarray(rgb)
    assert rgb.mode == "RGB" and rgb.size == (10, 6)
    assert np.array_equal(a[..., 0], np.asarray(gray)) and np.array_equal(a[..., 0], a[..., 2])
    assert notes == ["grayscale converted to RGB"]
    _assert_round_trip(tiny_codec, gray, (10, 6), "grayscale")


def test_alpha_is_composited_onto_white_with_a_note(tiny_codec):
    a = np.zeros((5, 9, 4), np.uint8)
    a[..., 0] = 200
    a[:, :4, 3] = 255  # left opaque red-ish, right fully transparent
    rgba = Image.fromarray(a, "RGBA")
    rgb, notes = to_rgb8(rgba)
    out = np.asarray(rgb)
    assert rgb.mode == "RGB"
    assert (out[:, :4] == [200, 0, 0]).all()
    assert (out[:, 4:] == 255).all()
    assert notes == ["alpha channel composited onto white"]
    _assert_round_trip(tiny_codec, rgba, (9, 5), "alpha")


def test_palette_is_converted_to_rgb_with_a_note(tiny_codec):
    pal = synthetic(12, 8).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    rgb, notes = to_rgb8(pal)
    assert rgb.mode == "RGB" and rgb.size == (12, 8)
    assert np.array_equal(np.asarray(rgb), np.asarray(pal.convert("RGB")))
    assert notes == ["palette image converted to RGB"]
    _assert_round_trip(tiny_codec, pal, (12, 8), "palette")


def test_palette_with_transparency_is_composited_onto_white():
    pal = Image.new("P", (4, 4), 0)
    pal.putpalette([10, 20, 30] * 256)
    pal.info["transparency"] = 0
    rgb, notes = to_rgb8(pal)
    assert (np.asarray(rgb) == 255).all()
    assert notes == ["alpha channel composited onto white"]


def test_16_bit_grayscale_png_is_scaled_to_8_bit(tiny_codec, tmp_path):
    a = np.array([[0, 257, 257 * 100], [257 * 200, 65535, 1000]], dtype=np.uint16)
    path = tmp_path / "gray16.png"
    Image.fromarray(a).save(path)  # uint16 2-D: mode I;16
    with Image.open(path) as im:
        assert im.mode.startswith("I")  # Pillow opens 16-bit PNGs as I;16 (or I)
    rgb, notes = to_rgb8(path)
    assert rgb.mode == "RGB"
    assert np.array_equal(np.asarray(rgb)[..., 1], [[0, 1, 100], [200, 255, 4]])
    assert notes == ["16-bit grayscale converted to 8-bit RGB"]
    _assert_round_trip(tiny_codec, path, (3, 2), "16-bit")


def _png16(path, a: np.ndarray) -> None:
    """Write an HxWx3 uint16 array as a 16-bit colour PNG (Pillow cannot write one)."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body)))

    h, w, _ = a.shape
    rows = b"".join(b"\0" + a[y].astype(">u2").tobytes() for y in range(h))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def test_16_bit_colour_png_is_reduced_to_8_bit_with_a_note(tiny_codec, tmp_path):
    a8 = np.asarray(synthetic(5, 4))
    path = tmp_path / "rgb16.png"
    _png16(path, a8.astype(np.uint16) * 257)
    rgb, notes = to_rgb8(path)
    assert np.array_equal(np.asarray(rgb), a8)
    assert notes == ["16-bit colour reduced to 8 bits per channel"]
    _assert_round_trip(tiny_codec, path, (5, 4), "16-bit colour")


def test_numpy_uint8_array_is_accepted(tiny_codec):
    a = np.asarray(synthetic(11, 13))
    rgb, notes = to_rgb8(a)
    assert np.array_equal(np.asarray(rgb), a)
    assert notes == []
    _assert_round_trip(tiny_codec, a, (11, 13))


def test_numpy_uint16_array_is_scaled_to_8_bit_with_a_note(tiny_codec):
    a8 = np.asarray(synthetic(11, 13))
    a16 = a8.astype(np.uint16) * 257
    rgb, notes = to_rgb8(a16)
    assert np.array_equal(np.asarray(rgb), a8)
    assert notes == ["16-bit converted to 8-bit"]
    _assert_round_trip(tiny_codec, a16, (11, 13), "16-bit")


def test_numpy_2d_and_rgba_arrays_are_accepted():
    rgb, notes = to_rgb8(np.full((3, 5), 7, np.uint8))
    assert rgb.size == (5, 3) and notes == ["grayscale converted to RGB"]
    rgb, notes = to_rgb8(np.zeros((3, 5, 4), np.uint8))
    assert (np.asarray(rgb) == 255).all() and notes == ["alpha channel composited onto white"]


@pytest.mark.parametrize("array", [np.zeros((4, 4, 2), np.uint8), np.zeros((4, 4, 3), np.float32),
                                   np.zeros((0, 4, 3), np.uint8), np.zeros(5, np.uint8)],
                         ids=["2-channels", "float", "empty", "1-d"])
def test_unsupported_arrays_raise_input_error(array):
    with pytest.raises(InputError):
        to_rgb8(array)


def test_path_is_read(tiny_codec, tmp_path, small_photo):
    path = tmp_path / "photo.png"
    small_photo.save(path)
    rgb, notes = to_rgb8(path)
    assert np.array_equal(np.asarray(rgb), np.asarray(small_photo)) and notes == []
    rgb, _ = to_rgb8(str(path))
    assert rgb.size == small_photo.size
    _assert_round_trip(tiny_codec, path, small_photo.size)


def test_bad_paths_raise_one_line_input_error(tmp_path):
    (tmp_path / "junk.png").write_bytes(b"this is not an image")
    for path, why in [(tmp_path / "missing.png", "no such file"), (tmp_path, "is a directory"),
                      (tmp_path / "junk.png", "not a readable image")]:
        with pytest.raises(InputError, match=why) as e:
            to_rgb8(path)
        assert "\n" not in str(e.value)


def test_unsupported_type_raises_input_error():
    with pytest.raises(InputError, match="unsupported image type"):
        to_rgb8(12345)


@pytest.mark.parametrize("as_path", [True, False], ids=["path", "pil"])
def test_exif_orientation_is_applied(tiny_codec, tmp_path, as_path):
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    synthetic(40, 24).save(path, exif=exif.tobytes(), quality=95)
    if as_path:
        source = path
    else:
        source = Image.open(path)
    rgb, notes = to_rgb8(source)
    assert rgb.size == (24, 40)
    assert notes == ["EXIF orientation applied"]
    res = _assert_round_trip(tiny_codec, source, (24, 40), "EXIF orientation")
    assert (tiny_codec.header(res.data).width, tiny_codec.header(res.data).height) == (24, 40)


def test_atomic_write_refuses_existing_file_without_force(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")
    with pytest.raises(FileExistsError):
        atomic_write(path, b"new")
    assert path.read_bytes() == b"old"
    atomic_write(path, b"new", force=True)
    assert path.read_bytes() == b"new"
    assert list(tmp_path.iterdir()) == [path]


def test_atomic_write_leaves_no_partial_file_on_failure(tmp_path):
    with pytest.raises(InputError, match="unknown image format"):
        atomic_write(tmp_path / "out.unknownext", image=synthetic(4, 4))
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_gives_the_permissions_of_a_plain_write(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "out.bin", b"x")
        atomic_write(tmp_path / "out.png", image=synthetic(4, 4))
    finally:
        os.umask(old)
    for name in ("out.bin", "out.png"):  # not mkstemp's owner-only 0600
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644
