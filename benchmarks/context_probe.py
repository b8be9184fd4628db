"""How many bits would a spatial context model save on a trained codec's transforms?

    python benchmarks/context_probe.py [MODEL] [--steps 3000]
    python benchmarks/context_probe.py --kind channel [--steps 3000]    # the shipped model

The shipped entropy model is a mean-scale hyperprior: every fMap element's mean and scale come
from the hyper-latents alone. A checkerboard context (He et al. 2021, "Checkerboard context
model for efficient learned image compression") codes half of the positions that way (the
anchors, i+j even) and the other half with mean and scale corrected from the decoded anchors
around them: a 5x5 convolution over the anchors and two 1x1 layers over [hyper output, context],
per group of 32 fMaps (the file's channel groups, so a reader of the first fMaps still stops
after their group), started at zero correction: the codec's own context model
(`codedvision.networks.CheckerboardContext`, the model option `checkerboard`).

Here the model stays frozen and only the context layers are trained, on the rate of the
non-anchor positions (noise-relaxed, Adam at 1e-3, random 8x8 windows of the fMaps of the
training patches, batch 16, quality positions drawn uniformly). Then, on the trainer's 16
held-out patches (256x256, never trained on; not Kodak), at every quality anchor: bpp of the
hyperprior alone and with the context (rounded symbols, the model's own likelihoods, hyper-
latents included), and the PSNR of each (the non-anchors are rounded around their new means, so
the decoded pixels change a little). A lower bound on what a context model gives: the
transforms were not trained with it (a training run with `checkerboard` trains both). Writes benchmarks/results/context_probe.json.

--kind channel asks the same of a channel context (ChannelContext, here) on
a model that has the checkerboard one: every fMap group after the first gets its hyperprior
means and scales corrected from the decoded groups before it, then the model's own checkerboard
context (frozen, as trained) corrects its non-anchors as before. Writes
benchmarks/results/channel_context_probe.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from capacity_probe import held_out_patches, patches_tensor, psnr, write_json  # noqa: E402
from codedvision.container import FMAP_GROUP, fmap_groups  # noqa: E402
from codedvision.networks import CheckerboardContext, anchor_mask, conv  # noqa: E402
from codedvision.train.data import load_patches  # noqa: E402
from codedvision.train.export import load_trained  # noqa: E402

WINDOW = 8  # fMap positions per side of a training window
BATCH = 16


class ChannelContext(nn.Module):
    """A channel context (after Minnen & Singh 2020 and ELIC; not a model option): every fMap
    group after the first gets its hyperprior log-scales and means corrected from the decoded
    fMaps of the groups before it, by a 3x3 conv over [those fMaps, the group's log-scales,
    means], a ReLU and a 1x1 conv that starts at zero (the hyperprior's own means and scales).
    The first group has none, so a reader of the first fMaps could still stop after their
    group; only convs and ReLUs, so exact integer nets (codedvision.intnet) could run it."""

    def __init__(self, fmaps: int, hidden: int = 128):
        super().__init__()
        self.slices = fmap_groups(fmaps)
        self.nets = nn.ModuleList()
        for s in self.slices[1:]:
            c = s.stop - s.start
            net = nn.Sequential(conv(s.start + 2 * c, hidden, 3, before_prelu=True), nn.ReLU(),
                                conv(hidden, 2 * c, 1))
            nn.init.zeros_(net[-1].weight)
            self.nets.append(net)

    def forward(self, g: int, log_scale: torch.Tensor, mean: torch.Tensor,
                before: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Group g's (g >= 1) log-scales and means (B,c,h,w), corrected from `before`, the
        quantized fMaps of groups 0..g-1 (B,slices[g].start,h,w)."""
        d = self.nets[g - 1](torch.cat([before, log_scale, mean], 1))
        c = log_scale.shape[1]
        return log_scale + d[:, :c], mean + d[:, c:]


def hyperprior(model, y: torch.Tensor, position: torch.Tensor) -> tuple:
    """The gained fMaps of y at quality positions (B,), the inverse gains, the bits of the
    rounded hyper-latents and the hyperprior's log-scales and means."""
    gain, inv_gain = model.gains(position)
    y_g = y * gain
    with torch.no_grad():
        z = torch.round(model.hyper_analysis(y_g))
        bits_z = -torch.log2(model.z_model.likelihood(z)).sum()
        log_scale, mean = model.split_hyper(model.hyper_synthesis(z))
    return y_g, inv_gain, bits_z, log_scale, mean


def code(model, ctx_model, y: torch.Tensor, position: torch.Tensor, relaxed: bool) -> dict:
    """Bits without and with the context for fMaps y (B,M,H,W) at quality positions (B,)."""
    y_g, inv_gain, bits_z, log_scale, mean = hyperprior(model, y, position)
    y_hat = torch.round(y_g - mean) + mean  # the hyperprior's own (the anchors' in both)
    log_scale2, mean2 = ctx_model(log_scale, mean, y_hat)
    if relaxed:
        q = lambda v: v + torch.empty_like(v).uniform_(-0.5, 0.5)  # noqa: E731
    else:
        q = torch.round
    bits = -torch.log2(model.y_model.likelihood(q(y_g - mean), log_scale)).sum() + bits_z
    bits2 = -torch.log2(model.y_model.likelihood(q(y_g - mean2), log_scale2)).sum() + bits_z
    return {"bits": bits, "bits_context": bits2, "inv_gain": inv_gain,
            "y_hat": y_hat, "y_hat_context": torch.round(y_g - mean2) + mean2}


def code_channel(model, cc, y: torch.Tensor, position: torch.Tensor, relaxed: bool) -> dict:
    """Like `code`, for a checkerboard model: bits without and with the channel context `cc`
    (its own checkerboard context kept as it is), group by group as the codec codes them."""
    y_g, inv_gain, bits_z, log_scale, mean = hyperprior(model, y, position)
    a = anchor_mask(*y.shape[2:])
    out = {"inv_gain": inv_gain}
    for key, use in (("", False), ("_context", True)):
        bits, parts = bits_z, []
        for g, (s, group) in enumerate(zip(cc.slices, model.context.groups)):
            ls, mu, yg = log_scale[:, s], mean[:, s], y_g[:, s]
            if use and g:
                ls, mu = cc(g, ls, mu, torch.cat(parts, 1))
            d_ls, d_mu = group(ls, mu, (torch.round(yg - mu) + mu) * a)
            ls, mu = ls + d_ls * ~a, mu + d_mu * ~a
            v = yg - mu
            v = v + torch.empty_like(v).uniform_(-0.5, 0.5) if relaxed else torch.round(v)
            bits = bits - torch.log2(model.y_model.likelihood(v, ls)).sum()
            parts.append(torch.round(yg - mu) + mu)
        out["bits" + key], out["y_hat" + key] = bits, torch.cat(parts, 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", nargs="?", default="default",
                    help="checkpoint.pt or release folder (default: the shipped one)")
    ap.add_argument("--kind", choices=("checkerboard", "channel"), default="checkerboard",
                    help="checkerboard: a checkerboard context on a model without one; "
                         "channel: a channel context on a checkerboard model")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--train-patches", type=int, default=0,
                    help="train on only the first N training patches (0: all)")
    ap.add_argument("--patches", type=Path, default=HERE.parents[1] / "shared" / "data" / "train_patches")
    ap.add_argument("--out", type=Path, default=None,
                    help="default: benchmarks/results/context_probe.json (--kind channel: "
                         "channel_context_probe.json)")
    args = ap.parse_args()
    channel = args.kind == "channel"
    out_path = args.out or HERE / "results" / ("channel_" * channel + "context_probe.json")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model, name = load_trained(None if args.model == "default" else args.model)
    if model.cfg.entropy_model != "hyperprior" or not model.cfg.mean_scale:
        sys.exit("error: the probe needs a mean-scale hyperprior model")
    if channel != model.cfg.checkerboard:
        sys.exit("error: --kind channel needs a checkerboard model, --kind checkerboard one "
                 "without")
    for p in model.parameters():
        p.requires_grad_(False)
    k = len(model.cfg.lambdas)
    xv, holdout = held_out_patches(args.patches)
    train = load_patches(args.patches, 256)[:-holdout]
    train = train[:args.train_patches or len(train)]
    with torch.no_grad():
        yv = model.forward_net(xv)
        yt = torch.cat([model.forward_net(patches_tensor(train[i:i + 32]))
                        for i in range(0, len(train), 32)])
    if channel:
        ctx_model = ChannelContext(model.cfg.fmaps)
        coder = lambda *a, **k: code_channel(model, ctx_model, *a, **k)  # noqa: E731
    else:
        ctx_model = CheckerboardContext(dataclasses.replace(model.cfg, checkerboard=True))
        coder = lambda *a, **k: code(model, ctx_model, *a, **k)  # noqa: E731
    opt = torch.optim.Adam(ctx_model.parameters(), lr=1e-3)
    t0 = time.time()
    side = yt.shape[2]
    for step in range(args.steps):
        i, j = torch.randint(0, side - WINDOW + 1, (2,)).tolist()
        y = yt[torch.randint(0, len(yt), (BATCH,)), :, i:i + WINDOW, j:j + WINDOW]
        out = coder(y, torch.rand(BATCH) * (k - 1), relaxed=True)
        loss = out["bits_context"] / (BATCH * (WINDOW * 16) ** 2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 500 == 0:
            print(f"step {step}: {loss.item():.4f} bpp (training windows), {time.time() - t0:.0f} s",
                  flush=True)
    pixels = xv.shape[0] * xv.shape[2] * xv.shape[3]
    rows = []
    with torch.no_grad():
        for anchor in range(k):
            out = coder(yv, torch.full((len(yv),), float(anchor)), relaxed=False)
            bpp, bpp2 = float(out["bits"]) / pixels, float(out["bits_context"]) / pixels
            rows.append({
                "anchor": anchor, "bpp": round(bpp, 4), "bpp_context": round(bpp2, 4),
                "rate_change_percent": round(100 * (bpp2 / bpp - 1), 2),
                "psnr": round(psnr(model.backward_net(out["y_hat"] * out["inv_gain"]), xv), 2),
                "psnr_context": round(psnr(model.backward_net(out["y_hat_context"] * out["inv_gain"]), xv), 2),
            })
            r = rows[-1]
            print(f"anchor {anchor}: {r['bpp']:.4f} -> {r['bpp_context']:.4f} bpp "
                  f"({r['rate_change_percent']:+.1f}%), {r['psnr']:.2f} -> {r['psnr_context']:.2f} dB")
    write_json(out_path, {
        "benchmark": "context_probe", "model": name,
        "images": f"{holdout} held-out training patches (the last {holdout} of {args.patches}), 256x256",
        "context": ("ChannelContext (this script: 3x3 over the groups before, per group "
                    f"of {FMAP_GROUP} fMaps after the first), trained alone on the frozen model "
                    "and its checkerboard context" if channel else
                    "codedvision.networks.CheckerboardContext (5x5 over the anchors, per group "
                    f"of {FMAP_GROUP} fMaps), trained alone on the frozen model"),
        "training": {"steps": args.steps, "lr": 1e-3, "batch": BATCH, "window": WINDOW,
                     "data": f"fMaps of the other {len(train)} training patches",
                     "seconds": round(time.time() - t0)},
        "anchors": rows})


if __name__ == "__main__":
    main()
