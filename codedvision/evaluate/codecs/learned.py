"""This project's learned codec, through its public API.

Expects ``codec = codedvision.load()`` with ``codec.encode(img, quality=q) -> bytes`` and
``codec.decode(data) -> PIL.Image``; reports itself unavailable while ``codedvision.load`` does
not exist.
"""

from __future__ import annotations

import importlib
import importlib.metadata

from PIL import Image

from .base import ImageCodec, Setting, to_rgb


def _package():
    return importlib.import_module("codedvision")


def measured_model(version: str) -> str | None:
    """The model id in a version string that CodedVisionCodec.version() wrote (e.g. a committed
    results.json's), or None when it names none."""
    for part in version.split(","):
        if part.strip().startswith("model "):
            return part.strip()[len("model "):]
    return None


class CodedVisionCodec(ImageCodec):
    """codedvision at quality 0..100 (the released model that codedvision.load() returns)."""

    name = "codedvision"
    label = "codedvision"
    extension = "cvz"
    default_settings = (0, 15, 30, 45, 60, 75, 90, 100)
    options = "codedvision.load(), encode(img, quality=q)"

    def __init__(self) -> None:
        self._codec = None

    def _loaded(self):
        # Loaded on first use, once per process: workers each hold their own copy.
        if self._codec is None:
            self._codec = _package().load()
        return self._codec

    def encode(self, img: Image.Image, setting: Setting) -> bytes:
        return bytes(self._loaded().encode(img, quality=setting))

    def decode(self, data: bytes) -> Image.Image:
        return to_rgb(self._loaded().decode(data))

    def version(self) -> str:
        """Package version, model id (a hash of the released weights) and the transforms'
        precision, so that the cache key changes when the model is retrained even if the
        package version does not, and bf16 and float32 points are not mixed."""
        pkg = _package()
        try:
            pkg_version = importlib.metadata.version("codedvision")
        except importlib.metadata.PackageNotFoundError:
            pkg_version = getattr(pkg, "__version__", "unknown")
        codec = self._loaded()
        return (f"codedvision {pkg_version}, model {codec.model_id.hex()}, "
                f"{codec.precision} transforms")

    def unavailable_reason(self) -> str:
        try:
            pkg = _package()
        except ImportError as exc:
            return f"codedvision does not import: {exc}"
        if not callable(getattr(pkg, "load", None)):
            return "codedvision.load() does not exist yet"
        return ""


class CodedVisionRefinedCodec(CodedVisionCodec):
    """codedvision with encoder-side refinement (`refine=REFINE_STEPS`): the same model and
    decoder, fMaps optimised against the decoder before coding (codedvision.refine)."""

    REFINE_STEPS = 20
    name = "codedvision-refine"
    label = f"codedvision, refine {REFINE_STEPS}"
    opt_in = (f"slow (each encode runs {REFINE_STEPS} refinement steps, about four decodes "
              "each); add it to --codecs to run it")

    @property
    def options(self) -> str:  # the step size too: a new default must not reuse cached points
        from codedvision.refine import REFINE_LR

        return (f"codedvision.load(), encode_ex(img, quality=q, refine={self.REFINE_STEPS}), "
                f"step size {REFINE_LR}")

    def encode(self, img: Image.Image, setting: Setting) -> bytes:
        return bytes(self._loaded().encode_ex(img, quality=setting,
                                              refine=self.REFINE_STEPS).data)
