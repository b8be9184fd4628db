"""codedvision: learned image compression whose files can be understood without decoding.

    import codedvision
    codec = codedvision.load()                  # shipped default model
    data = codec.encode("photo.png", quality=75)
    image = codec.decode(data)                  # PIL.Image
    fmaps = codec.fmaps(data)                   # torch.Tensor, entropy decoding only

Importing the package also registers a Pillow plugin for .cvz files.
"""

from .codec import Codec, load
from .config import ModelConfig
from .container import FormatError
from .images import InputError
from .pillow_plugin import register as _register_pillow

__version__ = "0.1.0"
__all__ = ["Codec", "FormatError", "InputError", "ModelConfig", "load", "__version__"]

_register_pillow()
