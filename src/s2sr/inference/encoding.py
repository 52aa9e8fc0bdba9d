"""A scene's DN encoding, both ways, for the engine: :class:`DnEncoding`.

The reflectance of a DN is :func:`s2sr.core.dn.to_reflectance`'s; this class adds what
the engine needs around it: the valid and saturated masks of a tile, and the way back to
DN of the scene's dtype (in NumPy on the CPU, in PyTorch where a GPU's output lies).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from s2sr.core.dn import implausible, implausible_message, to_reflectance
from s2sr.core.errors import DataError
from s2sr.io.nodata import valid_mask


def located_at(r0: int, c0: int) -> Callable[[np.ndarray], tuple[int, int]]:
    """For :meth:`DnEncoding.decode` of a window read from scene row ``r0``, column ``c0``:
    the scene (row, column) of the first pixel set in a mask of the window's grid."""
    def position(mask: np.ndarray) -> tuple[int, int]:
        y, x = np.argwhere(mask)[0]
        return r0 + int(y), c0 + int(x)
    return position


def refilled(refl: np.ndarray, valid: np.ndarray, sat: np.ndarray | None,
             fill: np.ndarray) -> np.ndarray:
    """A decoded ``refl`` (:meth:`DnEncoding.decode`) with another network's ``fill`` on
    its nodata and saturated samples: what decoding the same DN with ``fill`` gives, without
    converting and checking them a second time."""
    keep = valid[None] if sat is None else valid[None] & ~sat
    return np.where(keep, refl, fill).astype(refl.dtype, copy=False)


@dataclass(frozen=True)
class DnEncoding:
    """How a scene's bands encode reflectance as DN, both ways: ``reflectance = DN * gain +
    offset`` (not :mod:`s2sr.data.sensor_fit`, the cross-sensor fit of pairs).

    Attributes:
        dtype: numpy dtype name of the DN (input and output).
        gains: per band. offsets: per band.
        nodata: the DN marking missing pixels, or ``None``.
    """

    dtype: str
    gains: tuple[float, ...]
    offsets: tuple[float, ...]
    nodata: float | None

    def valid_mask(self, dn: np.ndarray) -> np.ndarray:
        """``(h, w)`` True where every band holds data. ``dn``: ``(C, h, w)``."""
        return valid_mask(dn, self.nodata)

    def saturated_value(self) -> int | None:
        """The DN marking a saturated sample: the largest value of an integer dtype (65535
        in uint16, the ``SATURATED`` special value of Sentinel-2 L1C/L2A products), unless
        it is the nodata value; ``None`` for floats."""
        dtype = np.dtype(self.dtype)
        if not np.issubdtype(dtype, np.integer):
            return None
        top = int(np.iinfo(dtype).max)
        return None if self.nodata is not None and self.nodata == top else top

    def saturated_mask(self, dn: np.ndarray) -> np.ndarray | None:
        """``(C, h, w)`` True where a band is saturated, or ``None`` where none is."""
        top = self.saturated_value()
        if top is None:
            return None
        mask = dn == top
        return mask if mask.any() else None

    def to_reflectance(self, dn: np.ndarray) -> np.ndarray:
        """``(C, h, w)`` float32 reflectance (:func:`s2sr.core.dn.to_reflectance`: what
        overflows float32 becomes inf, which the engine refuses as implausible)."""
        return to_reflectance(dn, self.gains, self.offsets)

    def decode(self, dn: np.ndarray, fill: np.ndarray,
               position: Callable[[np.ndarray], tuple[int, int]], what: str = "input"
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """``dn`` (bands, rows, cols) as the network's reflectance, with its valid and
        saturated masks: nodata and saturated samples hold ``fill`` (no value: the network
        sees the fill, no dark halo). Refuses NaN or infinite values on valid pixels and
        reflectance no surface has, naming the scene (row, column) ``position`` gives for
        the first pixel set in a mask of ``dn``'s grid.

        Raises:
            DataError: NaN/inf on a valid pixel, or implausible reflectance.
        """
        valid = self.valid_mask(dn)
        sat = self.saturated_mask(dn)
        if sat is not None:
            sat &= valid[None]
        if np.issubdtype(dn.dtype, np.floating):
            bad = ~np.isfinite(dn).all(axis=0) & valid
            if bad.any():
                y, x = position(bad)
                raise DataError(
                    f"{what} holds NaN or infinite values (first at row {y}, column "
                    f"{x}): mark them as nodata (e.g. gdal_translate -a_nodata nan) "
                    "or fill them"
                )
        refl = np.where(valid[None], self.to_reflectance(dn), fill)
        if sat is not None:
            refl = np.where(sat, fill, refl)
        if valid.any():
            found = implausible(refl, valid[None] if sat is None else valid[None] & ~sat)
            if found is not None:
                band, top, mask = found
                y, x = position(mask)
                raise DataError(implausible_message(band, top, y, x, self.dtype))
        return refl, valid, sat

    def dn_floor(self) -> np.ndarray:
        """Per band, the lowest DN an output may take: the DN of zero reflectance.

        For integer DN it is rounded up and kept off the nodata value (and off DN 0, the
        Sentinel-2 no-data convention, when the scene declares no nodata), so that a dark
        prediction is never written as missing data.
        """
        g = np.asarray(self.gains, np.float64)
        o = np.asarray(self.offsets, np.float64)
        floor = -o / g
        dtype = np.dtype(self.dtype)
        if not np.issubdtype(dtype, np.integer):
            return floor.astype(np.float32)
        info = np.iinfo(dtype)
        floor = np.clip(np.ceil(floor - 1e-6), info.min, info.max)
        reserved = {self.nodata} if self.nodata is not None else {0}
        for k, value in enumerate(floor):
            while value in reserved and value < info.max:
                value += 1
            floor[k] = value
        return floor

    def to_dn(self, refl: np.ndarray, valid: np.ndarray,
              saturated: np.ndarray | None = None) -> np.ndarray:
        """Reflectance ``(C, h, w)`` -> DN of ``dtype``; invalid pixels become nodata.

        Negative reflectance (a network can undershoot next to dark pixels) is clamped at
        :meth:`dn_floor`: the output stays in the range the input's encoding allows.

        In NumPy, single-threaded: on the CPU the writing thread converts while the network
        computes, and PyTorch's ops would start a second OpenMP thread team beside the
        network's. :meth:`dn_values` is the same conversion in PyTorch, for tiles on a GPU
        (a test keeps the two equal).
        """
        g = np.asarray(self.gains, np.float32)[:, None, None]
        o = np.asarray(self.offsets, np.float32)[:, None, None]
        floor = self.dn_floor()[:, None, None]
        dtype = np.dtype(self.dtype)
        if not np.issubdtype(dtype, np.integer):
            return self.finish(np.maximum((refl - o) / g, floor).astype(dtype), valid,
                               saturated)
        info = np.iinfo(dtype)
        dn = np.subtract(refl, o)  # one working array, every step in place in it
        np.divide(dn, g, out=dn)
        np.rint(dn, out=dn)
        if dn.dtype == np.float32 and dtype.itemsize > 2:  # bounds beyond float32's
            dn = dn.astype(np.float64)  # integers: clipped in float64, as they were
        np.clip(dn, floor.astype(dn.dtype), info.max, out=dn)
        out = dn.astype(dtype)
        if self.nodata is not None:  # keep real data off the nodata value
            nd = dtype.type(self.nodata)
            if nd >= floor.min():  # else every value is above it already
                bump = dtype.type(nd + 1 if nd < info.max else nd - 1)
                out[out == nd] = bump
        return self.finish(out, valid, saturated)

    def dn_values(self, refl: torch.Tensor) -> torch.Tensor:
        """The DN of reflectance ``(C, h, w)``, computed where ``refl`` lies (the GPU's
        output stays there): rounded, clamped to the floor and the dtype's range, off the
        nodata value; in a carrier dtype (int32 for 8/16-bit, int64 for 32-bit integers,
        float32 for floats) that :meth:`finish` casts."""
        dev = refl.device
        g = torch.tensor(self.gains, dtype=torch.float32, device=dev)[:, None, None]
        o = torch.tensor(self.offsets, dtype=torch.float32, device=dev)[:, None, None]
        dn = (refl - o) / g
        dtype = np.dtype(self.dtype)
        if not np.issubdtype(dtype, np.integer):
            return torch.maximum(dn, torch.from_numpy(self.dn_floor()).to(dev)[:, None, None])
        info = np.iinfo(dtype)
        wide = dtype.itemsize >= 4  # float32 holds every 8/16-bit integer exactly
        work = torch.float64 if wide else torch.float32
        floor = torch.from_numpy(self.dn_floor()).to(device=dev, dtype=work)[:, None, None]
        out = torch.round(dn).to(work)
        out = torch.minimum(torch.maximum(out, floor), torch.tensor(float(info.max), dtype=work,
                                                                     device=dev))
        out = out.to(torch.int64 if wide else torch.int32)
        if self.nodata is not None:  # keep real data off the nodata value
            nd = int(dtype.type(self.nodata))
            out[out == nd] = nd + 1 if nd < info.max else nd - 1
        return out

    def finish(self, values: np.ndarray, valid: np.ndarray,
               saturated: np.ndarray | None = None) -> np.ndarray:
        """:meth:`dn_values` (on the host) -> the output array: cast to ``dtype``, the
        saturated value where ``saturated`` (``(C, h, w)`` input samples, or ``None``) is
        set, nodata where ``valid`` (``(h, w)``, or ``(h / s, w / s)`` input pixels for an
        output ``s`` times larger) is False."""
        out = values.astype(self.dtype, copy=False)
        top = self.saturated_value()
        if saturated is not None and top is not None:
            s = out.shape[1] // saturated.shape[1]
            if s > 1:
                saturated = np.repeat(np.repeat(saturated, s, axis=1), s, axis=2)
            out[saturated] = top
        if self.nodata is not None and not valid.all():
            s = out.shape[1] // valid.shape[0]
            if s > 1:
                valid = np.repeat(np.repeat(valid, s, axis=0), s, axis=1)
            out[:, ~valid] = self.nodata
        return out
