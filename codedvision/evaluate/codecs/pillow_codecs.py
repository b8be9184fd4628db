"""Classical codecs that Pillow itself writes: JPEG, JPEG 2000, WebP and AVIF.

Settings and options are the ones verified on this project's machines (shared/codecs.md).
"""

from __future__ import annotations

import PIL
from PIL import Image, features

from .base import PillowCodec, Setting


class JpegCodec(PillowCodec):
    """Baseline JPEG (libjpeg-turbo) with 4:4:4 chroma and optimised Huffman tables."""

    name = "jpeg"
    label = "JPEG 4:4:4"
    extension = "jpg"
    default_settings = (5, 10, 20, 35, 50, 70, 85)
    options = "subsampling=0 (4:4:4), optimize=True"

    def encode(self, img: Image.Image, setting: Setting) -> bytes:
        return self.save(img, "JPEG", quality=int(setting), subsampling=0, optimize=True)

    def version(self) -> str:
        return f"Pillow {PIL.__version__}, libjpeg-turbo {features.version('libjpeg_turbo')}"


class Jpeg2000Codec(PillowCodec):
    """JPEG 2000 (OpenJPEG) at a target rate, 9/7 wavelet with the colour transform.

    The setting is the target rate in bpp; OpenJPEG takes a compression ratio against 24-bit
    RGB, so the ratio is 24 / bpp. Pillow's defaults (reversible 5/3 wavelet, no colour
    transform) lose about 4 dB, hence irreversible=True and mct=1.
    """

    name = "jpeg2000"
    label = "JPEG 2000"
    extension = "j2k"
    setting_name = "bpp"
    setting_type = float
    setting_range = (0.01, 24.0)
    default_settings = (0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0)
    options = (
        "quality_mode=rates, quality_layers=[24/bpp], irreversible=True, mct=1, raw codestream"
    )

    def encode(self, img: Image.Image, setting: Setting) -> bytes:
        # no_jp2 writes the bare codestream: no JP2 boxes counted in the rate.
        return self.save(
            img,
            "JPEG2000",
            quality_mode="rates",
            quality_layers=[24.0 / float(setting)],
            irreversible=True,
            mct=1,
            no_jp2=True,
        )

    def version(self) -> str:
        return f"Pillow {PIL.__version__}, OpenJPEG {features.version('jpg_2000')}"

    def unavailable_reason(self) -> str:
        return "" if features.check("jpg_2000") else "Pillow was built without OpenJPEG"


class WebpCodec(PillowCodec):
    """Lossy WebP (VP8 intra; always 4:2:0), slowest and best method."""

    name = "webp"
    label = "WebP"
    extension = "webp"
    default_settings = (2, 10, 25, 45, 65, 80, 90)
    options = "method=6 (lossy WebP is always 4:2:0)"

    def encode(self, img: Image.Image, setting: Setting) -> bytes:
        return self.save(img, "WEBP", quality=int(setting), method=6)

    def version(self) -> str:
        return f"Pillow {PIL.__version__}, libwebp {features.version('webp')}"

    def unavailable_reason(self) -> str:
        return "" if features.check("webp") else "Pillow was built without libwebp"


class AvifCodec(PillowCodec):
    """AVIF (AV1 intra via libavif/aom), 4:4:4, tuned for PSNR.

    The default tuning is perceptual and about 10% worse in PSNR BD-rate, so tune=psnr.
    """

    name = "avif"
    label = "AVIF 4:4:4"
    extension = "avif"
    default_settings = (10, 22, 35, 47, 58, 68, 78)
    options = "subsampling=4:4:4, speed=6, advanced={tune: psnr}"

    def encode(self, img: Image.Image, setting: Setting) -> bytes:
        return self.save(
            img,
            "AVIF",
            quality=int(setting),
            subsampling="4:4:4",
            speed=6,
            advanced={"tune": "psnr"},
        )

    def version(self) -> str:
        try:
            from PIL import _avif

            libs = _avif.codec_versions()
        except (ImportError, AttributeError):
            libs = ""
        return f"Pillow {PIL.__version__}, libavif {features.version('avif')} ({libs})"

    def unavailable_reason(self) -> str:
        if not features.check("avif"):
            return "Pillow was built without libavif (needs Pillow >= 11.3)"
        return ""
