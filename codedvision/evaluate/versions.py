"""The software an evaluation ran on, recorded in results.json so numbers can be traced."""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
import sys
from pathlib import Path

PACKAGES = (
    "codedvision",
    "torch",
    "numpy",
    "pillow",
    "pillow-heif",
    "pillow-jxl-plugin",
    "imageio-ffmpeg",
    "pytorch-msssim",
    "bjontegaard",
    "scipy",
    "matplotlib",
)


def _package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git_commit() -> str | None:
    """The source tree's commit ('-dirty' if changed locally); None outside a git checkout."""
    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "describe", "--always", "--dirty", "--abbrev=12"],
            capture_output=True, text=True, timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode != 0:  # not a checkout, or no commit yet
        return None
    return head.stdout.strip() or None


def _heif_libraries() -> dict[str, str]:
    try:
        import pillow_heif
    except ImportError:
        return {}
    info = pillow_heif.libheif_info()
    return {
        "libheif": str(pillow_heif.libheif_version()),
        "x265": str(info.get("encoders", {}).get("x265", "")),
        "libde265": str(info.get("decoders", {}).get("libde265", "")),
    }


def software_versions(codec_versions: dict[str, str]) -> dict:
    """Python, platform, package versions, HEIF libraries, git commit, each codec's version()."""
    packages = {name: _package_version(name) for name in PACKAGES}
    if packages["codedvision"] is None:
        packages["codedvision"] = getattr(sys.modules.get("codedvision"), "__version__", None)
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": packages,
        "codedvision_git": _git_commit(),
        "heif": _heif_libraries(),
        "codecs": dict(codec_versions),
    }
