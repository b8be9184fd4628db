"""Finding, loading and fingerprinting the test images."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

#: Suffixes picked up when IMAGES is a directory (lossless formats first; lossy sources work
#: but then measure distortion against an already-compressed image).
IMAGE_SUFFIXES = (".png", ".ppm", ".pnm", ".bmp", ".tif", ".tiff", ".webp", ".jpg", ".jpeg")


@dataclass(frozen=True)
class EvalImage:
    """One test image: where it is, its name in the results, its content hash and size (px)."""

    path: Path
    name: str
    sha256: str
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


def load_rgb(path: Path) -> Image.Image:
    """The image as 8-bit RGB (alpha dropped, palette and grey expanded)."""
    with Image.open(path) as im:
        im.load()
        return im if im.mode == "RGB" else im.convert("RGB")


def pixel_hash(img: Image.Image) -> str:
    """SHA-256 of the RGB pixels and the size: what the codecs see, whatever the file format."""
    h = hashlib.sha256(f"{img.width}x{img.height}:".encode())
    h.update(np.ascontiguousarray(np.asarray(img)).tobytes())
    return h.hexdigest()


def find_images(images: list[Path] | Path) -> list[Path]:
    """The image files to evaluate: a directory's images (sorted), one file, or a list of files.

    Raises ValueError (one line) when a path is missing or nothing is found.
    """
    paths = [Path(images)] if isinstance(images, (str, Path)) else [Path(p) for p in images]
    if not paths:
        raise ValueError("no images given")
    found: list[Path] = []
    for p in paths:
        if p.is_dir():
            inside = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
            if not inside:
                raise ValueError(
                    f"no images found in {p} (looked for {', '.join(IMAGE_SUFFIXES)})"
                )
            found.extend(inside)
        elif p.is_file():
            found.append(p)
        else:
            raise ValueError(f"image path not found: {p}")
    return found


def describe_images(paths: list[Path]) -> list[EvalImage]:
    """Open each image once to get its size and content hash; ValueError if one does not open.

    Names are file names, or full paths when two files share a name.
    """
    names = [p.name for p in paths]
    out = []
    for p in paths:
        try:
            img = load_rgb(p)
        except (OSError, SyntaxError, ValueError) as exc:
            raise ValueError(f"cannot read image {p}: {exc}") from None
        name = p.name if names.count(p.name) == 1 else str(p)
        out.append(EvalImage(p, name, pixel_hash(img), img.width, img.height))
    return out
