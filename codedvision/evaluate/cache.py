"""On-disk cache of measured points, so that an interrupted evaluation resumes where it stopped.

Layout under OUT/cache/::

    <codec>-<tag>/codec.json                  the codec's version and options (for people)
    <codec>-<tag>/<setting>/<image>.<ext>     the encoded file, exactly as measured
    <codec>-<tag>/<setting>/<image>.json      the measured point (bytes, bpp, PSNR, times...)

<tag> hashes the codec's version() and options, so a new library version or changed encoder
options start a fresh directory; <image> is the first 16 hex digits of the SHA-256 of the
image's pixels, so renaming or re-saving an image keeps its points.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from .codecs import ImageCodec, Setting

CACHE_DIRNAME = "cache"


def codec_tag(version: str, options: str) -> str:
    """Ten hex digits identifying a codec build and the way it is driven."""
    return hashlib.sha256(f"{version}\n{options}".encode()).hexdigest()[:10]


def setting_dirname(setting: Setting) -> str:
    """A setting as a directory name: 22 -> '22', 0.35 -> '0.35'."""
    return f"{setting:g}" if isinstance(setting, float) else str(setting)


@dataclass(frozen=True)
class CacheSlot:
    """Where one (codec, setting, image) point lives: its JSON record and its encoded file."""

    record_path: Path
    file_path: Path

    def load(self) -> dict | None:
        """The stored record, or None if missing, unreadable, or its file is missing/truncated."""
        try:
            record = json.loads(self.record_path.read_text())
            size = self.file_path.stat().st_size
        except (OSError, ValueError):
            return None
        return record if record.get("bytes") == size else None

    def store(self, record: dict, data: bytes) -> None:
        """Write the file, then the record; each atomically, so a kill leaves no half point."""
        self.record_path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(self.file_path, data)
        _write_atomic(self.record_path, json.dumps(record, indent=1).encode())


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def codec_dir(out: Path, codec: ImageCodec, tag: str) -> Path:
    return Path(out) / CACHE_DIRNAME / f"{codec.name}-{tag}"


def slot(out: Path, codec: ImageCodec, tag: str, setting: Setting, image_sha256: str) -> CacheSlot:
    """The cache slot of one point."""
    d = codec_dir(out, codec, tag) / setting_dirname(setting)
    stem = image_sha256[:16]
    return CacheSlot(d / f"{stem}.json", d / f"{stem}.{codec.extension}")


def write_codec_info(out: Path, codec: ImageCodec, tag: str, version: str) -> None:
    """Record, beside the cached points, which codec build and options produced them."""
    d = codec_dir(out, codec, tag)
    d.mkdir(parents=True, exist_ok=True)
    info = {"codec": codec.name, "version": version, "options": codec.options}
    (d / "codec.json").write_text(json.dumps(info, indent=1))
