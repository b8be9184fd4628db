"""The .cvz container: a small header, one range-coded payload, a CRC32. See docs/format.md.

    offset  size  field
    0       3     magic b"CVZ"
    3       1     format version (2)
    4       4     model id: first 4 bytes of the SHA-256 of the released weights file
    8       var   height (ULEB128), width (ULEB128)
    .       1     quality, 0..100
    .       var   payload length in bytes (ULEB128)
    .       4     CRC32 of all bytes before it and of the payload, big-endian
    .       n     payload

The CRC covers the header too: a corrupted size or quality would otherwise decode, silently,
to a wrong image.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

MAGIC = b"CVZ"
VERSION = 2  # 2: fMaps coded in groups of FMAP_GROUP channels (1: all in one block)
FMAP_GROUP = 32  # fMap channels per independently decodable group of the payload
MAX_SIDE = 1 << 16  # 65536 px per side
MAX_PIXELS = 1 << 28  # 268 Mpx: refuse headers that would ask for absurd allocations


def fmap_groups(channels: int, size: int = FMAP_GROUP) -> list[slice]:
    """The payload's fMap channel groups (`size` channels each, the last maybe fewer), in
    coding order."""
    return [slice(c, min(c + size, channels)) for c in range(0, channels, size)]


class FormatError(ValueError):
    """The data is not a valid .cvz file (the message says why, in one line)."""


@dataclass(frozen=True)
class Header:
    model_id: bytes
    height: int
    width: int
    quality: int

    def validate(self) -> None:
        if len(self.model_id) != 4:
            raise FormatError("model id must be 4 bytes")
        if not (1 <= self.height <= MAX_SIDE and 1 <= self.width <= MAX_SIDE):
            raise FormatError(f"image size {self.width}x{self.height} out of bounds")
        if self.height * self.width > MAX_PIXELS:
            raise FormatError(f"image size {self.width}x{self.height} exceeds {MAX_PIXELS} pixels")
        if not 0 <= self.quality <= 100:
            raise FormatError(f"quality {self.quality} out of 0..100")


def _uleb(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _read_uleb(data: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    for i in range(5):  # at most 35 bits: ample for every field
        if pos >= len(data):
            raise FormatError("truncated header")
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7
    raise FormatError("malformed header (varint too long)")


def pack(header: Header, payload: bytes) -> bytes:
    """Serialise a header and payload into .cvz bytes."""
    header.validate()
    head = (MAGIC + bytes([VERSION]) + header.model_id + _uleb(header.height)
            + _uleb(header.width) + bytes([header.quality]) + _uleb(len(payload)))
    return head + zlib.crc32(payload, zlib.crc32(head)).to_bytes(4, "big") + payload


def read_header(data: bytes) -> tuple[Header, int, int]:
    """Parse and check the header. Returns (header, payload offset, payload length)."""
    if len(data) < 4 or data[:3] != MAGIC:
        raise FormatError("not a .cvz file (bad magic bytes)")
    if data[3] != VERSION:
        hint = " (written by an earlier codedvision and its model)" if data[3] < VERSION else ""
        raise FormatError(
            f"unsupported .cvz format version {data[3]}{hint}; this build reads {VERSION}")
    if len(data) < 8:
        raise FormatError("truncated header")
    model_id = bytes(data[4:8])
    height, pos = _read_uleb(data, 8)
    width, pos = _read_uleb(data, pos)
    if pos >= len(data):
        raise FormatError("truncated header")
    quality = data[pos]
    length, pos = _read_uleb(data, pos + 1)
    if pos + 4 > len(data):
        raise FormatError("truncated header")
    header = Header(model_id, height, width, quality)
    header.validate()
    return header, pos + 4, length


def unpack(data: bytes) -> tuple[Header, bytes]:
    """Parse .cvz bytes, checking lengths and the CRC. Raises FormatError with a reason."""
    header, start, length = read_header(data)
    payload = bytes(data[start:])
    if len(payload) < length:
        raise FormatError(f"truncated file ({len(payload)} of {length} payload bytes)")
    if len(payload) > length:
        raise FormatError(f"{len(payload) - length} unexpected bytes after the payload")
    crc = int.from_bytes(data[start - 4 : start], "big")
    if zlib.crc32(payload, zlib.crc32(data[: start - 4])) != crc:
        raise FormatError("CRC mismatch: the file is corrupted")
    return header, payload
