"""Reading user images into 8-bit RGB, and writing decoded images atomically."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

ImageLike = "Image.Image | np.ndarray | str | os.PathLike"


class InputError(ValueError):
    """An input image cannot be read (the message says why, in one line)."""


def open_image(source, name: str) -> tuple[Image.Image, bool]:
    """Read an image file (a path or a binary file object) fully into memory; returns it and
    whether it held 16-bit colour. Any failure is an InputError naming `name`."""
    try:
        with Image.open(source) as im:
            # Pillow reads 16-bit colour (PNG, TIFF) as 8-bit RGB(A); only the raw mode of its
            # tiles, before load(), still says so
            colour16 = im.mode in ("RGB", "RGBA") and any(
                ";16" in str(getattr(t, "args", "")) for t in im.tile)
            im.load()
            image = im.copy()
            image.info.update(im.info)
            image.getexif().update(im.getexif())
    except FileNotFoundError:
        raise InputError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{name}: is a directory") from None
    except Image.UnidentifiedImageError:  # Pillow's message names the source, maybe an object
        raise InputError(f"{name}: not a readable image (unknown format)") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise InputError(f"{name}: not a readable image ({e})") from None
    return image, colour16


def to_rgb8(image) -> tuple[Image.Image, list[str]]:
    """Convert a PIL image, an HxW / HxWx3 / HxWx4 array (uint8 or uint16) or a path to 8-bit RGB.

    EXIF orientation is applied; grayscale, palette, alpha and 16-bit inputs are converted, and
    each conversion is named in the returned notes.
    """
    notes: list[str] = []
    colour16 = False
    if isinstance(image, (str, os.PathLike)):
        image, colour16 = open_image(Path(image), str(image))
    if isinstance(image, np.ndarray):
        image = _array_to_pil(image, notes)
    if not isinstance(image, Image.Image):
        raise InputError(f"unsupported image type {type(image).__name__}")
    if image.width < 1 or image.height < 1:
        raise InputError("empty image")
    if image.getexif().get(0x0112, 1) not in (1, None):
        image = ImageOps.exif_transpose(image)
        notes.append("EXIF orientation applied")
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(image).astype(np.float64)
        # 16-bit modes are 0..65535 by definition; 32-bit int/float ones carry no range, so
        # values above 255 are taken as 16-bit
        peak = 65535.0 if mode.startswith("I;16") or a.max(initial=0) > 255 else 255.0
        a = np.clip(np.rint(a * 255.0 / peak), 0, 255).astype(np.uint8)
        image = Image.fromarray(a, "L")
        notes.append(f"{'16-bit' if peak > 255 else mode} grayscale converted to 8-bit RGB")
    elif mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
        notes.append("alpha channel composited onto white")
    elif mode in ("L", "1"):
        notes.append("grayscale converted to RGB")
    elif mode == "P":
        notes.append("palette image converted to RGB")
    elif mode != "RGB":
        notes.append(f"{mode} converted to RGB")
    if colour16:
        notes.append("16-bit colour reduced to 8 bits per channel")
    if image.mode != "RGB":
        image = image.convert("RGB")
    return image, notes


def _array_to_pil(a: np.ndarray, notes: list[str]) -> Image.Image:
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4) or a.shape[0] < 1 or a.shape[1] < 1:
        raise InputError(f"array must be HxW, HxWx3 or HxWx4, got shape {a.shape}")
    if a.dtype == np.uint16:
        a = np.clip(np.rint(a.astype(np.float64) / 257.0), 0, 255).astype(np.uint8)
        notes.append("16-bit converted to 8-bit")
    elif a.dtype != np.uint8:
        raise InputError(f"array dtype must be uint8 or uint16, got {a.dtype}")
    mode = {1: "L", 3: "RGB", 4: "RGBA"}[a.shape[2]]
    return Image.fromarray(np.ascontiguousarray(a if a.shape[2] > 1 else a[:, :, 0]), mode)


def _umask() -> int:
    mask = os.umask(0)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def image_format(path: Path) -> str:
    """The Pillow format that an output image named `path` is written in (from its
    extension); InputError for an unknown extension or .cvz (Pillow's .cvz plugin would
    compress a decoded image a second time)."""
    suffix = Path(path).suffix.lower()
    if suffix == ".cvz":
        raise InputError(f"{path}: a decoded image needs an image name (.png, .jpg, ...), "
                         "not .cvz")
    fmt = Image.registered_extensions().get(suffix)
    if fmt is None:
        raise InputError(f"{path}: unknown image format {Path(path).suffix!r}")
    return fmt


def atomic_write(path: Path, data: bytes | None = None, *, image: Image.Image | None = None,
                 force: bool = False, **save_args) -> None:
    """Write bytes or an image to `path` through a temporary file in the same folder + rename.

    Refuses to replace an existing file unless force=True; never leaves a partial file. The file
    gets the permissions a plain open() would give (0666 less the umask), not mkstemp's 0600.
    """
    path = Path(path)
    if image is not None:
        image_format(path)
    if path.exists() and not force:
        raise FileExistsError(f"{path} exists (use --force to overwrite)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            if image is not None:
                image.save(f, format=image_format(path), **save_args)
            else:
                f.write(data)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
