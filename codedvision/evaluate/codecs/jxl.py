"""JPEG XL (libjxl through pillow-jxl-plugin), VarDCT in the XYB colour space."""

from __future__ import annotations

import importlib.metadata

from PIL import Image

from .base import PillowCodec, Setting


def _plugin_version() -> str | None:
    try:
        return importlib.metadata.version("pillow-jxl-plugin")
    except importlib.metadata.PackageNotFoundError:
        return None


class JxlCodec(PillowCodec):
    """JPEG XL at libjxl's quality scale (90 ~ distance 1), effort 7 (libjxl's default)."""

    name = "jxl"
    label = "JPEG XL"
    extension = "jxl"
    default_settings = (10, 30, 50, 65, 75, 85, 90)
    options = "pillow-jxl-plugin, effort=7, bare codestream (no container)"

    def encode(self, img: Image.Image, setting: Setting) -> bytes:
        import pillow_jxl  # noqa: F401  (registers the JXL format with Pillow)

        # use_container=False is the plugin's default; spelled out because the container's
        # boxes would be counted in the rate.
        return self.save(img, "JXL", quality=int(setting), effort=7, use_container=False)

    def decode(self, data: bytes) -> Image.Image:
        import pillow_jxl  # noqa: F401

        return super().decode(data)

    def version(self) -> str:
        return f"pillow-jxl-plugin {_plugin_version()}"

    def unavailable_reason(self) -> str:
        try:
            import pillow_jxl  # noqa: F401
        except ImportError:
            return "pillow-jxl-plugin is not installed (pip install pillow-jxl-plugin)"
        return ""
