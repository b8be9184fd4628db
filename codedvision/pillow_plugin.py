"""Pillow plugin: after `import codedvision`, `Image.open("x.cvz")` decodes and
`img.save("x.cvz", quality=75)` encodes, with the shipped default model."""

from __future__ import annotations

from PIL import Image, ImageFile

from . import container

FORMAT = "CVZ"


def _accept(prefix: bytes) -> bool:
    return prefix[:3] == container.MAGIC


class CvzImageFile(ImageFile.ImageFile):
    format = FORMAT
    format_description = "codedvision learned image codec"

    def _open(self) -> None:
        data = self.fp.read()
        try:
            header, _, _ = container.read_header(data)
        except container.FormatError as e:
            raise SyntaxError(str(e)) from None
        self._cvz = data
        self._size = (header.width, header.height)
        self._mode = "RGB"
        self.info["quality"] = header.quality
        self.info["model_id"] = header.model_id.hex()
        self.tile = []

    def load(self):
        if getattr(self, "_cvz", None) is not None:
            from .codec import load

            decoded = load().decode(self._cvz)
            self._cvz = None
            self.im = decoded.im
            self.readonly = 0
        return Image.Image.load(self)


def _save(im: Image.Image, fp, filename) -> None:
    from .codec import load

    quality = im.encoderinfo.get("quality", 75)
    fp.write(load().encode(im, quality=quality))


def register() -> None:
    Image.register_open(FORMAT, CvzImageFile, _accept)
    Image.register_save(FORMAT, _save)
    Image.register_extension(FORMAT, ".cvz")
    Image.register_mime(FORMAT, "image/x-cvz")
