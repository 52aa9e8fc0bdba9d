"""The one definition of "this pixel holds data" (NaN-aware), for predict, pairs and Wald.

A pixel is valid when no band equals the nodata value. A NaN nodata never compares equal
to anything (``dn == nan`` is always False), so it is tested with ``isnan``. Without a
nodata value every pixel counts as data (NaN there is refused by the callers as bad data).
"""

from __future__ import annotations

import math

import numpy as np


def is_nan_nodata(nodata: float | None) -> bool:
    """Whether ``nodata`` is NaN."""
    return nodata is not None and isinstance(nodata, float | np.floating) and math.isnan(nodata)


def valid_mask(dn: np.ndarray, nodata: float | None) -> np.ndarray:
    """``(h, w)`` True where every band of ``dn`` holds data.

    Args:
        dn: ``(C, h, w)`` digital numbers (any dtype).
        nodata: the value marking missing pixels, NaN, or ``None``.

    Returns:
        Boolean ``(h, w)`` mask.
    """
    if nodata is None:
        return np.ones(dn.shape[1:], bool)
    if is_nan_nodata(nodata):
        if not np.issubdtype(dn.dtype, np.floating):
            return np.ones(dn.shape[1:], bool)
        return ~np.isnan(dn).any(axis=0)
    return ~(dn == nodata).any(axis=0)
