"""Registry of the codecs the evaluation knows, in the order they appear in plots and tables."""

from __future__ import annotations

from .base import ImageCodec, Setting
from .hevc import HevcCodec
from .jxl import JxlCodec
from .learned import CodedVisionCodec, CodedVisionRefinedCodec
from .pillow_codecs import AvifCodec, Jpeg2000Codec, JpegCodec, WebpCodec
from .vvc import VvcCodec

#: Every codec class by name. Adding a codec: write the class, add it here.
CODECS: dict[str, type[ImageCodec]] = {
    cls.name: cls
    for cls in (
        CodedVisionCodec,
        CodedVisionRefinedCodec,
        HevcCodec,
        VvcCodec,
        AvifCodec,
        JxlCodec,
        WebpCodec,
        Jpeg2000Codec,
        JpegCodec,
    )
}

#: The anchor of the BD-rate table.
ANCHOR = HevcCodec.name

_instances: dict[str, ImageCodec] = {}


def get_codec(name: str) -> ImageCodec:
    """The (per-process, shared) instance of a codec; ValueError for an unknown name."""
    if name not in CODECS:
        raise ValueError(f"unknown codec {name!r}; known: {', '.join(CODECS)}")
    if name not in _instances:
        _instances[name] = CODECS[name]()
    return _instances[name]


__all__ = ["ANCHOR", "CODECS", "ImageCodec", "Setting", "get_codec"]
