"""The ten-band engine of ``--bands all``: the 20 m bands sharpened by a guided model (and
the 10 m bands by a 10 m model at 5 m), tile by tile, exactly.

At 5 m the 20 m bands come from the cascade (the default; better than a one-pass x4 model by
0.7 dB on the held-out places, MODEL_CARD.md): the x2 guided model brings them to 10 m
guided by the native 10 m bands, then again to 5 m guided by the 10 m bands the 10 m model
has just sharpened to 5 m. A x4 guided model (one pass) is still run as it is.

The scene is cut into cores of the 20 m grid; each core is read with :attr:`halo` 20 m
pixels of context on every side (cut at the scene's edges), its 10 m guide with twice as
many 10 m pixels, so that the tile's result inside the context equals the whole-scene
forward within float rounding (:func:`~s2sr.models.guided.guided_halo`; the convolutions
pad with zeros at the scene's edges, where the tile's edges then are): :func:`context`.
No blending, no seams. Reading of the next tile runs in a thread while the networks work;
finished cores are converted to DN and written in another thread, so memory is one tile's,
whatever the scene's size.

Output bands, in Sentinel-2 order (:data:`~s2sr.core.bands.TEN_BANDS`): at 10 m the four
10 m bands are the input's DN, unchanged; at 5 m they come from the 10 m model. The six
20 m bands come from the guided model, in the 20 m bands' DN encoding. A 20 m band pixel is
written as nodata where its 20 m input pixel or its guide is missing; saturated 20 m
samples are written saturated.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from rasterio.windows import Window
from torch import nn
from tqdm import tqdm

from s2sr.core.bands import BANDS_20M, DEFAULT_BANDS, TEN_BANDS
from s2sr.core.constants import MAX_TILE
from s2sr.core.errors import UsageError
from s2sr.core.heap import reused_heap
from s2sr.inference.domain_guard import guard_reach, guard_tile, warn_fallback
from s2sr.inference.encoding import DnEncoding, located_at, refilled
from s2sr.inference.engine import Reader, Writer, check_finite, read_ahead
from s2sr.inference.multires_strips import INPUT_10M, INPUT_20M, SHIPPED_MODELS, StripRunner
from s2sr.inference.plan import model_fill
from s2sr.inference.stream import StreamingForward, stream_refusal
from s2sr.inference.stream_budget import HEAP_THRESHOLD, preferred_rows
from s2sr.inference.stream_guided import GuidedStream, guided_refusal
from s2sr.io.writer import block_size_for
from s2sr.models import get_spec
from s2sr.models.guided import guided_halo

log = logging.getLogger(__name__)

#: The largest ``--tile`` of the ten bands, in 20 m pixels: the same ground as the 4-band
#: predict's :data:`~s2sr.core.constants.MAX_TILE` 10 m pixels.
MAX_TILE_20M = MAX_TILE // 2

#: Positions of the 10 m and of the 20 m bands among :data:`TEN_BANDS`.
HR_INDEX = [TEN_BANDS.index(b) for b in DEFAULT_BANDS]
LR_INDEX = [TEN_BANDS.index(b) for b in BANDS_20M]
#: Default core (20 m pixels, without the context) per output resolution in metres: 768^2
#: and 2048^2 output pixels. With the networks streamed inside the tile, memory is the
#: tile's arrays, not its feature maps: peak RSS 699 MB at 10 m and 1353 MB at 5 m on a
#: 2048^2 scene (2026-12-07, benchmarks/bench_bands.py, docs/predict.md); a larger 5 m core
#: cuts the context's share of the work (30 20 m pixels each side) but not within 1.5 GB.
DEFAULT_CORE = {10: 384, 5: 512}
#: Cores of at least this many 20 m pixels are cut to a multiple of it, so that the output
#: blocks (:func:`~s2sr.io.writer.block_size_for`) are written whole, once.
CORE_STEP = 64


def model_halo(model: nn.Module) -> int:
    """Input pixels of context a tile of a 10 m model needs to equal the whole-scene
    forward (its receptive field, :attr:`StreamingForward.halo`)."""
    return StreamingForward(model).halo


def context(guided: int, hr_model: int | None, cascade: bool) -> int:
    """20 m pixels of context around a core for the tile to equal the whole scene.

    Args:
        guided: the guided model's :func:`~s2sr.models.guided.guided_halo` (its input
            pixels: 20 m in the first pass, 10 m in the cascade's second).
        hr_model: the 10 m model's :func:`model_halo` (10 m pixels), at 5 m.
        cascade: the 20 m bands by the x2 model twice.

    The second pass needs its input (the first pass's 10 m output) and its guide (the
    10 m model's 5 m output) exact over the core and ``guided`` 10 m pixels around it;
    the first pass and the 10 m model both read the tile's inputs directly, so their own
    contexts come on top of that, the larger of the two.
    """
    own = max(guided, 0 if hr_model is None else math.ceil(hr_model / 2))
    return own + math.ceil(guided / 2) if cascade else own


@dataclass
class Tile:
    """One core of the 20 m grid, read with its context.

    Attributes:
        core: ``(r0, r1, c0, c1)`` the core in 20 m pixels. ctx: ``(a0, b0)`` the first
            row and column read (20 m pixels).
        lr, guide: reflectance ``(6, h, w)`` and ``(4, 2h, 2w)``, nodata filled.
        hr_in: the 10 m model's input (its own fill), at 5 m only.
        lr_valid, hr_valid: valid masks of the core (20 m and 10 m pixels).
        lr_sat, hr_sat: saturated samples of the core, or ``None``.
        hr_dn: the core's 10 m DN (passed through at 10 m).
    """

    core: tuple[int, int, int, int]
    ctx: tuple[int, int]
    lr: np.ndarray
    guide: np.ndarray
    hr_in: np.ndarray | None
    lr_valid: np.ndarray
    hr_valid: np.ndarray
    lr_sat: np.ndarray | None
    hr_sat: np.ndarray | None
    hr_dn: np.ndarray


class BandsSuperResolver:
    """Runs a guided model (and, at 5 m, a 10 m model) over a scene tile by tile.

    Args:
        guided: the guided model (x2: the 20 m bands to 10 m, or to 5 m in two passes
            with ``hr_model``; x4: to 5 m in one).
        hr_model: the x2 model of the 10 m bands, for a 5 m output; ``None`` at 10 m.
        height, width: the scene in 20 m pixels.
        hr_enc, lr_enc: DN encodings of the 10 m and the 20 m bands.
        tile: 20 m pixels per tile side, context included (``None``: a core of
            :data:`DEFAULT_CORE` and the context); a core of :data:`CORE_STEP` pixels or more
            is cut to a multiple of it.
        device: where the networks run.
        progress: show a progress bar.
    """

    def __init__(self, guided: nn.Module, hr_model: nn.Module | None, height: int, width: int,
                 hr_enc: DnEncoding, lr_enc: DnEncoding, tile: int | None = None,
                 device: torch.device | None = None, progress: bool = False) -> None:
        #: the 20 m bands by the x2 guided model twice (a 5 m output from a x2 model)
        self.cascade = hr_model is not None and get_spec(guided).scale == 2
        self.scale = 4 if self.cascade else get_spec(guided).scale
        self.device = device or torch.device("cpu")
        self.guided = self._ready(guided)
        self.hr_model = None if hr_model is None else self._ready(hr_model)
        #: the 10 m model as a row stream on the CPU (equal to its forward within float
        #: rounding, 1.2-1.3x faster: its activations stay in the caches; docs/predict.md)
        self.hr_stream = None if self.hr_model is None or self.device.type != "cpu" \
            or stream_refusal(self.hr_model) is not None else StreamingForward(self.hr_model)
        #: the guided model as a row stream on the CPU where it can (equal within float
        #: rounding; band-sized blocks instead of a tile's feature maps)
        self.guided_stream = None if self.device.type != "cpu" \
            or guided_refusal(self.guided) is not None else GuidedStream(self.guided)
        self.height, self.width = height, width
        self.hr_enc, self.lr_enc = hr_enc, lr_enc
        self.halo = context(guided_halo(guided),
                            None if hr_model is None else model_halo(hr_model), self.cascade)
        #: the cascade's second pass's and the 10 m model's own context (20 m pixels)
        self.second = math.ceil(guided_halo(guided) / 2)
        self.hr_reach = 0 if hr_model is None else math.ceil(model_halo(hr_model) / 2)
        self.halo = max(self.halo, guard_reach(self.scale))  # the snow guard's context
        if tile is not None and int(tile) > MAX_TILE_20M:
            raise UsageError(f"--tile {tile} is larger than {MAX_TILE_20M} 20 m pixels (the "
                             f"{MAX_TILE} 10 m pixels of the 4-band predict): use a tile of "
                             "256 to 1024 (memory grows with its square)")
        core = DEFAULT_CORE[20 // self.scale] if tile is None else int(tile) - 2 * self.halo
        if core < 8:
            raise UsageError(f"--tile {tile} leaves no room inside the models' context of "
                             f"{self.halo} 20 m pixels each side: use a tile of at least "
                             f"{2 * self.halo + 8}")
        #: the core's side in 20 m pixels, and the tile's with its context
        self.core = core // CORE_STEP * CORE_STEP if core >= CORE_STEP else core
        self.tile = self.core + 2 * self.halo
        #: the cascade streamed in column strips (:mod:`~s2sr.inference.multires_strips`):
        #: on the CPU where both networks stream and no tile was asked for
        self.strips = None
        if self.cascade and tile is None and self.guided_stream is not None \
                and self.hr_stream is not None:
            self.strips = StripRunner(self)
            self.core = self.strips.cores[0][1] - self.strips.cores[0][0]
        #: the output's block side (output pixels): the cores' (tiles') or strips' writes
        #: cover whole blocks
        self.block = block_size_for(self.core * self.scale)
        self.lr_fill = np.asarray(model_fill(guided, len(BANDS_20M)), np.float32)[:, None, None]
        gm = guided.get_buffer("guide_mean")
        self.guide_fill = gm.detach().cpu().numpy().reshape(-1, 1, 1).astype(np.float32)
        self.hr_fill = None if hr_model is None else np.asarray(
            model_fill(hr_model, len(DEFAULT_BANDS)), np.float32)[:, None, None]
        self.progress = progress
        self.valid_pixels = 0
        self.saturated_samples = 0
        #: 20 m pixels whose SWIR fell back to bicubic (:mod:`~s2sr.inference.domain_guard`)
        self.guard_fallback = 0

    def _ready(self, model: nn.Module) -> nn.Module:
        model = model.to(self.device).eval()
        if self.device.type == "cpu":
            model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        return model

    def cores(self) -> list[tuple[int, int, int, int]]:
        """The cores ``(r0, r1, c0, c1)`` of the 20 m grid, row-major."""
        c = self.core
        return [(r, min(r + c, self.height), q, min(q + c, self.width))
                for r in range(0, self.height, c) for q in range(0, self.width, c)]

    def read_tile(self, read_hr: Reader, read_lr: Reader,
                  core: tuple[int, int, int, int]) -> Tile:
        """Read a core with its context as filled reflectance (in the reading thread)."""
        r0, r1, c0, c1 = core
        h = self.halo
        a0, a1 = max(0, r0 - h), min(self.height, r1 + h)
        b0, b1 = max(0, c0 - h), min(self.width, c1 + h)
        lr_dn = read_lr(Window(b0, a0, b1 - b0, a1 - a0))
        hr_dn = read_hr(Window(2 * b0, 2 * a0, 2 * (b1 - b0), 2 * (a1 - a0)))
        lr, lr_valid, lr_sat = self.lr_enc.decode(lr_dn, self.lr_fill, located_at(a0, b0),
                                                  INPUT_20M)
        guide, hr_valid, hr_sat = self.hr_enc.decode(hr_dn, self.guide_fill,
                                                     located_at(2 * a0, 2 * b0), INPUT_10M)
        hr_in = None
        if self.hr_fill is not None:
            hr_in = refilled(guide, hr_valid, hr_sat, self.hr_fill)
        y, x = r0 - a0, c0 - b0
        ch, cw = r1 - r0, c1 - c0
        return Tile(core, (a0, b0), lr, guide, hr_in,
                    lr_valid[y:y + ch, x:x + cw], hr_valid[2 * y:2 * (y + ch), 2 * x:2 * (x + cw)],
                    None if lr_sat is None else lr_sat[:, y:y + ch, x:x + cw],
                    None if hr_sat is None else hr_sat[:, 2 * y:2 * (y + ch), 2 * x:2 * (x + cw)],
                    hr_dn[:, 2 * y:2 * (y + ch), 2 * x:2 * (x + cw)])

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(array, np.float32))[None].to(self.device)
        return t.contiguous(memory_format=torch.channels_last) \
            if self.device.type == "cpu" else t

    @torch.inference_mode()
    def forward(self, tile: Tile) -> tuple[np.ndarray, np.ndarray | None]:
        """The core's 20 m bands at the output resolution, and at 5 m its 10 m bands
        (reflectance, ``None`` at 10 m)."""
        r0, r1, c0, c1 = tile.core
        a0, b0 = tile.ctx
        s = self.scale
        hr_out = None
        if self.cascade:
            lr_out, hr_out = self._cascade(tile)
        else:
            if self.hr_model is not None and tile.hr_in is not None:
                up = self._hr_forward(tile.hr_in)
                hr_out = up[0, :, (r0 - a0) * 4:(r1 - a0) * 4, (c0 - b0) * 4:(c1 - b0) * 4]
            out = self._guided_forward(self._tensor(tile.lr), self._tensor(tile.guide))
            lr_out = out[0, :, (r0 - a0) * s:(r1 - a0) * s, (c0 - b0) * s:(c1 - b0) * s]
        check_finite(lr_out, hr_out, fix=SHIPPED_MODELS)
        lr_np, fell = guard_tile(lr_out.float().cpu().numpy(), tile.lr, tile.guide, s,
                                 (r0 - a0, c0 - b0, r1 - r0, c1 - c0))
        self.guard_fallback += fell
        return lr_np, None if hr_out is None else hr_out.float().cpu().numpy()

    def _window(self, tile: Tile, margin: int) -> tuple[int, int, int, int]:
        """The core and ``margin`` 20 m pixels around it, within the tile: ``(y0, y1, x0,
        x1)`` in 20 m pixels of the tile."""
        r0, r1, c0, c1 = tile.core
        a0, b0 = tile.ctx
        h, w = tile.lr.shape[1:]
        return (max(0, r0 - margin - a0), min(h, r1 + margin - a0),
                max(0, c0 - margin - b0), min(w, c1 + margin - b0))

    def _cascade(self, tile: Tile) -> tuple[torch.Tensor, torch.Tensor]:
        """The core's six bands and four bands at 5 m by the cascade, each network on the
        part of the tile it needs: the first pass on the whole tile; the second only on
        the core and its own context (its input: the first pass's 10 m result, negative
        reflectance cut to 0 as it would be written; its guide: the 10 m bands at 5 m);
        the 10 m model on the core, the second pass's context and its own."""
        assert self.hr_model is not None and tile.hr_in is not None
        r0, r1, c0, c1 = tile.core
        a0, b0 = tile.ctx
        y0, y1, x0, x1 = self._window(tile, self.second + self.hr_reach)
        up = self._hr_forward(tile.hr_in[:, 2 * y0:2 * y1, 2 * x0:2 * x1])
        v0, v1, u0, u1 = self._window(tile, self.second)
        mid = self._guided_forward(self._tensor(tile.lr), self._tensor(tile.guide))
        out = self._guided_forward(
            self._part(mid[:, :, 2 * v0:2 * v1, 2 * u0:2 * u1].clamp_min(0)),
            self._part(up[:, :, 4 * (v0 - y0):4 * (v1 - y0), 4 * (u0 - x0):4 * (u1 - x0)]))
        y, x = r0 - a0, c0 - b0
        return (out[0, :, 4 * (y - v0):4 * (r1 - a0 - v0), 4 * (x - u0):4 * (c1 - b0 - u0)],
                up[0, :, 4 * (y - y0):4 * (r1 - a0 - y0), 4 * (x - x0):4 * (c1 - b0 - x0)])

    def _hr_forward(self, hr_in: np.ndarray) -> torch.Tensor:
        """The 10 m model's output for ``hr_in`` (a part of the tile): a row stream in bands
        of :func:`~s2sr.inference.stream_budget.preferred_rows` on the CPU, else one
        forward."""
        assert self.hr_model is not None
        x = self._tensor(hr_in)
        if self.hr_stream is None:
            return self.hr_model(x)
        return self.hr_stream.forward(x, band_rows=preferred_rows(x.shape[3]))

    def _guided_forward(self, lr: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        """The guided model's output: a row stream in bands of
        :func:`~s2sr.inference.stream_budget.preferred_rows` coarse rows on the CPU, else
        one forward."""
        if self.guided_stream is None:
            return self.guided(lr, guide)
        return self.guided_stream.forward(lr, guide, band_rows=preferred_rows(lr.shape[3]))

    def _part(self, t: torch.Tensor) -> torch.Tensor:
        return t.contiguous(memory_format=torch.channels_last) \
            if self.device.type == "cpu" else t.contiguous()

    def ten_bands(self, tile: Tile, lr_refl: np.ndarray, hr_refl: np.ndarray | None
                  ) -> np.ndarray:
        """The core's ten bands as DN at the output resolution (in the writing thread)."""
        return self.dn_bands(lr_refl, hr_refl, tile.lr_valid, tile.hr_valid, tile.lr_sat,
                             tile.hr_sat, tile.hr_dn)

    def dn_bands(self, lr_refl: np.ndarray, hr_refl: np.ndarray | None, lr_valid: np.ndarray,
                 hr_valid: np.ndarray, lr_sat: np.ndarray | None, hr_sat: np.ndarray | None,
                 hr_dn: np.ndarray | None = None) -> np.ndarray:
        """Ten bands as DN at the output resolution from the 20 m bands' output ``lr_refl``
        and (at 5 m) the 10 m bands' ``hr_refl``, or (at 10 m) their input ``hr_dn``, with
        the valid and saturated masks of the same pixels at 20 m and 10 m."""
        s = self.scale
        lr_valid = np.repeat(np.repeat(lr_valid, s, axis=0), s, axis=1)
        guide_valid = np.repeat(np.repeat(hr_valid, s // 2, axis=0), s // 2, axis=1)
        lr_dn = self.lr_enc.to_dn(lr_refl, lr_valid & guide_valid, lr_sat)
        out = np.empty((len(TEN_BANDS), *lr_dn.shape[1:]), lr_dn.dtype)
        out[LR_INDEX] = lr_dn
        if hr_refl is None:
            assert hr_dn is not None
            out[HR_INDEX] = hr_dn  # the 10 m bands, unchanged
        else:
            out[HR_INDEX] = self.hr_enc.to_dn(hr_refl, hr_valid, hr_sat)
        return out

    def count(self, lr_valid: np.ndarray, hr_valid: np.ndarray, lr_sat: np.ndarray | None,
              hr_sat: np.ndarray | None) -> None:
        """Count a core's valid 20 m pixels (with a valid guide) and saturated samples."""
        ch, cw = lr_valid.shape
        both = lr_valid & hr_valid.reshape(ch, 2, cw, 2).all(axis=(1, 3))
        self.valid_pixels += int(both.sum())
        for sat in (lr_sat, hr_sat):
            self.saturated_samples += 0 if sat is None else int(sat.sum())

    def _tiles(self, read_hr: Reader, read_lr: Reader, cores: list[tuple[int, int, int, int]]
               ) -> Iterator[Tile]:
        """The tiles in order, each read while the one before runs."""
        return read_ahead(lambda core: self.read_tile(read_hr, read_lr, core), cores)

    def run(self, read_hr: Reader, read_lr: Reader, writer: Writer) -> int:
        """Super-resolve the scene into ``writer`` (windows of the output grid).

        Args:
            read_hr: DN of the 10 m bands for a window of 10 m pixels.
            read_lr: DN of the 20 m bands for a window of 20 m pixels.
            writer: receives an output window and its ten bands' DN.

        Returns:
            The number of valid 20 m input pixels seen (with a valid guide).
        """
        if self.strips is not None:
            bar = tqdm(total=self.height * len(self.strips.cores), unit="row",
                       disable=not self.progress, desc="s2sr predict --bands all")
            with reused_heap(HEAP_THRESHOLD):
                self.strips.run(read_hr, read_lr, writer, bar.update)
            bar.close()
            warn_fallback(self.guard_fallback, self.height * self.width)
            return self.valid_pixels
        cores = self.cores()
        s = self.scale
        bar = tqdm(total=len(cores), unit="tile", disable=not self.progress,
                   desc="s2sr predict --bands all")
        # the networks' band-sized blocks come from the heap and are reused, not mapped,
        # faulted in and zeroed afresh for every convolution (s2sr.core.heap.reused_heap)
        with ThreadPoolExecutor(1) as write_pool, \
                reused_heap(HEAP_THRESHOLD if self.device.type == "cpu" else 0):
            writes: list[Future[None]] = []
            for tile in self._tiles(read_hr, read_lr, cores):
                lr_refl, hr_refl = self.forward(tile)
                self.count(tile.lr_valid, tile.hr_valid, tile.lr_sat, tile.hr_sat)
                r0, r1, c0, c1 = tile.core
                window = Window(c0 * s, r0 * s, (c1 - c0) * s, (r1 - r0) * s)
                while writes:  # the tile before is written while this one ran
                    writes.pop(0).result()
                writes.append(write_pool.submit(self._write, writer, window, tile, lr_refl,
                                                hr_refl))
                bar.update(1)
            for fut in writes:
                fut.result()
        bar.close()
        warn_fallback(self.guard_fallback, self.height * self.width)
        return self.valid_pixels

    def _write(self, writer: Writer, window: Window, tile: Tile, lr_refl: np.ndarray,
               hr_refl: np.ndarray | None) -> None:
        writer(window, self.ten_bands(tile, lr_refl, hr_refl))

