"""HEVC intra 4:4:4 in a HEIF file (x265 through pillow-heif): the anchor of every BD-rate.

It plays the role BPG plays in the learned-compression literature: on Kodak it matches the
published BPG 4:4:4 points within 1.5% BD-rate (shared/codecs.md).
"""

from __future__ import annotations

import io

from PIL import Image

from .base import ImageCodec, Setting, to_rgb


def _pillow_heif():
    import pillow_heif

    return pillow_heif


class HevcCodec(ImageCodec):
    """HEVC intra, 4:4:4, fixed QP, with x265's rate-shaping tools off.

    Fixed QP instead of pillow-heif's quality=, whose mapping is steep and coarse. psy-rd=0
    because with it x265 adds a +6 chroma QP offset at 4:4:4; aq-mode=0 and ipratio=1 so that
    the QP is what is coded.
    """

    name = "hevc"
    label = "HEVC intra 4:4:4 (x265)"
    extension = "heic"
    setting_name = "QP"
    setting_range = (0, 51)
    default_settings = (43, 40, 37, 34, 31, 28, 25, 22)
    options = "HEIF, chroma=444, x265:qp=QP, x265:ipratio=1, x265:psy-rd=0, x265:aq-mode=0"

    def encode(self, img: Image.Image, setting: Setting) -> bytes:
        heif = _pillow_heif().from_pillow(img)
        buf = io.BytesIO()
        heif.save(
            buf,
            format="HEIF",
            chroma=444,
            enc_params={
                "x265:qp": str(int(setting)),
                "x265:ipratio": "1",
                "x265:psy-rd": "0",
                "x265:aq-mode": "0",
            },
        )
        return buf.getvalue()

    def decode(self, data: bytes) -> Image.Image:
        return to_rgb(_pillow_heif().open_heif(io.BytesIO(data)).to_pillow())

    def version(self) -> str:
        ph = _pillow_heif()
        info = ph.libheif_info()
        enc = info.get("encoders", {}).get("x265", "x265 ?")
        dec = info.get("decoders", {}).get("libde265", "libde265 ?")
        return f"pillow-heif {ph.__version__}, libheif {ph.libheif_version()}, {enc}, {dec}"

    def unavailable_reason(self) -> str:
        try:
            ph = _pillow_heif()
        except ImportError:
            return "pillow-heif is not installed"
        if "x265" not in ph.libheif_info().get("encoders", {}):
            return "this pillow-heif build has no x265 encoder"
        return ""

    def describe_setting(self, setting: Setting) -> str:
        return f"QP {setting:g}"
