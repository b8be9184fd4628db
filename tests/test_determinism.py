"""Decoding must not depend on the thread count or the process: the entropy decoder picks its
tables from integers that encoder and decoder compute identically (codedvision.intnet)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from codedvision.codec import Codec

DECODE_SCRIPT = """
import sys
import numpy as np
import torch
torch.set_num_threads(1)
from codedvision.codec import Codec
model, src, fmaps_out, png_out = sys.argv[1:]
codec = Codec(model)
data = open(src, "rb").read()
_, y = codec.quantized_fmaps(data)
np.save(fmaps_out, y.numpy())
codec.decode(data).save(png_out)
print(torch.get_num_threads())
"""


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("which", ["default_model_dir", "checkerboard_model_dir"])
def test_decoding_in_a_fresh_process_with_one_thread_is_bit_exact(request, which, photo,
                                                                   tmp_path, two_threads):
    """The shipped model (a private copy) and a checkerboard model (whose context nets pick
    half of the tables): the same fMaps, exactly, and the same pixels."""
    model_dir = request.getfixturevalue(which)
    codec = Codec(model_dir)
    crop = photo.crop((256, 128, 512, 384))
    data = codec.encode(crop, quality=60)
    src = tmp_path / "crop.cvz"
    src.write_bytes(data)
    _, y_here = codec.quantized_fmaps(data)
    decoded_here = np.asarray(codec.decode(data), dtype=np.int16)

    proc = subprocess.run(
        [sys.executable, "-c", DECODE_SCRIPT, str(model_dir), str(src),
         str(tmp_path / "fmaps.npy"), str(tmp_path / "decoded.png")],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "1"

    y_there = np.load(tmp_path / "fmaps.npy")
    assert np.array_equal(y_there, y_here.numpy())  # float32, multiples of 2**-8: exact
    with Image.open(tmp_path / "decoded.png") as im:
        decoded_there = np.asarray(im.convert("RGB"), dtype=np.int16)
    assert decoded_there.shape == decoded_here.shape == (256, 256, 3)
    assert np.abs(decoded_there - decoded_here).max() <= 1


@pytest.mark.parametrize("kernel", [3, 5, 7])
@pytest.mark.parametrize("size", [(2, 2), (4, 8), (12, 4)])
def test_the_checkerboard_conv_at_the_non_anchors_equals_the_full_exact_conv(size, kernel):
    """The codec computes the context conv only where it is needed (ExactNet.at_non_anchors,
    about a quarter of the work): the same integers as the full exact conv there."""
    from torch import nn

    from codedvision.intnet import ExactNet, freeze_layers
    from codedvision.networks import anchor_mask

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(6, 10, kernel, padding=kernel // 2))
    exact = ExactNet(net, freeze_layers(net, "ctx"), "ctx")
    anchors = torch.round(torch.randn(1, 6, *size) * 300) / 256 * anchor_mask(*size)
    full = exact(anchors)
    both = exact.at_non_anchors(anchors)
    for k, (pi, pj) in enumerate(((0, 1), (1, 0))):
        assert np.array_equal(both[k], full[:, :, pi::2, pj::2])
        (one,) = exact.at_non_anchors(anchors, ((pi, pj),))
        assert np.array_equal(one, full[:, :, pi::2, pj::2])
    with pytest.raises(TypeError, match="even sides"):
        exact.at_non_anchors(anchors[:, :, :1])
