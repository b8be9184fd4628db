"""Where bfloat16 pays: CPUs with native bf16 (AVX512-BF16 / AMX) run the convolutions about
twice as fast in bf16 autocast as in float32 (measured here: training ~2.6x; the codec on
Kodak at quality 75, benchmarks/codec_speed.py: encoding 2.3x, decoding 1.9x); on other CPUs
bf16 is emulated and an order of magnitude slower, so float32 stays.

The codec uses bf16 only where exactness is not needed: the transforms. The entropy coding
(the integer hyper-synthesis and the tables) is exact in every precision, so a file decodes to
the same fMaps on every machine; only the pixels may differ by a few grey levels. Encoding is
not bit-exact across precisions, so the same image can give a slightly different (equally
valid) file: measured with model 5cc56b77 on a 192x128 Kodak crop at quality 60, 12.5% of the
quantized fMaps differ, nearly all by a fraction of a step (a hyper-latent rounded the other way
shifts the means of a 4x4 block of positions), 0.26% by half a step or more; the files have the
same size and their PSNR differs by 0.05 dB (tests/test_codec.py checks size and PSNR).
"""

from __future__ import annotations

import os

import torch

PRECISIONS = ("auto", "bf16", "float32")
ENV = "CODEDVISION_PRECISION"


def bf16_is_fast() -> bool:
    """True where the CPU has native bf16 (AVX512-BF16 or AMX); elsewhere (AVX2, and AVX512
    without BF16 as on Skylake/Cascade Lake) bf16 is emulated and slow."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except Exception:  # an older or a non-x86 build
        return False


def resolve(precision: str | None = None, name: str = "precision") -> str:
    """Resolve a precision setting ("auto", "bf16" or "float32"/"off"; None:
    $CODEDVISION_PRECISION, else "auto") to the one the transforms run in, "bf16" or "float32";
    a bad value is a ValueError that names the setting (`name`)."""
    if precision is None:
        name, precision = ENV, os.environ.get(ENV, "").strip().lower() or "auto"
    if precision == "off":  # the trainers' spelling
        precision = "float32"
    if precision not in PRECISIONS:
        raise ValueError(f"{name} must be one of {', '.join(PRECISIONS)} (or off), got "
                         f"{precision!r}")
    if precision == "auto":
        return "bf16" if bf16_is_fast() else "float32"
    return precision


def use_bf16(precision: str | None = None, name: str = "precision") -> bool:
    """Whether a precision setting (see `resolve`) runs the transforms in bf16."""
    return resolve(precision, name) == "bf16"


def autocast(enabled: bool):
    """bf16 autocast on the CPU (a no-op context when not enabled)."""
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled)


def float32():
    """A region that runs in float32 inside a bf16 autocast region."""
    return torch.autocast("cpu", enabled=False)
