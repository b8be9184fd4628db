"""This project's learned codec, through its public API.

Expects ``codec = codedvision.load()`` with ``codec.encode(img, quality=q) -> bytes`` and
``codec.decode(data) -> PIL.Image``; reports itself unavailable while ``codedvision.load`` does
not exist.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata

import numpy as np
from PIL import Image

from .base import ImageCodec, Setting, to_rgb


def _package():
    return importlib.import_module("codedvision")


def _probe_image() -> Image.Image:
    """A fixed 64x64 test card; its bitstream fingerprints the model (see version())."""
    yy, xx = np.mgrid[0:64, 0:64]
    card = np.stack([xx * 4, yy * 4, ((xx // 8 + yy // 8) % 2) * 200 + 20], axis=-1)
    return Image.fromarray(card.astype(np.uint8), "RGB")


class CodedVisionCodec(ImageCodec):
    """codedvision at quality 0..100 (the released model that codedvision.load() returns)."""

    name = "codedvision"
    label = "codedvision"
    extension = "cdv"
    default_settings = (0, 20, 40, 60, 80, 100)
    options = "codedvision.load(), encode(img, quality=q)"

    def __init__(self) -> None:
        self._codec = None
        self._fingerprint: str | None = None

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
        """Package version plus a fingerprint of the model's bitstream.

        The cache key must change when the weights change even if the package version does
        not (a retrained model), so the version includes a hash of the bytes the model writes
        for a fixed 64x64 test card at quality 50.
        """
        pkg = _package()
        try:
            pkg_version = importlib.metadata.version("codedvision")
        except importlib.metadata.PackageNotFoundError:
            pkg_version = getattr(pkg, "__version__", "unknown")
        if self._fingerprint is None:
            probe = self.encode(_probe_image(), 50)
            self._fingerprint = hashlib.sha256(probe).hexdigest()[:12]
        return f"codedvision {pkg_version}, model bitstream {self._fingerprint}"

    def unavailable_reason(self) -> str:
        try:
            pkg = _package()
        except ImportError as exc:
            return f"codedvision does not import: {exc}"
        if not callable(getattr(pkg, "load", None)):
            return "codedvision.load() does not exist yet"
        return ""
