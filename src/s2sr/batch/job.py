"""One scene of a many-scene run: :class:`Job` and :func:`run_job`, which makes its output
unless a completion record says it is complete (:mod:`s2sr.batch.record`), on a worker or
in this process, and never raises for the scene's own failure."""

from __future__ import annotations

import logging
import os
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import rasterio

from s2sr.batch.record import (
    check_record,
    make_request,
    read_record,
    record_path,
    unverifiable,
    write_record,
)
from s2sr.batch.report import SceneResult
from s2sr.core.errors import OutputExistsError, S2SRError
from s2sr.core.heap import pin_mmap_threshold
from s2sr.inference.plan import check_scale
from s2sr.inference.predict import predict
from s2sr.io.base import short_error
from s2sr.io.gdal_safety import open_raster
from s2sr.models import file_sha256
from s2sr.models.open import open_model, shipped_path

log = logging.getLogger(__name__)

#: The options of predict that shape the output: a change makes a completion record stale.
RECORDED_OPTIONS: Final[tuple[str, ...]] = (
    "scale", "bands", "tile", "overlap", "device", "cog", "consistency", "dn_offset",
    "backend", "precision")
#: Scene adaptation's options: recorded only when it is on (earlier records lack them).
ADAPT_OPTIONS: Final[tuple[str, ...]] = ("adapt", "adapt_steps", "adapt_seed")
#: Options :func:`predict_many` passes on to :func:`s2sr.inference.predict`.
PREDICT_OPTIONS: Final[tuple[str, ...]] = (*RECORDED_OPTIONS, "batch_size", "threads",
                                           *ADAPT_OPTIONS)


@dataclass(frozen=True)
class Job:
    """One scene to super-resolve (picklable: sent to a worker)."""

    index: int
    source: str
    label: str
    output: str
    weights: str | None
    options: dict[str, Any]
    overwrite: bool = False
    progress: bool = False
    scale: int = 0


def model_scale(weights: str | os.PathLike[str] | None, scale: int | None) -> int:
    """The scale of a run: the model's (checked against ``scale``), or ``scale`` or 2 for
    the shipped models."""
    if weights is None:
        return scale or 2
    spec = open_model(weights).spec
    check_scale(scale, spec, weights)
    return spec.scale


def _is_ours(output: Path) -> bool:
    """Whether an existing output was written by s2sr (a record, or s2sr's tags)."""
    if read_record(output) is not None:
        return True
    try:
        with open_raster(str(output)) as dataset:
            return "S2SR_MODEL_SHA256" in dataset.tags()
    except Exception:
        return False


_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def _weights_sha(path: str | os.PathLike[str]) -> str:
    st = os.stat(path)
    key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        _SHA_CACHE[key] = file_sha256(path)
    return _SHA_CACHE[key]


def _recorded_shipped(output: Path) -> Path | None:
    """The shipped model an output's completion record names (the record lies in the
    output folder: only a shipped model's name is taken from it, never a path)."""
    record = read_record(output) or {}
    name = record.get("weights")
    return shipped_path(Path(name).stem) if isinstance(name, str) else None


def _made_with(output: Path) -> tuple[float, str, str]:
    """What an output just written says of itself: input megapixels, the SHA-256 and the
    file name of the model that made it (its tags)."""
    with rasterio.open(output) as dataset:
        tags = dataset.tags()
        scale = max(1, int(tags.get("S2SR_SCALE", "1")))
        return (dataset.width * dataset.height / scale**2 / 1e6,
                tags.get("S2SR_MODEL_SHA256", ""), tags.get("S2SR_MODEL_FILE", ""))


Runner = Callable[..., Path]


def _complete(job: Job, out: Path, request: dict[str, Any], result: SceneResult) -> bool:
    """Whether ``out`` is complete for ``request`` (``result`` then says so); otherwise
    whether it may be replaced (``result.reason`` says why it is redone).

    Raises:
        OutputExistsError: an output or record s2sr did not write, without ``overwrite``.
    """
    if out.exists() and not job.overwrite:
        complete, why = check_record(out, request)
        if complete:
            record = read_record(out) or {}
            result.status, result.reason = "skipped", "complete"
            if unverifiable(request):
                result.reason = "complete (its remote assets give no ETag or " \
                    "Last-Modified: a change to them cannot be seen; --overwrite redoes it)"
            result.megapixels = float(record.get("input_megapixels", 0.0))
            return True
        if not _is_ours(out):
            raise OutputExistsError(f"output {out} exists and was not written by s2sr: "
                                    "pass --overwrite to replace it, or move it")
        result.reason = f"redone: {why}"
    rec = record_path(out)
    if (rec.exists() or rec.is_symlink()) and read_record(out) is None and not job.overwrite:
        raise OutputExistsError(f"{rec} exists and is not an s2sr completion record: "
                                "move it, or pass --overwrite to replace it")
    rec.unlink(missing_ok=True)  # no record may outlive its output
    return False


def run_job(job: Job, runner: Runner | None = None) -> SceneResult:
    """Make one scene's output unless it is complete (runs on a worker, or here).

    Without weights the run chooses the shipped model as it opens the scene (once): the
    output's tags then name it for the record, and a later run checks the record against
    the shipped model it names.

    Never raises for a scene's own failure: it is returned as ``failed`` with its reason.
    """
    start = time.perf_counter()
    pin_mmap_threshold()  # on a worker too: large temporaries go back to the OS
    out = Path(job.output)
    result = SceneResult(job.label, job.output, "failed", worker=f"pid {os.getpid()}")
    try:
        opts = job.options
        recorded = {k: opts.get(k) for k in RECORDED_OPTIONS}
        if opts.get("adapt", "off") != "off":
            recorded.update({k: opts.get(k) for k in ADAPT_OPTIONS})
        weights = job.weights or _recorded_shipped(out)
        request = make_request(job.source, _weights_sha(weights) if weights else "", recorded)
        if _complete(job, out, request, result):
            return result
        (runner or predict)(job.source, out, job.weights, progress=job.progress,
                            overwrite=job.overwrite or out.exists(),
                            **{k: v for k, v in opts.items() if k in PREDICT_OPTIONS})
        result.megapixels, request["model_sha256"], made_by = _made_with(out)
        write_record(out, request, {"input_megapixels": result.megapixels,
                                    "weights": job.weights or str(shipped_path(
                                        Path(made_by).stem) or made_by)})
        result.status = "done"
    except S2SRError as err:  # s2sr's messages are one line: keep all of it
        result.reason = str(err).strip().splitlines()[0][:600] if str(err).strip() else \
            type(err).__name__
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as err:  # a bug or an environment failure: keep the others going
        log.debug("scene %s failed:\n%s", job.label, traceback.format_exc())
        result.reason = f"{type(err).__name__}: {short_error(err)}"
    finally:
        result.seconds = round(time.perf_counter() - start, 3)
    return result
