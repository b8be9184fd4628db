"""The one interface every codec in the evaluation sits behind.

A codec turns an 8-bit RGB PIL image and one setting (a quality, a QP or a target bpp) into the
bytes of a complete file, and those bytes back into an RGB image. Adding a codec to the
evaluation is one subclass plus one line in the registry (``codecs/__init__.py``).
"""

from __future__ import annotations

import abc
import io
from typing import ClassVar

from PIL import Image

Setting = int | float


class ImageCodec(abc.ABC):
    """A lossy image codec under test.

    Class attributes:
        name: short lower-case id used on the command line, in file names and in results.json.
        label: human-readable name for plots and the report.
        extension: file suffix of the encoded file written to the cache (no dot).
        setting_name: what a setting means ("quality", "QP", "bpp"), for labels.
        setting_type: int or float; settings given as text are converted to it.
        setting_range: inclusive (low, high) range of valid settings.
        default_settings: settings run when none are given, chosen to span about 0.1..2 bpp on
            Kodak-like photos, lowest rate first.
        options: the fixed encoder options, as text. It goes into the report and into the cache
            key, so changing how a codec is driven invalidates its cached points.
        opt_in: why the codec is left out of a run that names no codecs (e.g. it is very slow),
            or "" when it runs by default; it still runs when asked for by name.
    """

    name: ClassVar[str]
    label: ClassVar[str]
    extension: ClassVar[str]
    setting_name: ClassVar[str] = "quality"
    setting_type: ClassVar[type] = int
    setting_range: ClassVar[tuple[float, float]] = (0, 100)
    default_settings: ClassVar[tuple[Setting, ...]]
    options: ClassVar[str] = ""
    opt_in: ClassVar[str] = ""

    @abc.abstractmethod
    def encode(self, img: Image.Image, setting: Setting) -> bytes:
        """Encode an RGB image at one setting; returns the bytes of the whole file."""

    @abc.abstractmethod
    def decode(self, data: bytes) -> Image.Image:
        """Decode the bytes from encode() back to an RGB image of the original size."""

    @abc.abstractmethod
    def version(self) -> str:
        """Versions of the libraries doing the work (part of the cache key)."""

    def available(self) -> bool:
        """Whether this codec can run here (its package or binary is importable)."""
        return not self.unavailable_reason()

    def unavailable_reason(self) -> str:
        """Why the codec cannot run here, as one line; empty when it can."""
        return ""

    def check_setting(self, value: object) -> Setting:
        """Convert a setting (a number or its text) to setting_type; ValueError when invalid."""
        try:
            number = float(value)  # accepts "22", "0.5", 22, 0.5
        except (TypeError, ValueError):
            raise ValueError(f"{self.name}: setting {value!r} is not a number") from None
        if self.setting_type is int:
            if number != int(number):
                raise ValueError(f"{self.name}: {self.setting_name} {value!r} must be an integer")
            number = int(number)
        low, high = self.setting_range
        if not low <= number <= high:
            raise ValueError(
                f"{self.name}: {self.setting_name} {value!r} is outside {low:g}..{high:g}"
            )
        return number

    def describe_setting(self, setting: Setting) -> str:
        """Short label of a setting, e.g. 'q=75' or 'QP 32'."""
        if self.setting_name == "quality":
            return f"q={setting:g}"
        return f"{self.setting_name} {setting:g}"


def to_rgb(img: Image.Image) -> Image.Image:
    """The decoded image as 8-bit RGB (decoders may hand back RGBA, P or L)."""
    return img if img.mode == "RGB" else img.convert("RGB")


class PillowCodec(ImageCodec):
    """A codec whose files Pillow (or a Pillow plugin) writes and reads."""

    @staticmethod
    def save(img: Image.Image, fmt: str, **params) -> bytes:
        """The bytes of `img` saved by Pillow in format `fmt` with these encoder options."""
        buf = io.BytesIO()
        img.save(buf, fmt, **params)
        return buf.getvalue()

    def decode(self, data: bytes) -> Image.Image:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            return to_rgb(im)
