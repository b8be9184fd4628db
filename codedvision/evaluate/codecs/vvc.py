"""VVC intra (libvvenc) through the ffmpeg binary that imageio-ffmpeg ships (optional).

The strongest classical codec here, but 4:2:0 10-bit only: RGB is converted to full-range
BT.709 YCbCr for encoding and back for decoding, by the same ffmpeg.

The file is the raw Annex-B VVC stream (``.266``). libvvenc refuses odd widths and heights, so
an odd-sized image is padded by repeating its last row/column, and the file then starts with an
8-byte prefix, ``b"\\xffPAD"`` and the true width and height as big-endian uint16, so that the
decoder can crop. An Annex-B stream starts with a 0x00 byte, so the prefix is unambiguous.
"""

from __future__ import annotations

import functools
import io
import struct
import subprocess

import numpy as np
from PIL import Image

from .base import ImageCodec, Setting, to_rgb

_PAD_MAGIC = b"\xffPAD"
# Same scaler flags both ways so that the colour conversion is as exact as ffmpeg gets it.
_FLAGS = "flags=accurate_rnd+full_chroma_int"
_TIMEOUT_S = 900


@functools.cache
def _ffmpeg() -> str | None:
    """Path of the bundled ffmpeg if it has the libvvenc encoder and a VVC decoder, else None."""
    try:
        import imageio_ffmpeg

        exe = imageio_ffmpeg.get_ffmpeg_exe()
        out = subprocess.run(
            [exe, "-hide_banner", "-encoders"], capture_output=True, text=True, timeout=60
        ).stdout
        dec = subprocess.run(
            [exe, "-hide_banner", "-decoders"], capture_output=True, text=True, timeout=60
        ).stdout
    except (ImportError, OSError, RuntimeError, subprocess.SubprocessError):
        return None
    if "libvvenc" not in out or " vvc " not in dec:
        return None
    return exe


def _run(args: list[str], data: bytes) -> bytes:
    proc = subprocess.run(args, input=data, capture_output=True, timeout=_TIMEOUT_S)
    if proc.returncode != 0:
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise RuntimeError(f"ffmpeg failed ({proc.returncode}): {' | '.join(tail)}")
    return proc.stdout


class VvcCodec(ImageCodec):
    """VVC intra at a fixed QP, preset medium, adaptive QP off (it costs PSNR)."""

    name = "vvc"
    label = "VVC intra 4:2:0 (vvenc)"
    extension = "266"
    setting_name = "QP"
    setting_range = (0, 63)
    default_settings = (46, 42, 38, 34, 30, 27, 24)
    options = (
        "ffmpeg libvvenc, -preset medium -qp QP -qpa 0, yuv420p10le full-range BT.709, "
        "odd sizes padded to even"
    )
    opt_in = ("slow (about 20 minutes for Kodak at its 7 QPs on 2 cores); add it to --codecs "
              "to run it")

    def encode(self, img: Image.Image, setting: Setting) -> bytes:
        exe = _ffmpeg()
        if exe is None:
            raise RuntimeError("vvc: no ffmpeg with libvvenc")
        rgb = np.asarray(to_rgb(img))
        h, w = rgb.shape[:2]
        padded = np.pad(rgb, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        ph, pw = padded.shape[:2]
        # Scale/convert in one filter so ffmpeg does not insert its own, less exact, conversion.
        stream = _run(
            [
                exe, "-hide_banner", "-loglevel", "error",
                "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{pw}x{ph}", "-i", "-",
                "-vf", f"scale=out_color_matrix=bt709:out_range=full:{_FLAGS},format=yuv420p10le",
                "-c:v", "libvvenc", "-preset", "medium", "-qp", str(int(setting)), "-qpa", "0",
                "-frames:v", "1", "-f", "vvc", "-",
            ],
            padded.tobytes(),
        )
        if (ph, pw) != (h, w):
            return _PAD_MAGIC + struct.pack(">HH", w, h) + stream
        return stream

    def decode(self, data: bytes) -> Image.Image:
        exe = _ffmpeg()
        if exe is None:
            raise RuntimeError("vvc: no ffmpeg with a VVC decoder")
        crop = None
        if data.startswith(_PAD_MAGIC):
            crop = struct.unpack(">HH", data[4:8])
            data = data[8:]
        # PPM keeps the decoder's size in the output, so it need not be parsed from the stream.
        ppm = _run(
            [
                exe, "-hide_banner", "-loglevel", "error", "-f", "vvc", "-i", "-",
                "-vf", f"scale=in_color_matrix=bt709:in_range=full:{_FLAGS},format=rgb24",
                "-frames:v", "1", "-f", "image2pipe", "-c:v", "ppm", "-",
            ],
            data,
        )
        with Image.open(io.BytesIO(ppm)) as im:
            im.load()
            out = to_rgb(im)
        return out.crop((0, 0, crop[0], crop[1])) if crop else out

    def version(self) -> str:
        import imageio_ffmpeg

        exe = _ffmpeg()
        first = subprocess.run(
            [exe, "-version"], capture_output=True, text=True, timeout=60
        ).stdout.splitlines()[0]
        return f"imageio-ffmpeg {imageio_ffmpeg.__version__}, {first.split(' Copyright')[0]}"

    def unavailable_reason(self) -> str:
        try:
            import imageio_ffmpeg  # noqa: F401
        except ImportError:
            return "imageio-ffmpeg is not installed (pip install imageio-ffmpeg)"
        if _ffmpeg() is None:
            return "the ffmpeg of imageio-ffmpeg has no libvvenc encoder or VVC decoder"
        return ""

    def describe_setting(self, setting: Setting) -> str:
        return f"QP {setting:g}"
