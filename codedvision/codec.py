"""The user-facing codec: image <-> .cvz bytes, and .cvz -> fMaps without pixel decoding.

    codec = codedvision.load()                 # the shipped default model
    data = codec.encode("photo.jpg", quality=75)
    image = codec.decode(data)                 # PIL.Image, RGB
    fmaps = codec.fmaps(data)                  # (1, M, h, w) float, entropy decoding only
    first = codec.fmaps(data, channels=32)     # (1, 32, h, w): decodes only the first group

Encoding: pad to a multiple of the model stride (edge replication) -> forward net -> x gain(q)
-> round -> [hyperprior: z = round(h_a(.)), coded with per-channel tables; scale indices (and,
mean-scale models, the means that the fMaps are rounded around) from the exact integer
hyper-synthesis] -> range coding, the fMaps in groups of FMAP_GROUP channels (checkerboard
models: each group in two passes, the anchors, then the other positions around means and
scales corrected from the decoded anchors by the exact integer context nets) -> container. Decoding mirrors it and crops; a reader that needs only the first fMaps stops
after their groups (released models store their fMaps most-spread first).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from . import coder, container
from .config import quality_to_position
from .container import FMAP_GROUP, FormatError, Header
from .images import InputError, to_rgb8
from .intnet import ExactIntegerError, ExactNet
from .networks import anchor_mask
from .precision import autocast, resolve
from .refine import REFINE_MAX_PIXELS, refine_fmaps
from .release import frozen_table_arrays, load_release

# Above this many fMap positions the networks run tile by tile, bounding memory for huge images.
TILE_FMAP = 48
TILE_OVERLAP = 8  # fMap positions of context on each side of a tile


@dataclass
class EncodeResult:
    data: bytes
    quality: int
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


class Codec:
    """A loaded codedvision model, ready to encode and decode. Use `codedvision.load()`."""

    def __init__(self, path=None, precision: str | None = None):
        """path: a release folder (None: the shipped default). precision: "auto" (bf16
        transforms where the CPU has native bf16, else float32), "bf16" or "float32"; None
        reads $CODEDVISION_PRECISION (default "auto"). Decoding gives the same fMaps in every
        precision (pixels may differ by a few grey levels); encoding may quantize some fMaps
        differently (see codedvision.precision), a different but equally valid file."""
        self.precision = resolve(precision)  # "bf16" or "float32"
        self.model, coding, self.manifest, self.model_id = load_release(path)
        if self.bf16:  # oneDNN's bf16 convolutions are fastest on channels-last tensors
            for net in (self.model.forward_net, self.model.backward_net):
                net.to(memory_format=torch.channels_last)
        self.cfg = self.model.cfg
        self.hyper = self.cfg.entropy_model == "hyperprior"
        self._gain_cache: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.y_tables = coder.FrozenTables(*frozen_table_arrays(coding, "y"))
        if self.hyper:
            self.z_tables = coder.FrozenTables(*frozen_table_arrays(coding, "z"))
            self.hs_exact = ExactNet(self.model.hyper_synthesis.net, coding)
            self.context_exact = [  # per fMap group: (context conv, parameter convs)
                (ExactNet(grp.context, coding, f"cb{g}.ctx"),
                 ExactNet(grp.params, coding, f"cb{g}.par"))
                for g, grp in enumerate(self.model.context.groups)
            ] if self.cfg.checkerboard else []
            self.log_min = float(coding["scale_log_min"][0])
            self.log_step = float(coding["scale_log_step"][0])

    @property
    def bf16(self) -> bool:
        """Whether the transforms run in bf16 autocast."""
        return self.precision == "bf16"

    # -- public API ----------------------------------------------------------------------
    def encode(self, image, quality: float = 75) -> bytes:
        """Compress an image (PIL image, HxWx3 uint8 array or path) to .cvz bytes.

        quality: 0 (smallest) to 100 (best); rounded to an integer.
        """
        return self.encode_ex(image, quality=quality).data

    def encode_ex(self, image, quality: float | None = 75, bpp: float | None = None,
                  refine: int = 0) -> EncodeResult:
        """Like encode, with notes and timing; with `bpp` (which then overrides `quality`), picks
        the highest quality whose file is at most `bpp` bits per pixel (quality 0 if none is).
        refine: optimise the fMaps for this many steps against the decoder before coding
        (codedvision.refine: a smaller or better file for about 4 decodes' time per step; with
        `bpp`, at every quality the search tries, up to 8 of them; refined file sizes need not
        grow strictly with quality, so the search's answer is then a good quality that fits,
        not always the highest); 0 codes the forward network's fMaps."""
        t0 = time.perf_counter()
        if isinstance(refine, bool) or not isinstance(refine, (int, np.integer)) or refine < 0:
            raise ValueError(f"refine must be a whole number of steps >= 0, got {refine!r}")
        if refine and not self.hyper:
            raise ValueError("refine needs a hyperprior model (its rate estimate)")
        rgb, notes = to_rgb8(image)
        x, (h, w) = self._to_tensor(rgb)
        if refine and h * w > REFINE_MAX_PIXELS:
            raise InputError(f"refine works on pictures of up to {REFINE_MAX_PIXELS:,} pixels; "
                             f"this one has {h * w:,}")
        y = self.analysis(x)

        def code(q: int) -> bytes:
            y_g = y * self._gains(q)[0]
            if refine:
                pos = quality_to_position(q, len(self.cfg.lambdas))
                y_g = refine_fmaps(self.model, x[:, :, :h, :w], y_g, pos, int(refine),
                                   autocast=self.bf16)
            return self._code(y_g, h, w, q)

        if bpp is None:
            q = _check_quality(quality)
            data = code(q)
        else:
            if not bpp > 0:
                raise ValueError(f"target bpp must be positive, got {bpp}")
            q, data = _search_bpp(code, h, w, bpp)
            if len(data) * 8 / (h * w) > bpp:
                notes.append(f"even quality 0 exceeds {bpp} bpp")
        return EncodeResult(data, q, notes, time.perf_counter() - t0)

    def decode(self, data: bytes) -> Image.Image:
        """Decode .cvz bytes to an RGB PIL image of the stored size."""
        header, y_hat = self._entropy_decode(data)
        _, inv_gain = self._gains(header.quality)
        x_hat = self.synthesis(y_hat * inv_gain)
        x_hat = x_hat[0, :, : header.height, : header.width]
        a = (x_hat.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        return Image.fromarray(np.ascontiguousarray(a), "RGB")

    def fmaps(self, data: bytes, channels: int | None = None) -> torch.Tensor:
        """Entropy-decoded fMaps (1,M,h,w), rescaled by the inverse gain so that every quality
        has the same scale. No backward network runs. h and w are the image's sides padded
        (edge replication) to a multiple of the model's stride, divided by 16: the first
        ceil(H/16) x ceil(W/16) positions cover the image.

        channels: return only the first this many fMaps (1,channels,h,w); the decoder then
        stops after the channel groups that hold them (the rest of the file is not read).
        """
        header, y_hat = self._entropy_decode(data, channels)
        return y_hat * self._gains(header.quality)[1][:, : y_hat.shape[1]]

    def quantized_fmaps(self, data: bytes, channels: int | None = None
                        ) -> tuple[Header, torch.Tensor]:
        """The header and the quantized fMaps (1,M,h,w) as decoded, before the inverse gain:
        the coded integers (mean-scale models: plus their predicted means, corrected by the
        checkerboard context if the model has one), or their first
        `channels` (for tests and tools)."""
        return self._entropy_decode(data, channels)

    def header(self, data: bytes) -> Header:
        return container.read_header(data)[0]

    def analysis(self, x: torch.Tensor) -> torch.Tensor:
        """The forward network as the encoder runs it (in the codec's precision, tiled when
        large): images (B,3,H,W) in [0,1], H and W multiples of the stride -> fMaps before the
        gain (B,M,H/2^d,W/2^d), float32."""
        return self._transform(self.model.forward_net, x, down=True)

    def synthesis(self, y: torch.Tensor) -> torch.Tensor:
        """The backward network as the decoder runs it: fMaps after the inverse gain
        (B,M,h,w) -> pixels (B,3,h*2^d,w*2^d), float32, not clamped."""
        return self._transform(self.model.backward_net, y, down=False)

    # -- internals -----------------------------------------------------------------------
    def _to_tensor(self, rgb: Image.Image) -> tuple[torch.Tensor, tuple[int, int]]:
        w, h = rgb.size
        try:
            container.Header(self.model_id, h, w, 0).validate()
        except FormatError as e:
            raise InputError(f"image too large for the .cvz format: {e}") from None
        x = torch.from_numpy(np.array(rgb)).permute(2, 0, 1)[None].float() / 255.0
        s = self.cfg.stride
        ph, pw = -h % s, -w % s
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        return x, (h, w)

    def _gains(self, quality: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(gain, inverse gain) of a quality, each (1,M,1,1); computed once per quality."""
        if quality not in self._gain_cache:
            pos = quality_to_position(quality, len(self.cfg.lambdas))
            with torch.no_grad():
                self._gain_cache[quality] = self.model.gains(torch.tensor([pos]))
        return self._gain_cache[quality]

    def _hyper_params(self, z_int: torch.Tensor, channels: int
                      ) -> tuple[np.ndarray, np.ndarray | None]:
        """The exact integer hyper-synthesis's log-scales and, for a mean-scale model, means of
        the first `channels` fMaps (multiples of 2**-ACT_BITS): identical on every machine."""
        outputs = slice(0, channels)  # the first: no copy of the weights on the hot path
        if self.cfg.mean_scale:  # its output channels: M log-scales, then M means
            outputs = np.r_[0:channels, self.cfg.fmaps : self.cfg.fmaps + channels]
        t = self.hs_exact(z_int, outputs)
        return (t[:, :channels], t[:, channels:]) if self.cfg.mean_scale else (t, None)

    def _scale_index(self, log_scale: np.ndarray) -> np.ndarray:
        """Table (scale) indices of exact log-scales: only IEEE-exact float64 operations."""
        idx = np.floor((log_scale - self.log_min) / self.log_step + 0.5)
        return np.clip(idx, 0, self.cfg.num_scales - 1).astype(np.int64)

    def _context_params(self, g: int, log_scale: np.ndarray, mean: np.ndarray,
                        anchors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Group g's checkerboard log-scales and means, from the hyperprior's (of the group)
        and its decoded anchors (zero elsewhere), in exact integer arithmetic; only the
        non-anchor positions are computed (the anchors' stay the hyperprior's)."""
        ctx_net, params_net = self.context_exact[g]
        log_scale, mean = log_scale.copy(), mean.copy()
        c = log_scale.shape[1]
        parities = ((0, 1), (1, 0))  # the two non-anchor sub-lattices
        for (pi, pj), ctx in zip(parities, ctx_net.at_non_anchors(torch.from_numpy(anchors),
                                                                  parities)):
            ls, mu = log_scale[:, :, pi::2, pj::2], mean[:, :, pi::2, pj::2]  # views
            d = params_net(torch.from_numpy(np.concatenate([ls, mu, ctx], 1)))
            ls += d[:, :c]
            mu += d[:, c:]
        return log_scale, mean

    def _code_fmaps(self, y_shape: tuple, hyper: tuple | None, code) -> np.ndarray:
        """Code the fMaps (1,C,h,w) group by group, the encoder's and the decoder's one order.
        hyper: the exact (log-scales, means or None) of a hyperprior model, else None.
        code(s, ids, centre, sel): codes (encodes or decodes) the symbols of channel slice s at
        the positions sel (a bool array of ids' shape) with table ids `ids` and returns the
        quantized fMaps there (symbol + centre; 0 elsewhere). Returns the quantized fMaps,
        float64."""
        h, w = y_shape[2:]
        everywhere = np.ones((1, 1, h, w), bool)
        anchors_at = anchor_mask(h, w).numpy() if self.cfg.checkerboard else everywhere
        parts = []
        for g, s in enumerate(_fmap_groups(y_shape[1])):
            shape = (1, s.stop - s.start, h, w)
            if hyper is None:
                parts.append(code(s, _channel_ids(shape) + s.start, 0.0,
                                  np.broadcast_to(everywhere, shape)))
                continue
            log_scale, mean = hyper[0][:, s], None if hyper[1] is None else hyper[1][:, s]
            centre = 0.0 if mean is None else mean
            if not self.cfg.checkerboard:
                parts.append(code(s, self._scale_index(log_scale), centre,
                                  np.broadcast_to(everywhere, shape)))
                continue
            anchors = code(s, self._scale_index(log_scale), centre,
                           np.broadcast_to(anchors_at, shape))
            log_scale, mean = self._context_params(g, log_scale, mean, anchors)
            parts.append(anchors + code(s, self._scale_index(log_scale), mean,
                                        np.broadcast_to(~anchors_at, shape)))
        return np.concatenate(parts, axis=1)

    def _code(self, y_g: torch.Tensor, h: int, w: int, quality: int) -> bytes:
        """The file of gained fMaps y_g (the forward network's times the quality's gain)."""
        lim = coder.VALUE_LIMIT
        enc = coder.RangeEncoder()
        hyper = None
        if self.hyper:
            with torch.no_grad():
                z = self.model.hyper_analysis(y_g)
            z_int = torch.round(z).clamp(-lim, lim)
            coder.encode(enc, z_int.numpy().astype(np.int64), _channel_ids(z_int.shape),
                         self.z_tables)
            hyper = self._hyper_params(z_int, self.cfg.fmaps)
        y_np = y_g.numpy().astype(np.float64)

        def code(s, ids, centre, sel):  # the symbols are y - centre, rounded
            v = np.clip(np.round(y_np[:, s] - centre), -lim, lim)
            coder.encode(enc, v[sel].astype(np.int64), ids[sel], self.y_tables)
            return np.where(sel, v + centre, 0.0)

        self._code_fmaps(y_np.shape, hyper, code)  # channel groups, each with its escapes
        payload = enc.get_compressed().astype("<u4").tobytes()
        return container.pack(Header(self.model_id, h, w, quality), payload)

    def _entropy_decode(self, data: bytes, channels: int | None = None
                        ) -> tuple[Header, torch.Tensor]:
        m = self.cfg.fmaps
        if channels is None:
            channels = m
        elif isinstance(channels, bool) or not isinstance(channels, (int, np.integer)):
            raise ValueError(f"channels must be an integer, got {channels!r}")
        elif not 1 <= channels <= m:
            raise ValueError(f"channels must be from 1 to {m}, got {channels}")
        coded = min(m, -(-channels // FMAP_GROUP) * FMAP_GROUP)  # whole groups up to channels
        header, payload = container.unpack(bytes(data))
        if header.model_id != self.model_id:
            raise FormatError(
                f"made by model {header.model_id.hex()}, but the loaded model is "
                f"{self.model_id.hex()}"
            )
        if len(payload) % 4:
            raise FormatError("corrupted payload (length not a multiple of 4)")
        s, d = self.cfg.stride, 2**self.cfg.downsamples
        hp, wp = -(-header.height // s) * s, -(-header.width // s) * s
        y_shape = (1, coded, hp // d, wp // d)
        try:
            dec = coder.RangeDecoder(np.frombuffer(payload, dtype="<u4").astype(np.uint32))
            hyper = None
            if self.hyper:
                z_shape = (1, self.cfg.hyper_channels, y_shape[2] // 4, y_shape[3] // 4)
                z = coder.decode(dec, _channel_ids(z_shape), self.z_tables)
                z_int = torch.from_numpy(z.reshape(z_shape)).double()
                hyper = self._hyper_params(z_int, coded)

            def code(s, ids, centre, sel):
                v = np.zeros(ids.shape)
                v[sel] = coder.decode(dec, ids[sel], self.y_tables)
                return np.where(sel, v + centre, 0.0)

            y = self._code_fmaps(y_shape, hyper, code)
        except ExactIntegerError:
            raise FormatError("corrupted payload (decoded values out of range)") from None
        except (ValueError, RuntimeError, AssertionError) as e:  # constriction on garbage
            raise FormatError(f"corrupted payload ({e})") from None
        # exact: multiples of 2**-8 (in float32 too below 2**16)
        return header, torch.from_numpy(y[:, :channels].astype(np.float32))

    def _transform(self, net: torch.nn.Module, x: torch.Tensor, down: bool) -> torch.Tensor:
        """The forward (down) or backward network on x, float32 out; bf16 inside if enabled."""
        if self.bf16:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.no_grad(), autocast(self.bf16):
            out = self._tiled(lambda t: net(t, float32_output=True), x, down)
        return out.contiguous()

    def _tiled(self, net, x: torch.Tensor, down: bool) -> torch.Tensor:
        """Run `net` (forward: /2^d, backward: x2^d) tile by tile when x is large."""
        d = 2**self.cfg.downsamples
        unit = d if down else 1  # input pixels per fMap position
        tile, ov = TILE_FMAP * unit, TILE_OVERLAP * unit
        H, W = x.shape[2:]
        if H <= tile + 2 * ov and W <= tile + 2 * ov:
            return net(x)
        scale = 1 / d if down else d
        out = None
        for top in range(0, H, tile):
            for left in range(0, W, tile):
                t0, l0 = max(0, top - ov), max(0, left - ov)
                t1, l1 = min(H, top + tile + ov), min(W, left + tile + ov)
                piece = net(x[:, :, t0:t1, l0:l1])
                if out is None:
                    out = piece.new_empty(*piece.shape[:2], int(H * scale), int(W * scale))
                a, b = int((top - t0) * scale), int((left - l0) * scale)
                hh = int(min(tile, H - top) * scale)
                ww = int(min(tile, W - left) * scale)
                out[:, :, int(top * scale) : int(top * scale) + hh,
                    int(left * scale) : int(left * scale) + ww] = piece[:, :, a : a + hh, b : b + ww]
        return out


def _search_bpp(code, h: int, w: int, bpp: float) -> tuple[int, bytes]:
    """(quality, file) of the highest quality whose file code(quality) is at most bpp bits
    per pixel, or quality 0's file if none is: a bisection, as file size grows with quality."""
    lo, hi = 0, 100
    best = (0, code(0))
    if len(best[1]) * 8 / (h * w) > bpp:
        return best
    while lo < hi:
        mid = (lo + hi + 1) // 2
        data = code(mid)
        if len(data) * 8 / (h * w) <= bpp:
            lo, best = mid, (mid, data)
        else:
            hi = mid - 1
    return best


def _fmap_groups(channels: int) -> list[slice]:
    """The payload's fMap channel groups (FMAP_GROUP channels each, the last maybe fewer), in
    coding order: the one definition that the encoder and the decoder share."""
    return container.fmap_groups(channels, FMAP_GROUP)


def _channel_ids(shape) -> np.ndarray:
    """Each element's channel index, shape (B,C,H,W) (the factorized models' table ids)."""
    b, c, h, w = shape
    return np.broadcast_to(np.arange(c).reshape(1, c, 1, 1), (b, c, h, w))


def _check_quality(quality) -> int:
    try:
        q = float(quality)
    except (TypeError, ValueError):
        raise ValueError(f"quality must be a number from 0 to 100, got {quality!r}") from None
    if not 0 <= q <= 100:
        raise ValueError(f"quality must be from 0 to 100, got {quality}")
    return int(round(q))


_DEFAULTS: dict[str, Codec] = {}  # the shipped model, per resolved precision


def load(path=None, precision: str | None = None) -> Codec:
    """Load a codec: the shipped default model (cached per precision), or the release folder at
    `path`. precision: see `Codec`."""
    if path is None:
        key = resolve(precision)
        if key not in _DEFAULTS:
            _DEFAULTS[key] = Codec(None, key)
        return _DEFAULTS[key]
    return Codec(path, precision)
