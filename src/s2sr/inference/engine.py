"""Streaming tiled super-resolution: read tiles, run the network in batches, blend, write.

Reading of the next batch runs in a thread while the network works (on CUDA that thread
also starts the batch's copy to the GPU, see :meth:`TorchBackend.stage`), and finished
cores are converted and written in another thread. Memory is bounded by one batch of
tiles, the cores being written, and ``ramp``-wide strips carried to the next tiles: it
does not depend on the scene's size.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

import numpy as np
import torch
from rasterio.windows import Window
from torch import nn
from tqdm import tqdm

from s2sr.core.errors import WeightsError
from s2sr.data.degrade_torch import back_project
from s2sr.inference.backends import Backend, Staged, TorchBackend
from s2sr.inference.encoding import DnEncoding
from s2sr.inference.tiling import TileLayout, col_weights, extent_offsets, row_weights

log = logging.getLogger(__name__)

Reader = Callable[[Window], np.ndarray]
Writer = Callable[[Window, np.ndarray], None]


T = TypeVar("T")
R = TypeVar("R")


def read_ahead(read: Callable[[T], R], items: Sequence[T]) -> Iterator[R]:
    """``read(item)`` of each item in order, the next one read in a thread while the caller
    works on the one before (the engines' reading of tiles and bands)."""
    with ThreadPoolExecutor(1) as pool:
        nxt = pool.submit(read, items[0]) if items else None
        for k in range(len(items)):
            assert nxt is not None
            done = nxt.result()
            if k + 1 < len(items):
                nxt = pool.submit(read, items[k + 1])
            yield done


def check_finite(*outputs: torch.Tensor | None,
                 fix: str = "the shipped model, without --weights") -> None:
    """Refuse a network's output holding NaN or infinite values (its input is finite).

    Raises:
        WeightsError: naming ``fix``, the weights to use instead.
    """
    if any(y is not None and not bool(torch.isfinite(y).all()) for y in outputs):
        raise WeightsError(
            "the model produced NaN or infinite values from finite input: its weights are "
            f"damaged or it diverged in training; use other weights (e.g. {fix})")


def read_tile(reader: Reader, layout: TileLayout, i: int, j: int) -> np.ndarray:
    """Read tile ``(i, j)``, padding by reflection where it leaves the scene.

    Returns:
        ``(C, tile, tile)`` DN.
    """
    oy, ox = layout.origin(i, j)
    t = layout.tile
    y0, x0 = max(oy, 0), max(ox, 0)
    y1, x1 = min(oy + t, layout.height), min(ox + t, layout.width)
    data = reader(Window(x0, y0, x1 - x0, y1 - y0))
    pad = ((0, 0), (y0 - oy, oy + t - y1), (x0 - ox, ox + t - x1))
    if any(p for axis in pad for p in axis):
        if min(data.shape[1:]) > 1:
            data = np.pad(data, pad, mode="reflect")
        else:
            data = np.pad(data, pad, mode="edge")
    return data


@dataclass
class Batch:
    """Tiles read for one forward pass (see :meth:`TiledSuperResolver.read_batch`)."""

    keys: list[tuple[int, int]]
    refl: np.ndarray  # (B, C, t, t) float32
    valid: list[np.ndarray]  # per tile (t, t)
    saturated: list[np.ndarray | None]  # per tile (C, t, t), None where nothing saturates
    active: list[bool]  # tile has any valid pixel
    staged: Staged | None = None  # the active tiles, on their way to a PyTorch backend


class TiledSuperResolver:
    """Runs a model over a scene tile by tile and streams the blended output.

    Args:
        model: reflectance -> reflectance network (``(B, C, h, w)`` ->
            ``(B, C, h*scale, w*scale)``): a PyTorch model (run by a
            :class:`~s2sr.inference.backends.TorchBackend` on ``device``, channels-last)
            or any :class:`~s2sr.inference.backends.Backend`.
        layout: the tiling.
        radiometry: DN encoding of input and output.
        fill: per-band reflectance put into nodata pixels before the network.
        device: torch device of a PyTorch model.
        batch_size: tiles per forward pass.
        progress: show a progress bar.
        consistency: iterations of back-projection onto the input per tile (0: off).
    """

    def __init__(self, model: nn.Module | Backend, layout: TileLayout, radiometry: DnEncoding,
                 fill: np.ndarray, device: torch.device, batch_size: int = 1,
                 progress: bool = False, consistency: int = 0) -> None:
        self.backend: Backend = TorchBackend(model, device) if isinstance(model, nn.Module) \
            else model
        self.layout = layout
        self.radiometry = radiometry
        self.fill = fill.astype(np.float32)[:, None, None]
        self.device = device
        self.batch_size = max(1, batch_size)
        self.progress = progress
        self.valid_pixels = 0
        #: saturated input samples seen (band x pixel): not fed to the network, written
        #: saturated again (:meth:`DnEncoding.saturated_value`)
        self.saturated_samples = 0
        self.consistency = consistency
        self._wy: dict[int, torch.Tensor] = {}
        self._wx: dict[int, torch.Tensor] = {}

    def batches(self, rows: range | None = None) -> Iterator[list[tuple[int, int]]]:
        """The tiles of tile rows ``rows`` (default: all), row-major, in batches."""
        keys = [(i, j) for i in rows or range(self.layout.rows) for j in range(self.layout.cols)]
        for k in range(0, len(keys), self.batch_size):
            yield keys[k:k + self.batch_size]

    def read_batch(self, reader: Reader, keys: list[tuple[int, int]]) -> Batch:
        """Read tiles ``keys`` as reflectance, nodata filled (runs in the reading thread)."""
        refls, valids, active, sats = [], [], [], []
        for i, j in keys:
            dn = read_tile(reader, self.layout, i, j)
            refl, valid, sat = self.radiometry.decode(
                dn, self.fill, partial(self._scene_position, i=i, j=j))
            refls.append(refl)
            valids.append(valid)
            sats.append(sat)
            active.append(bool(valid.any()))
        batch = Batch(keys, np.stack(refls), valids, sats, active)
        idx = [k for k, a in enumerate(active) if a]
        if idx and isinstance(self.backend, TorchBackend):
            batch.staged = self.backend.stage(torch.from_numpy(
                np.ascontiguousarray(batch.refl[idx])))
        return batch

    def _scene_position(self, mask: np.ndarray, i: int, j: int) -> tuple[int, int]:
        """First (row, column) of the scene where ``mask`` (a tile, padded by reflection)
        is set, ignoring the mirrored padding."""
        oy, ox = self.layout.origin(i, j)
        for y, x in np.argwhere(mask):
            r, c = oy + int(y), ox + int(x)
            if 0 <= r < self.layout.height and 0 <= c < self.layout.width:
                return r, c
        y, x = np.argwhere(mask)[0]
        return min(max(oy + int(y), 0), self.layout.height - 1), \
            min(max(ox + int(x), 0), self.layout.width - 1)

    @torch.inference_mode()
    def forward(self, batch: Batch) -> torch.Tensor:
        """The batch's outputs ``(B, C, tile*s, tile*s)`` float32 where the backend left
        them (the GPU's stay on the GPU); zeros for tiles without valid pixels."""
        s = self.layout.scale
        t = self.layout.tile
        shape = (len(batch.keys), batch.refl.shape[1], t * s, t * s)
        idx = [k for k, a in enumerate(batch.active) if a]
        if not idx:
            return torch.zeros(shape)
        x = torch.from_numpy(np.ascontiguousarray(batch.refl[idx]))
        if batch.staged is not None and isinstance(self.backend, TorchBackend):
            y = self.backend(batch.staged)
        else:
            y = self.backend(x)
        if self.consistency:
            y = back_project(y, x.to(y.device), self.layout.scale, self.consistency)
        check_finite(y)
        if len(idx) == len(batch.keys):
            return y.float()
        out = torch.zeros(shape, device=y.device)
        out[idx] = y.float()
        return out

    def _weights(self, i: int, j: int, device: torch.device) -> torch.Tensor:
        """Blending weights of tile ``(i, j)`` (:func:`tile_weights`) on ``device``, from
        per-row and per-column vectors kept there."""
        if i not in self._wy:
            self._wy[i] = torch.from_numpy(row_weights(self.layout, i)).to(device)
        if j not in self._wx:
            self._wx[j] = torch.from_numpy(col_weights(self.layout, j)).to(device)
        return self._wy[i][:, None] * self._wx[j][None, :]

    def run(self, reader: Reader, writer: Writer, rows: range | None = None) -> int:
        """Super-resolve the scene behind ``reader`` into ``writer``.

        Args:
            reader: returns ``(C, h, w)`` DN for an input window.
            writer: receives an output window and ``(C, h, w)`` DN of the output dtype.
            rows: tile rows to run (default: all), in order: the cores of a row are final
                once the row above is run too (:mod:`s2sr.batch.blocks` runs a row-band
                with one row of context above it).

        Returns:
            The number of valid input pixels seen.
        """
        lay = self.layout
        pending: dict[tuple[int, int], list[torch.Tensor]] = {}
        batches = list(self.batches(rows))
        bar = tqdm(total=sum(map(len, batches)), unit="tile", disable=not self.progress,
                   desc="s2sr predict")
        with ThreadPoolExecutor(1) as read_pool, ThreadPoolExecutor(1) as write_pool:
            writes: list[Future[None]] = []
            nxt = read_pool.submit(self.read_batch, reader, batches[0])
            for b, keys in enumerate(batches):
                batch = nxt.result()
                if b + 1 < len(batches):
                    nxt = read_pool.submit(self.read_batch, reader, batches[b + 1])
                preds = self.forward(batch)
                for n, (i, j) in enumerate(keys):
                    window, core = self._blend(preds[n], i, j, pending)
                    r0, r1, c0, c1 = lay.core(i, j)
                    h = lay.halo
                    valid = batch.valid[n][h:h + r1 - r0, h:h + c1 - c0]
                    sat = batch.saturated[n]
                    if sat is not None:
                        sat = sat[:, h:h + r1 - r0, h:h + c1 - c0]
                        self.saturated_samples += int(sat.sum())
                    self.valid_pixels += int(valid.sum())
                    while len(writes) >= 2:
                        writes.pop(0).result()
                    writes.append(write_pool.submit(self.write_core, writer, window, core,
                                                    valid, sat))
                bar.update(len(keys))
            for fut in writes:
                fut.result()
        bar.close()
        return self.valid_pixels

    def _blend(self, pred: torch.Tensor, i: int, j: int,
               pending: dict[tuple[int, int], list[torch.Tensor]]
               ) -> tuple[Window, torch.Tensor]:
        """Tile ``(i, j)``'s weighted output: its core (the output window and the summed
        values, final) and the ramps it hands on to the tiles right and below."""
        lay, s = self.layout, self.layout.scale
        r0, r1, c0, c1 = lay.core(i, j)
        y, x, h, w = extent_offsets(lay, i, j)
        part = pred[:, y:y + h, x:x + w] * self._weights(i, j, pred.device)
        ch, cw = (r1 - r0) * s, (c1 - c0) * s
        core = part[:, :ch, :cw].contiguous()
        for piece in pending.pop((i, j), []):
            core[:, :piece.shape[1], :piece.shape[2]] += piece
        if part.shape[2] > cw:
            pending.setdefault((i, j + 1), []).append(part[:, :ch, cw:].clone())
        if part.shape[1] > ch:
            pending.setdefault((i + 1, j), []).append(part[:, ch:, :cw].clone())
            if part.shape[2] > cw:
                pending.setdefault((i + 1, j + 1), []).append(part[:, ch:, cw:].clone())
        return Window(c0 * s, r0 * s, cw, ch), core

    @torch.inference_mode()
    def write_core(self, writer: Writer, window: Window, core: torch.Tensor,
                valid: np.ndarray, saturated: np.ndarray | None = None) -> None:
        """Convert a finished core to DN where it lies, bring it to the host and write it
        (in the writing thread)."""
        if core.device.type == "cpu":
            writer(window, self.radiometry.to_dn(core.numpy(), valid, saturated))
        else:
            values = self.radiometry.dn_values(core).cpu().numpy()
            writer(window, self.radiometry.finish(values, valid, saturated))
