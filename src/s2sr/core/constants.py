"""The constants every room shares: scales, precisions, backends, tile defaults, patch
statistics.

The band tables are in :mod:`s2sr.core.bands`, the DN encoding's in :mod:`s2sr.core.dn`.
"""

from __future__ import annotations

from typing import Final

#: Upscaling factors s2sr's models, pairs and evaluation take.
SCALES: Final[tuple[int, ...]] = (2, 4)

#: ``--precision`` values. ``auto``: fp32 on the CPU; fp16 on CUDA (as fast as bf16 on an
#: H200 and 3 to 6 times closer to fp32; a batch that overflows fp16 is run again at fp32),
#: fp32 with ONNX Runtime, which runs s2sr's graphs in fp32 or int8 only.
PRECISIONS: Final[tuple[str, ...]] = ("auto", "fp32", "bf16", "fp16", "int8")

#: ``--backend`` values: ``auto`` picks PyTorch or ONNX Runtime by the model file's kind.
BACKENDS: Final[tuple[str, ...]] = ("auto", "torch", "onnxruntime")

#: ``--engine`` values: ``auto`` is ``tiled`` for now (the streamed engine is not yet
#: measured on a quiet machine).
ENGINES: Final[tuple[str, ...]] = ("auto", "tiled", "stream")

#: Default network input tile per scale: its core (tile - overlap) times the scale is a
#: multiple of 512, so every write fills whole GeoTIFF blocks.
DEFAULT_TILE: Final[dict[int, int]] = {2: 544, 4: 288}
#: ONNX Runtime's default tiles where they differ: its memory arena keeps the peak of the
#: largest tile, and small tiles run faster per pixel there. At x2 on a 2048^2 scene (2
#: threads): 288 px 44.2 s, peak RSS 767 MB; 416 px 58.4 s, 1133 MB (its 384 px cores do
#: not divide 2048); 544 px 41.0 s, 1616 MB. On a whole 10980^2 tile 288 px computes 7 %
#: more pixels than 544 px at about 4 % more speed per pixel.
ORT_TILE: Final[dict[int, int]] = {2: 288}
#: Default overlap of neighbouring tiles (input pixels).
DEFAULT_OVERLAP: Final[int] = 32
#: Largest accepted ``--tile`` (input pixels a side); memory is checked as well.
MAX_TILE: Final[int] = 8192

#: The statistics measured on every pair patch, in the order manifests, pair tables and the
#: review app list them: the nodata and cloud shares, the LR/HR correlation and SSIM, the
#: residual shift and the radiometric residual (:mod:`s2sr.data.stats`).
PATCH_STATS: Final[tuple[str, ...]] = ("nodata", "cloud", "corr", "ssim", "shift", "residual")
