"""The streamed engine (``--engine stream``): a scene read, run and written in row bands.

The network runs as :class:`~s2sr.inference.stream.StreamingForward` (exact: equal to the
whole-scene forward, no overlap, no seams); the bands are read in a thread ahead of the
network and the output rows converted to DN and written in another, through the same
reader, writer, nodata fill and DN encoding as the tiled engine
(:class:`~s2sr.inference.engine.TiledSuperResolver`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch
from rasterio.windows import Window
from torch import nn
from tqdm import tqdm

from s2sr.core.errors import UsageError
from s2sr.core.heap import reused_heap
from s2sr.inference.backends import Backend, TorchBackend, cudnn_settings
from s2sr.inference.encoding import DnEncoding, located_at
from s2sr.inference.engine import Reader, Writer, check_finite, read_ahead
from s2sr.inference.stream import StreamingForward, stream_refusal
from s2sr.inference.stream_budget import (
    HEAP_THRESHOLD,
    STREAM_BUDGET,
    pick_layout,
    reuses_heap,
)
from s2sr.inference.stream_consistency import (
    CHUNK_BYTES,
    BandBackProjection,
    back_projection_halo,
)

log = logging.getLogger(__name__)

#: Input pixels per band aimed at on CUDA (within half the free GPU memory).
GPU_BAND_PIXELS = 1 << 22
#: Precisions the stream runs at. Not bf16 yet: under autocast the stream's output is
#: bfloat16 (its denormalisation runs in the output's dtype, the whole-scene forward's in
#: float32), 13-16 DN off the whole-scene bf16 forward at the 99th percentile with the
#: shipped models; denormalised in float32 it was 2.6 DN off (as far as bf16 is from
#: fp32). bf16 and fp16 keep the tiled engine until that is fixed and tested.
STREAM_PRECISIONS = ("fp32",)


class StreamingSuperResolver:
    """Runs a streaming forward over a scene band by band and writes the output rows.

    Args:
        stream: the model's streaming forward (on the device it runs on).
        height, width: the scene's size in pixels.
        radiometry: DN encoding of input and output.
        fill: per-band reflectance put into nodata pixels before the network.
        progress: show a progress bar (input rows).
        budget: memory the stream may take beyond the process with its model loaded
            (:func:`~s2sr.inference.stream_budget.pick_layout`).
        consistency: back-projection iterations (0: off), applied to the whole scene's
            rows band by band (:class:`~s2sr.inference.stream_consistency.
            BandBackProjection`).
    """

    def __init__(self, stream: StreamingForward, height: int, width: int,
                 radiometry: DnEncoding, fill: np.ndarray, progress: bool = False,
                 budget: int = STREAM_BUDGET, consistency: int = 0) -> None:
        self.stream = stream
        self.height, self.width = height, width
        self.radiometry = radiometry
        self.fill = fill.astype(np.float32)[:, None, None]
        self.progress = progress
        self.consistency = consistency
        #: output bytes the back-projection works on at once (:class:`BandBackProjection`)
        self.back_chunk_bytes = CHUNK_BYTES
        self.device = stream.model.head.weight.device
        self.band_rows, self.strip_cols = _band_shape(stream, width, budget, self.device)
        #: run with glibc's heap reused (:func:`s2sr.core.heap.reused_heap`): where the
        #: budget leaves room for what it keeps; on the CPU (a GPU's bands live there)
        self.reuse_heap = self.device.type == "cpu" and reuses_heap(
            stream, width, self.band_rows, self.strip_cols, budget)
        self.valid_pixels = 0
        #: saturated input samples seen (band x pixel), written saturated again
        self.saturated_samples = 0

    @property
    def context_rows(self) -> int:
        """Input rows above and below a part of the scene that its output rows depend on
        (the network's receptive field, plus the back-projection's reach)."""
        extra = back_projection_halo(self.stream.scale, self.consistency) \
            if self.consistency else 0
        return max(self.stream.halo, 3) + extra

    def read_band(self, reader: Reader, r0: int, r1: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Input rows ``r0:r1`` as filled reflectance, with their valid and saturated
        masks (runs in the reading thread)."""
        dn = reader(Window(0, r0, self.width, r1 - r0))
        refl, valid, sat = self.radiometry.decode(dn, self.fill, located_at(r0, 0))
        return refl.astype(np.float32, copy=False), valid, sat

    def _bands(self, reader: Reader, rows: range, masks: list[_Masks], bar: tqdm,
               back: BandBackProjection | None) -> Iterator[np.ndarray]:
        """The reflectance bands of scene rows ``rows`` top to bottom, each read while the
        network runs the one before; their masks are appended to ``masks`` (and their
        rows to ``back``)."""
        starts = range(rows.start, rows.stop, self.band_rows)
        for refl, valid, sat in read_ahead(
                lambda r0: self.read_band(reader, r0, min(r0 + self.band_rows, rows.stop)),
                starts):
            masks.append((valid, sat))
            if back is not None:
                back.add_input(refl)
            bar.update(refl.shape[1])
            yield refl

    def run(self, reader: Reader, writer: Writer, rows: range | None = None) -> int:
        """Super-resolve the scene behind ``reader`` into ``writer`` (see
        :meth:`TiledSuperResolver.run`).

        Args:
            reader, writer: as :meth:`TiledSuperResolver.run`'s.
            rows: the input rows whose output rows to write (default: all); the network
                runs over :attr:`context_rows` more above and below, so that they equal
                the whole scene's (:mod:`s2sr.batch.blocks` runs a scene's row bands
                apart).

        Returns:
            The number of valid input pixels of ``rows`` seen.
        """
        keep = range(0, self.height) if rows is None else rows
        if keep.step != 1 or not 0 <= keep.start < keep.stop <= self.height:
            raise UsageError(f"rows {keep} are not a range of the scene's {self.height} "
                             "rows")
        ctx = 0 if rows is None else self.context_rows
        slab = range(max(0, keep.start - ctx), min(self.height, keep.stop + ctx))
        back = BandBackProjection(self.stream.scale, self.consistency, self.width,
                                  self.back_chunk_bytes) if self.consistency else None
        masks: list[_Masks] = []
        bar = tqdm(total=len(slab), unit="row", disable=not self.progress,
                   desc="s2sr predict")
        out = _RowWriter(self, writer, slab, keep)
        with ThreadPoolExecutor(1) as write_pool, cudnn_settings(self.device, None), \
                reused_heap(HEAP_THRESHOLD if self.reuse_heap else 0):
            for rows_out in self._rows(self._bands(reader, slab, masks, bar, back), back):
                out.submit(write_pool, rows_out, masks)
            out.finish()
        bar.close()
        return self.valid_pixels

    def _rows(self, bands: Iterator[np.ndarray], back: BandBackProjection | None
              ) -> Iterator[torch.Tensor]:
        """The output rows of whole input rows ``(C, n * s, W * s)``, top to bottom,
        back-projected when ``back`` is given (on the network's device)."""
        s = self.stream.scale
        held: list[torch.Tensor] = []  # output rows not yet a whole input row
        for out in self.stream.run(bands, self.band_rows, self.strip_cols):
            check_finite(out)
            held.append(out[0].float())
            joined = torch.cat(held, dim=1) if len(held) > 1 else held[0]
            n = joined.shape[1] // s
            held = [joined[:, n * s:]]
            if not n:
                continue
            rows = joined[:, :n * s] if back is None else back.feed(joined[:, :n * s], False)
            if rows.shape[1]:
                yield rows
        if back is not None:
            last = back.feed(held[0][:, :0], last=True)
            if last.shape[1]:
                yield last

    @staticmethod
    def take(masks: list[_Masks], n: int) -> _Masks:
        """The masks of the next ``n`` input rows, removed from ``masks``."""
        valids: list[np.ndarray] = []
        sats: list[np.ndarray | None] = []
        got = 0
        while got < n:
            valid, sat = masks[0]
            k = min(n - got, valid.shape[0])
            valids.append(valid[:k])
            sats.append(None if sat is None else sat[:, :k])
            if k == valid.shape[0]:
                masks.pop(0)
            else:
                masks[0] = (valid[k:], None if sat is None else sat[:, k:])
            got += k
        valid = np.concatenate(valids, axis=0)
        if all(x is None for x in sats):
            return valid, None
        c = next(x for x in sats if x is not None).shape[0]
        return valid, np.concatenate([np.zeros((c, *v.shape), bool) if x is None else x
                                      for v, x in zip(valids, sats, strict=True)], axis=1)

    def write(self, writer: Writer, window: Window, values: torch.Tensor,
              valid: np.ndarray, sat: np.ndarray | None) -> None:
        """Convert output rows to DN and write them (in the writing thread)."""
        writer(window, self.radiometry.to_dn(values.cpu().numpy(), valid, sat))


_Masks = tuple[np.ndarray, np.ndarray | None]


class _RowWriter:
    """Hands the output rows of ``slab`` to the writing thread, those of ``keep`` only
    (at most two writes pending)."""

    def __init__(self, engine: StreamingSuperResolver, writer: Writer, slab: range,
                 keep: range) -> None:
        self.engine, self.writer = engine, writer
        self.slab, self.keep = slab, keep
        self.done = slab.start  # scene row of the next output row
        self.writes: list[Future[None]] = []

    def submit(self, pool: ThreadPoolExecutor, rows: torch.Tensor,
               masks: list[_Masks]) -> None:
        eng, s = self.engine, self.engine.stream.scale
        n = rows.shape[1] // s
        valid, sat = eng.take(masks, n)
        r0, r1 = max(self.done, self.keep.start), min(self.done + n, self.keep.stop)
        if r1 > r0:
            a, b = r0 - self.done, r1 - self.done
            valid = valid[a:b]
            sat = None if sat is None else sat[:, a:b]
            eng.valid_pixels += int(valid.sum())
            if sat is not None:
                eng.saturated_samples += int(sat.sum())
            while len(self.writes) >= 2:
                self.writes.pop(0).result()
            self.writes.append(pool.submit(
                eng.write, self.writer, Window(0, r0 * s, eng.width * s, (r1 - r0) * s),
                rows[:, a * s:b * s].contiguous(), valid, sat))
        self.done += n

    def finish(self) -> None:
        for fut in self.writes:
            fut.result()
        if self.done != self.slab.stop:  # every row came out once
            raise RuntimeError(f"the stream wrote rows up to {self.done}, not "
                               f"{self.slab.stop}")


def _band_shape(stream: StreamingForward, width: int, budget: int, device: torch.device
                ) -> tuple[int, int | None]:
    """Band height and column strip width (``None``: the full width) within ``budget``;
    on CUDA larger bands, within half the free memory (small bands starve a GPU)."""
    preferred = None
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        budget, preferred = max(budget, free // 2), max(1, GPU_BAND_PIXELS // width)
    return pick_layout(stream, width, budget, preferred=preferred)


#: Why :func:`choose_engine` keeps ONNX Runtime on tiles (measured, docs/predict.md).
ONNX_TILES = ("ONNX Runtime keeps the tiled engine (its streamed graph, bit-exact, ran "
              "1.45-1.6x slower than its tiles)")


def choose_engine(engine: str, backend: str, precision: str, refusal: str | None,
                  tiled_options: Sequence[str] = ()) -> tuple[str, str]:
    """The engine of a run and why: ``engine`` (``--engine``) when not ``auto``; with
    ``auto``, the stream (exact, no overlap recomputed) wherever it runs: a model
    :func:`~s2sr.inference.stream.stream_refusal` accepts (``refusal`` is ``None``), on
    the PyTorch ``backend``, at a :data:`STREAM_PRECISIONS` ``precision``, without the
    tiled engine's own options given (``tiled_options``: ``--tile``, ``--overlap``,
    ``--batch-size``); the tiled engine otherwise."""
    if engine != "auto":
        return engine, f"--engine {engine}"
    if refusal is not None:
        return "tiled", f"the model cannot stream: {refusal}"
    if tiled_options:
        return "tiled", f"{', '.join(tiled_options)} given (options of the tiled engine)"
    if precision not in STREAM_PRECISIONS:
        return "tiled", f"the stream runs at {' or '.join(STREAM_PRECISIONS)}, not {precision}"
    if backend != "torch":
        return "tiled", ONNX_TILES
    return "stream", "exact row bands: equal to a whole-scene forward, no overlap recomputed"


def model_refusal(network: object) -> str | None:
    """Why ``network`` (a PyTorch model, put in eval mode as every engine runs it, or an
    ONNX export) cannot stream; ``None`` when it can."""
    if not isinstance(network, nn.Module):
        return "an ONNX export runs on ONNX Runtime"
    return stream_refusal(network.eval())


def streaming_engine(backend: Backend, height: int, width: int, radiometry: DnEncoding,
                     fill: np.ndarray, precision: str, consistency: int = 0,
                     progress: bool = False) -> StreamingSuperResolver:
    """The streamed engine of ``backend``'s model (``--engine stream``).

    Raises:
        UsageError: in one line naming ``--engine tiled``, what cannot stream: another
            backend than PyTorch, another precision than fp32, a model that is not made of
            the parts :func:`~s2sr.inference.stream.stream_refusal` accepts.
    """
    if not isinstance(backend, TorchBackend):
        raise UsageError(f"--engine stream runs on the PyTorch backend only, not "
                         f"{backend.name}: add --backend torch or use --engine tiled")
    if precision not in STREAM_PRECISIONS:
        raise UsageError(f"--engine stream runs at {' or '.join(STREAM_PRECISIONS)} only, "
                         f"not {precision}: add --precision fp32 or use --engine tiled")
    why = stream_refusal(backend.model)
    if why is not None:
        raise UsageError(f"this model cannot stream ({why}): use --engine tiled")
    stream = StreamingForward(backend.model, channels_last=backend.channels_last)
    return StreamingSuperResolver(stream, height, width, radiometry, fill, progress,
                                  consistency=consistency)

