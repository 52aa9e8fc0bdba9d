"""The streamed engine (``--engine stream``): a scene read, run and written in row bands.

The network runs as :class:`~s2sr.inference.stream.StreamingForward` (exact: equal to the
whole-scene forward, no overlap, no seams); the bands are read in a thread ahead of the
network and the output rows converted to DN and written in another, through the same
reader, writer, nodata fill and DN encoding as the tiled engine
(:class:`~s2sr.inference.engine.TiledSuperResolver`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial

import numpy as np
import torch
from rasterio.windows import Window
from tqdm import tqdm

from s2sr.core.errors import UsageError, WeightsError
from s2sr.inference.backends import Backend, TorchBackend
from s2sr.inference.encoding import DnEncoding
from s2sr.inference.engine import Reader, Writer
from s2sr.inference.stream import StreamingForward, stream_refusal
from s2sr.inference.stream_budget import pick_band_rows

log = logging.getLogger(__name__)

#: Memory the streamed bands may take (bytes); the band height is picked to fit it.
STREAM_BUDGET = 1 << 30


class StreamingSuperResolver:
    """Runs a streaming forward over a scene band by band and writes the output rows.

    Args:
        stream: the model's streaming forward (on the device it runs on).
        height, width: the scene's size in pixels.
        radiometry: DN encoding of input and output.
        fill: per-band reflectance put into nodata pixels before the network.
        progress: show a progress bar (input rows).
        budget: memory the bands may take (:func:`pick_band_rows`).
    """

    def __init__(self, stream: StreamingForward, height: int, width: int,
                 radiometry: DnEncoding, fill: np.ndarray, progress: bool = False,
                 budget: int = STREAM_BUDGET) -> None:
        self.stream = stream
        self.height, self.width = height, width
        self.radiometry = radiometry
        self.fill = fill.astype(np.float32)[:, None, None]
        self.progress = progress
        self.strip_cols: int | None = None
        try:
            self.band_rows = pick_band_rows(stream, width, budget)
        except UsageError:  # too wide for one row: column strips of one row
            self.band_rows, cols = 1, width
            while cols > 64:
                cols = (cols + 1) // 2
                try:
                    pick_band_rows(stream, cols + 2 * stream.halo, budget)
                    break
                except UsageError:
                    continue
            self.strip_cols = cols
        self.valid_pixels = 0
        #: saturated input samples seen (band x pixel), written saturated again
        self.saturated_samples = 0

    def read_band(self, reader: Reader, r0: int, r1: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Input rows ``r0:r1`` as filled reflectance, with their valid and saturated
        masks (runs in the reading thread)."""
        dn = reader(Window(0, r0, self.width, r1 - r0))
        refl, valid, sat = self.radiometry.decode(dn, self.fill, partial(_first_set, r0))
        return refl.astype(np.float32, copy=False), valid, sat

    def _bands(self, reader: Reader, masks: list[tuple[np.ndarray, np.ndarray | None]],
               bar: tqdm) -> Iterator[np.ndarray]:
        """The scene's reflectance bands top to bottom, each read while the network runs
        the one before; their masks are appended to ``masks``."""
        starts = list(range(0, self.height, self.band_rows))
        with ThreadPoolExecutor(1) as pool:
            nxt = pool.submit(self.read_band, reader, 0, min(self.band_rows, self.height))
            for k in range(len(starts)):
                refl, valid, sat = nxt.result()
                if k + 1 < len(starts):
                    r1 = starts[k + 1]
                    nxt = pool.submit(self.read_band, reader, r1,
                                      min(r1 + self.band_rows, self.height))
                masks.append((valid, sat))
                self.valid_pixels += int(valid.sum())
                if sat is not None:
                    self.saturated_samples += int(sat.sum())
                bar.update(refl.shape[1])
                yield refl

    def run(self, reader: Reader, writer: Writer, rows: range | None = None) -> int:
        """Super-resolve the scene behind ``reader`` into ``writer`` (see
        :meth:`TiledSuperResolver.run`; ``rows`` must be ``None``: the whole scene).

        Returns:
            The number of valid input pixels seen.
        """
        if rows is not None:
            raise UsageError("the streamed engine runs whole scenes only: use --engine tiled")
        s = self.stream.scale
        masks: list[tuple[np.ndarray, np.ndarray | None]] = []
        bar = tqdm(total=self.height, unit="row", disable=not self.progress,
                   desc="s2sr predict")
        held: list[torch.Tensor] = []  # output rows not yet a whole input row
        done = 0  # input rows written
        with ThreadPoolExecutor(1) as write_pool:
            writes: list[Future[None]] = []
            for out in self.stream.run(self._bands(reader, masks, bar), self.band_rows,
                                       self.strip_cols):
                if not bool(torch.isfinite(out).all()):
                    raise WeightsError(
                        "the model produced NaN or infinite values from finite input: its "
                        "weights are damaged or it diverged in training; use other weights "
                        "(e.g. the shipped model, without --weights)")
                held.append(out[0].float().cpu())
                joined = torch.cat(held, dim=1) if len(held) > 1 else held[0]
                n = joined.shape[1] // s
                if n == 0:
                    held = [joined]
                    continue
                held = [joined[:, n * s:]]
                valid, sat = self._take(masks, n)
                while len(writes) >= 2:
                    writes.pop(0).result()
                writes.append(write_pool.submit(
                    self._write, writer, Window(0, done * s, self.width * s, n * s),
                    joined[:, :n * s].contiguous(), valid, sat))
                done += n
            for fut in writes:
                fut.result()
        bar.close()
        return self.valid_pixels

    @staticmethod
    def _take(masks: list[tuple[np.ndarray, np.ndarray | None]], n: int
              ) -> tuple[np.ndarray, np.ndarray | None]:
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

    def _write(self, writer: Writer, window: Window, values: torch.Tensor,
               valid: np.ndarray, sat: np.ndarray | None) -> None:
        """Convert output rows to DN and write them (in the writing thread)."""
        writer(window, self.radiometry.to_dn(values.numpy(), valid, sat))


def streaming_engine(backend: Backend, height: int, width: int, radiometry: DnEncoding,
                     fill: np.ndarray, precision: str, consistency: int = 0,
                     progress: bool = False) -> StreamingSuperResolver:
    """The streamed engine of ``backend``'s model (``--engine stream``).

    Raises:
        UsageError: in one line naming ``--engine tiled``, what cannot stream: another
            backend than PyTorch, another precision than fp32, the consistency option
            (applied per tile, it has no row-band form yet), a model that is not made of
            the parts :func:`~s2sr.inference.stream.stream_refusal` accepts.
    """
    if not isinstance(backend, TorchBackend):
        raise UsageError(f"--engine stream runs on the PyTorch backend only, not "
                         f"{backend.name}: add --backend torch or use --engine tiled")
    if precision != "fp32":
        raise UsageError(f"--engine stream runs at fp32 only, not {precision}: add "
                         "--precision fp32 or use --engine tiled")
    if consistency:
        raise UsageError("--engine stream has no --consistency yet: drop --consistency or "
                         "use --engine tiled")
    why = stream_refusal(backend.model)
    if why is not None:
        raise UsageError(f"this model cannot stream ({why}): use --engine tiled")
    stream = StreamingForward(backend.model, channels_last=backend.channels_last)
    return StreamingSuperResolver(stream, height, width, radiometry, fill, progress)


def _first_set(r0: int, mask: np.ndarray) -> tuple[int, int]:
    """Scene (row, column) of the first pixel set in ``mask``, a band starting at row ``r0``."""
    y, x = np.argwhere(mask)[0]
    return r0 + int(y), int(x)
