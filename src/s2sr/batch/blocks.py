"""One large scene on several workers: row-bands computed apart, one writer.

With the streamed engine (the default where it runs), band ``[i0, i1)`` is the output
rows of input rows ``i0`` to ``i1 - 1``: a worker streams the rows from ``i0`` minus the
engine's :attr:`~s2sr.inference.stream_engine.StreamingSuperResolver.context_rows` to
``i1`` plus as many (the receptive field of the network and of ``--consistency``) and
keeps its own rows, which thus equal the whole-scene forward's.

With the tiled engine, the scene keeps the tiling of a single-process run
(:class:`~s2sr.inference.tiling.TileLayout`). Band ``[i0, i1)`` is the output cores of
tile rows ``i0`` to ``i1 - 1``; a core is final once the tiles to its left, above and
above-left are blended in, so a worker runs the engine over tile rows ``i0 - 1`` to
``i1 - 1`` (one row of context, recomputed) in the same order as a single process and
keeps the cores of its own rows. Every core is thus summed from the same tile predictions
in the same order: the output equals the single-process one (bit for bit with the same
backend and batch size).

Workers return the finished rows or cores (output DN); the client alone writes the file,
atomically. The client decides the engine and passes it to the workers explicitly.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.windows import Window

from s2sr.core.errors import DataError
from s2sr.core.files import exclusive_output
from s2sr.inference.predict import prepare_run
from s2sr.io.outputs import check_output_file
from s2sr.io.writer import RasterWriter

log = logging.getLogger(__name__)

#: Options of :func:`s2sr.inference.predict` that :func:`prepare_run` takes.
RUN_OPTIONS = ("scale", "bands", "tile", "overlap", "batch_size", "device", "consistency",
               "dn_offset", "backend", "threads", "precision", "engine")


def compute_band(source: str, weights: str, options: dict[str, Any], i0: int, i1: int
                 ) -> tuple[list[tuple[tuple[int, int, int, int], np.ndarray]], int]:
    """Output rows of the band ``[i0, i1)`` of a scene (runs on a worker): of input rows
    ``i0`` to ``i1 - 1`` when streamed, of tile rows when tiled.

    Returns:
        ``([((col_off, row_off, width, height), (C, h, w) DN), ...], valid pixels seen)``.
    """
    run_options = {k: v for k, v in options.items() if k in RUN_OPTIONS}
    with prepare_run(source, weights, **run_options) as run:
        if run.plan.execution_kind == "stream":
            rows: list[tuple[tuple[int, int, int, int], np.ndarray]] = []
            valid = run.runner.run(run.scene.read, lambda w, data: rows.append((
                (int(w.col_off), int(w.row_off), int(w.width), int(w.height)), data)),
                rows=range(i0, i1))
            return rows, valid
        lay = run.plan.layout
        top = i0 * lay.stride * lay.scale
        out: list[tuple[tuple[int, int, int, int], np.ndarray]] = []

        def keep(window: Window, data: np.ndarray) -> None:
            if int(window.row_off) >= top:
                out.append(((int(window.col_off), int(window.row_off), int(window.width),
                             int(window.height)), data))

        valid = run.runner.run(run.scene.read, keep, rows=range(max(i0 - 1, 0), i1))
    return out, valid


def row_bands(rows: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` (at most ``rows``) contiguous ranges of rows (of input pixels or of
    tiles) covering ``[0, rows)``."""
    parts = max(1, min(parts, rows))
    size = math.ceil(rows / parts)
    return [(i, min(i + size, rows)) for i in range(0, rows, size)]


def predict_blocks(input: str | os.PathLike[str], output: str | os.PathLike[str],
                   weights: str | os.PathLike[str] | None = None, *, client: Any,
                   parts: int | None = None, overwrite: bool = False, cog: bool = False,
                   progress: bool = False, **options: Any) -> Path:
    """:func:`s2sr.inference.predict` of one scene, its row-bands computed on a Dask
    cluster and written here into one file.

    Args:
        input, output, weights, overwrite, cog, options: as :func:`predict`'s.
        client: a ``distributed.Client``.
        parts: row-bands to cut the scene into (default: twice the cluster's workers).
        progress: a bar over the bands.

    Returns:
        The output path.
    """
    from distributed import as_completed  # optional dependency (s2sr[dask])
    from tqdm import tqdm

    out_path = Path(output)
    check_output_file(out_path, overwrite, (input, weights))
    run_options = {k: v for k, v in options.items() if k in RUN_OPTIONS}
    with prepare_run(input, weights, **run_options) as run, exclusive_output(out_path), \
            RasterWriter(out_path, run.out_meta, overwrite=overwrite, cog=cog, tags=run.tags,
                         blocksize=run.blocksize, write_scales=run.write_scales) as writer:
        lay, engine = run.plan.layout, run.plan.execution_kind
        run_options["engine"] = engine  # the workers run the engine decided here
        n = parts or 2 * max(1, len(client.scheduler_info().get("workers", {})))
        bands = row_bands(lay.height if engine == "stream" else lay.rows, n)
        futures = [client.submit(compute_band, str(input), str(run.weights), run_options,
                                 i0, i1, pure=False) for i0, i1 in bands]
        valid = 0
        with tqdm(total=len(bands), unit="band", disable=not progress,
                  desc=f"{Path(input).name} bands") as bar:
            for future in as_completed(futures):
                cores, seen = future.result()
                future.release()
                valid += seen
                for (c, r, w, h), data in cores:
                    writer.write(Window(c, r, w, h), data)
                bar.update(1)
        if valid == 0:
            raise DataError(f"{input} holds no valid pixels (all nodata): check the scene "
                            "or its nodata value")
        return writer.commit()

