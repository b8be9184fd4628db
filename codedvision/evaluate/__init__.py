"""Rate-distortion evaluation of codedvision against classical codecs.

Runs every codec at several settings over a set of images, measures each point on the real
file (rate in bpp = 8 * bytes / pixels; PSNR in dB on 8-bit RGB; MS-SSIM linear and in dB;
encode and decode wall time), caches each point so interrupted runs resume, and writes
results.json, rd_psnr.png, rd_msssim.png, side_by_side.png and report.md (BD-rates against the
HEVC intra 4:4:4 anchor).

Python::

    from codedvision.evaluate import run_evaluation
    run_evaluation(Path("kodak"), Path("runs/eval"), codecs=["codedvision", "hevc", "jpeg"], jobs=2)

Command line (``codedvision evaluate``) and how each option maps onto run_evaluation:

    --images DIR           images=Path(DIR) (a directory's image files, or one image file)
    --out DIR              out=Path(DIR)
    --codecs a,b,...       codecs=["a", "b", ...]; omitted: None, every codec available here
    --qualities SPEC       settings=parse_settings([SPEC, ...]); SPEC is "10,50,90" for
                           codedvision's qualities or "jpeg=10,50,90" / "hevc=27,32,37" for any
                           codec; the option may be repeated
    --jobs N               jobs=N (worker processes, images in parallel)
    --reference DIR        reference=Path(DIR), e.g. shared/reference/compressai_kodak
    --per-image            per_image=True
    (no option)            progress=True; pass progress=False for quiet runs

Bad input raises ValueError with a one-line message, suitable to show as the CLI's error.

Codecs (names): codedvision, hevc (the anchor), vvc, avif, jxl, webp, jpeg2000, jpeg. Each sits
behind codecs.base.ImageCodec; adding one is a subclass plus a line in codecs/__init__.py.
"""

from __future__ import annotations

from .bdrate import bd_rate
from .codecs import ANCHOR, CODECS, ImageCodec, get_codec
from .plan import parse_settings
from .run import run_evaluation

__all__ = [
    "ANCHOR",
    "CODECS",
    "ImageCodec",
    "bd_rate",
    "get_codec",
    "parse_settings",
    "run_evaluation",
]
