"""The vision task engine: classification straight from .cvz files, without decoding pixels.

    import codedvision
    from codedvision.vision import classify, load_head
    codec = codedvision.load()
    results = classify(["photo.cvz"], codec, load_head("my-head/"), top_k=5)

- head.py: `ClassifierHead` / `HeadConfig`: conv3x3 to 128 channels, the codec's residual
  units, pooling; on fMaps, or after a ForwardNet copy for the RGB baseline
- data.py: labelled image sets (labels CSV or a folder per class), crops, and the baselines'
  input transforms
- train.py: the resumable head training loop (`codedvision train classifier`) and export
- release.py: released heads, head.safetensors + manifest.json (classes, codec model id, val
  accuracy)
- classify.py: `classify(paths, codec, head, top_k, rgb_head)`: .cvz via fMaps, images via
  the RGB head
- show.py: `codedvision show`, a grid of a file's fMap channels (the paper's Fig. 6)
"""

from .classify import Classifier, VisionError, classify
from .head import ClassifierHead, HeadConfig
from .release import NoHeadError, export as export_head, load as load_head

__all__ = ["Classifier", "ClassifierHead", "HeadConfig", "NoHeadError", "VisionError", "classify",
           "export_head", "load_head"]
