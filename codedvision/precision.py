"""Where bfloat16 pays: CPUs with native bf16 (AVX512-BF16 / AMX) run the convolutions about
twice as fast in bf16 autocast as in float32 (measured: training ~2.6x, decoding ~1.8x); on
other CPUs bf16 is emulated and an order of magnitude slower, so float32 stays.

The codec uses bf16 only where exactness is not needed: the transforms. The entropy coding
(the integer hyper-synthesis and the tables) is exact in every precision, so a file decodes to
the same fMaps on every machine; only the pixels may differ by a grey level.
"""

from __future__ import annotations

import os

import torch

PRECISIONS = ("auto", "bf16", "float32")
ENV = "CODEDVISION_PRECISION"


def bf16_is_fast() -> bool:
    """True where the CPU has native bf16 (AVX512-BF16/AMX); elsewhere bf16 is emulated and slow."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()) and "AVX512" in str(
            torch.backends.cpu.get_cpu_capability()
        )
    except Exception:
        return False


def use_bf16(precision: str | None = None) -> bool:
    """Resolve a precision setting ("auto", "bf16" or "float32"/"off"; None:
    $CODEDVISION_PRECISION, else "auto") to whether the transforms run in bf16."""
    name = "precision"
    if precision is None:
        name, precision = ENV, os.environ.get(ENV, "").strip().lower() or "auto"
    if precision == "off":  # the trainers' spelling
        precision = "float32"
    if precision not in PRECISIONS:
        raise ValueError(f"{name} must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision == "bf16" or (precision == "auto" and bf16_is_fast())


def autocast(enabled: bool):
    """bf16 autocast on the CPU (a no-op context when not enabled)."""
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled)


def float32():
    """A region that runs in float32 inside a bf16 autocast region."""
    return torch.autocast("cpu", enabled=False)
