"""The .cvz container: round trips, every malformed-file path, and corruption of real files."""

from __future__ import annotations

import random
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codedvision import container
from codedvision.container import MAX_PIXELS, MAX_SIDE, FormatError, Header

from conftest import synthetic

HEADER = Header(model_id=b"\x01\x02\x03\x04", height=17, width=33, quality=75)
PAYLOAD = bytes(range(40))
# the fixtures these property tests use are read-only (a codec and a file), safe to share
FIXTURES_OK = [HealthCheck.function_scoped_fixture]


def _assert_one_line_format_error(data: bytes, match: str | None = None) -> FormatError:
    with pytest.raises(FormatError, match=match) as e:
        container.unpack(data)
    msg = str(e.value)
    assert msg and "\n" not in msg
    return e.value


def test_pack_unpack_round_trip():
    data = container.pack(HEADER, PAYLOAD)
    assert data[:4] == b"CVZ\x02"
    header, payload = container.unpack(data)
    assert header == HEADER and payload == PAYLOAD
    head, start, length = container.read_header(data)
    assert head == HEADER and length == len(PAYLOAD) and data[start:] == PAYLOAD


def test_empty_payload_round_trips():
    assert container.unpack(container.pack(HEADER, b"")) == (HEADER, b"")


headers = st.builds(
    Header,
    model_id=st.binary(min_size=4, max_size=4),
    height=st.integers(1, MAX_SIDE),
    width=st.integers(1, MAX_SIDE),
    quality=st.integers(0, 100),
).filter(lambda h: h.height * h.width <= MAX_PIXELS)


@settings(max_examples=300, deadline=None)
@given(header=headers, payload=st.binary(max_size=300))
def test_pack_unpack_round_trips_any_valid_header(header, payload):
    data = container.pack(header, payload)
    assert container.unpack(data) == (header, payload)
    assert container.read_header(data)[0] == header


@settings(max_examples=200, deadline=None)
@given(height=st.integers(-5, 2 * MAX_SIDE), width=st.integers(-5, 2 * MAX_SIDE),
       quality=st.integers(-5, 300), id_len=st.integers(0, 6))
def test_pack_refuses_invalid_headers(height, width, quality, id_len):
    header = Header(b"\0" * id_len, height, width, quality)
    valid = (id_len == 4 and 1 <= height <= MAX_SIDE and 1 <= width <= MAX_SIDE
             and height * width <= MAX_PIXELS and 0 <= quality <= 100)
    if valid:
        assert container.unpack(container.pack(header, b"x")) == (header, b"x")
    else:
        with pytest.raises((FormatError, ValueError)):
            container.pack(header, b"x")


def test_wrong_magic_raises_format_error():
    data = container.pack(HEADER, PAYLOAD)
    _assert_one_line_format_error(b"PNG" + data[3:], "magic")
    _assert_one_line_format_error(b"", "magic")
    _assert_one_line_format_error(b"\x89PNG\r\n\x1a\n" + bytes(100), "magic")


def test_unknown_version_raises_format_error():
    data = container.pack(HEADER, PAYLOAD)
    _assert_one_line_format_error(data[:3] + b"\x03" + data[4:], "version 3")
    # version 1 files (one block of fMaps) came from earlier releases: say so
    _assert_one_line_format_error(data[:3] + b"\x01" + data[4:], "version 1 .*earlier")


def test_bad_crc_raises_format_error():
    data = bytearray(container.pack(HEADER, PAYLOAD))
    data[-1] ^= 0x10
    _assert_one_line_format_error(bytes(data), "CRC")


def test_crc_covers_the_header():
    """A corrupted size or quality must not decode, silently, to a different image."""
    data = container.pack(HEADER, PAYLOAD)
    _, start, _ = container.read_header(data)
    for pos in range(4, start - 4):  # model id, sizes, quality, payload length
        for bit in range(8):
            flipped = bytearray(data)
            flipped[pos] ^= 1 << bit
            _assert_one_line_format_error(bytes(flipped))
    assert _raw(17, 33, 75, PAYLOAD) == container.pack(Header(b"ABCD", 17, 33, 75), PAYLOAD)


def test_truncated_file_raises_format_error():
    data = container.pack(HEADER, PAYLOAD)
    _assert_one_line_format_error(data[:-1], "truncated")
    for n in range(len(data)):
        _assert_one_line_format_error(data[:n])


def test_trailing_bytes_raise_format_error():
    data = container.pack(HEADER, PAYLOAD)
    _assert_one_line_format_error(data + b"\0", "unexpected bytes")


def _raw(height: int, width: int, quality: int = 50, payload: bytes = b"") -> bytes:
    """A container written by hand (pack would refuse the invalid fields)."""
    head = (b"CVZ" + bytes([container.VERSION]) + b"ABCD" + container._uleb(height)
            + container._uleb(width) + bytes([quality]) + container._uleb(len(payload)))
    return head + zlib.crc32(head + payload).to_bytes(4, "big") + payload


@pytest.mark.parametrize("height, width", [(0, 10), (10, 0), (MAX_SIDE + 1, 10),
                                           (10, MAX_SIDE + 1), (MAX_SIDE, MAX_SIDE),
                                           (2**34, 1)])
def test_out_of_bounds_size_raises_format_error(height, width):
    _assert_one_line_format_error(_raw(height, width), "out of bounds|exceeds")


def test_quality_above_100_raises_format_error():
    _assert_one_line_format_error(_raw(10, 10, quality=101), "quality")


def test_overlong_varint_raises_format_error():
    data = b"CVZ\x02ABCD" + b"\xff" * 6 + b"\x01" * 10
    _assert_one_line_format_error(data, "varint")


def test_unknown_model_id_raises_format_error_from_decode(tiny_codec):
    data = tiny_codec.encode(synthetic(16, 16), quality=50)
    header, payload = container.unpack(data)
    other = container.pack(Header(b"\xde\xad\xbe\xef", header.height, header.width,
                                  header.quality), payload)
    with pytest.raises(FormatError, match="deadbeef") as e:
        tiny_codec.decode(other)
    assert "\n" not in str(e.value)
    with pytest.raises(FormatError):
        tiny_codec.fmaps(other)


def test_payload_length_not_multiple_of_4_raises_format_error(tiny_codec):
    header = Header(tiny_codec.model_id, 16, 16, 50)
    with pytest.raises(FormatError, match="multiple of 4"):
        tiny_codec.decode(container.pack(header, b"\0" * 7))


# -- corruption of real files: always a FormatError, quickly ---------------------------------------

@pytest.fixture(scope="module")
def real_cvz(tiny_codec) -> bytes:
    """A real file of a small image (decoding takes milliseconds)."""
    return tiny_codec.encode(synthetic(40, 24, seed=3), quality=60)


def _decode_must_fail(codec, data: bytes) -> None:
    with pytest.raises(FormatError) as e:
        codec.decode(data)
    assert "\n" not in str(e.value)


def test_every_truncation_of_a_real_file_raises_format_error(tiny_codec, real_cvz):
    for n in range(len(real_cvz)):
        _decode_must_fail(tiny_codec, real_cvz[:n])


def test_seeded_byte_flips_of_a_real_file_raise_format_error(tiny_codec, real_cvz):
    rng = random.Random(1234)
    for _ in range(200):
        data = bytearray(real_cvz)
        for pos in rng.sample(range(len(data)), rng.choice([1, 1, 1, 2, 5])):
            data[pos] ^= rng.randrange(1, 256)
        _decode_must_fail(tiny_codec, bytes(data))


def test_every_single_bit_flip_in_the_header_raises_format_error(tiny_codec, real_cvz):
    _, start, _ = container.read_header(real_cvz)
    for pos in range(start):
        for bit in range(8):
            data = bytearray(real_cvz)
            data[pos] ^= 1 << bit
            _decode_must_fail(tiny_codec, bytes(data))


@settings(max_examples=150, deadline=None, suppress_health_check=FIXTURES_OK)
@given(data=st.data())
def test_random_flips_and_cuts_of_a_real_file_raise_format_error(tiny_codec, real_cvz, data):
    raw = bytearray(real_cvz)
    positions = data.draw(st.lists(st.integers(0, len(raw) - 1), min_size=1, max_size=4,
                                          unique=True))
    for p in positions:
        raw[p] ^= data.draw(st.integers(1, 255))
    cut = data.draw(st.one_of(st.none(), st.integers(0, len(raw))))
    if cut is not None:
        raw = raw[:cut]
    _decode_must_fail(tiny_codec, bytes(raw))


@pytest.mark.parametrize("which", ["tiny_codec", "mean_scale_codec", "checkerboard_codec"])
@settings(max_examples=60, deadline=None, suppress_health_check=FIXTURES_OK)
@given(payload=st.binary(min_size=0, max_size=200), size=st.tuples(st.integers(1, 80),
                                                                    st.integers(1, 80)))
def test_garbage_payload_with_valid_crc_decodes_or_raises_format_error(request, which, payload,
                                                                       size):
    """A well-formed header over a garbage payload (CRC recomputed): never another exception
    (for the checkerboard model too: its context nets run on whatever was decoded)."""
    codec = request.getfixturevalue(which)
    data = container.pack(Header(codec.model_id, size[0], size[1], 50), payload)
    try:
        image = codec.decode(data)
    except FormatError as e:
        assert "\n" not in str(e)
    else:
        assert image.size == (size[1], size[0])
