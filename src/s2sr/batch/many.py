"""Many scenes in one run: one output per scene, resumable, optionally on a Dask cluster.

:func:`predict_many` expands the inputs (:func:`s2sr.io.inputs.expand_inputs`), names
one output per scene in a folder, and runs :func:`s2sr.inference.predict` for each one,
in this process or as one task per scene on a Dask ``distributed`` cluster (a local one of
``workers`` processes, or an existing one at ``scheduler``). Each output is written
atomically and then given its completion record (:mod:`s2sr.batch.record`), so a re-run
skips exactly the complete outputs; a scene that fails is reported and the others go on.
A scene above ``split_mpx`` megapixels is cut into row-bands computed on the workers and
written by this process (:mod:`s2sr.batch.blocks`).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any, Final

from tqdm import tqdm

from s2sr.batch.blocks import predict_blocks
from s2sr.batch.cluster import MAIN_GUARD_HINT, dask_client
from s2sr.batch.job import PREDICT_OPTIONS, Job, model_scale, run_job
from s2sr.batch.naming import DEFAULT_NAME, check_name_pattern, output_names
from s2sr.batch.record import record_path
from s2sr.batch.report import (
    REPORT_NAME,
    RunReport,
    SceneResult,
    check_report,
    lost_workers,
    write_report,
)
from s2sr.core.errors import OutputExistsError, S2SRError, UsageError
from s2sr.core.files import leftovers, sweep_stale_locks, sweep_stale_temps, write_atomic
from s2sr.io.base import short_error
from s2sr.io.inputs import SceneInput, expand_inputs
from s2sr.io.outputs import check_utf8_name
from s2sr.io.remote import is_url
from s2sr.io.scene import open_scene

log = logging.getLogger(__name__)

#: Folder (inside the output folder) where the items of STAC collections and URLs are
#: written as one Item file each.
STAC_FOLDER: Final[str] = ".s2sr-stac"
#: Key marking the Item files s2sr writes into :data:`STAC_FOLDER`.
ITEM_MARK: Final[str] = "s2sr:item_file"


def _write_item(item: dict[str, Any], folder: Path, stem: str, overwrite: bool) -> str:
    """Write a STAC item as its own file (only when it changed: the input fingerprint of
    the completion record then stays the same across re-runs). A file of that name that
    s2sr did not write is replaced only with ``overwrite``.

    Raises:
        OutputExistsError: such a file, without ``overwrite``.
    """
    folder.mkdir(exist_ok=True)
    path = folder / f"{stem}.json"
    text = json.dumps({**item, ITEM_MARK: True}, sort_keys=True, indent=1)
    if path.is_symlink() or path.exists():
        try:
            old = path.read_text(errors="replace") if path.stat().st_size < (64 << 20) else ""
        except OSError:
            old = ""
        if old == text:
            return str(path)
        if f'"{ITEM_MARK}": true' not in old and not overwrite:
            raise OutputExistsError(f"{path} exists and was not written by s2sr: move it, or "
                                    "pass --overwrite to replace it")
    write_atomic(path, text)
    return str(path)


def _scene_megapixels(source: str, options: dict[str, Any]) -> float:
    with open_scene(source, bands=options.get("bands") or ("B02", "B03", "B04"),
                    dn_offset=options.get("dn_offset")) as scene:
        return scene.meta.width * scene.meta.height / 1e6


def predict_many(
    inputs: Sequence[str | os.PathLike[str]], out_dir: str | os.PathLike[str],
    weights: str | os.PathLike[str] | None = None, *, name: str = DEFAULT_NAME,
    workers: int | None = None, scheduler: str | None = None, client: Any = None,
    overwrite: bool = False, progress: bool = False,
    report: str | os.PathLike[str] | None = None, split_mpx: float | None = None,
    split_parts: int | None = None, on_result: Callable[[SceneResult], None] | None = None,
    scenes: Sequence[SceneInput] | None = None, **options: Any,
) -> RunReport:
    """Super-resolve many scenes into ``out_dir``, one output per scene.

    Args:
        inputs: scene files, folders, globs, ``@list.txt``/``.txt`` files, STAC Item or
            ItemCollection files or URLs (see :func:`s2sr.io.inputs.expand_inputs`).
        out_dir: the output folder (created if absent).
        weights: as :func:`s2sr.inference.predict`'s (``None``: the shipped model).
        name: output name pattern with ``{stem}``, ``{scale}``, ``{index}``.
        workers, scheduler, client: run on a local Dask cluster of ``workers`` processes
            (1 thread each), on an existing one at ``scheduler`` (``tcp://host:8786``), or
            through an existing ``distributed.Client`` (it wins); none: in this process.
        overwrite: make every output again, even complete ones.
        progress: a progress bar over scenes (and, in this process, their tiles).
        report: where to write the JSON run report (default ``out_dir/s2sr_run.json``).
        split_mpx, split_parts: on a cluster, scenes of more input megapixels than
            ``split_mpx`` are cut into ``split_parts`` row-bands (default: twice the
            workers) computed on several workers (``None``: never).
        on_result: called with each scene's result as it finishes (in this process).
        scenes: ``inputs`` already expanded by :func:`~s2sr.io.inputs.expand_inputs` (as
            the CLI does to tell one scene from many): not expanded again.
        options: :func:`s2sr.inference.predict`'s options (scale, bands, tile, overlap,
            batch_size, device, cog, consistency, dn_offset, backend, threads, precision).

    Returns:
        The run's :class:`RunReport`; failed scenes are in it (nothing is raised for them).
    """
    _check_run(options, workers, split_mpx)
    start = time.perf_counter()
    out = check_utf8_name(Path(out_dir))
    if out.exists() and not out.is_dir():
        raise UsageError(f"output {out} is a file: with several inputs -o is a folder")
    check_name_pattern(name)
    if scenes is None:
        scenes = expand_inputs([str(i) for i in inputs], per_scene_errors=True)
    scale = model_scale(weights, options.get("scale"))
    targets = [out / n for n in output_names(scenes, name, scale)]
    report_path = _check_outputs(out, inputs, scenes, targets, weights, report, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    jobs, failed_early = _jobs(scenes, targets, out, weights, options, overwrite, scale)
    result = RunReport(report=str(report_path))
    _run_jobs(result, jobs, failed_early, len(scenes), out, progress, on_result,
              _Cluster(workers, scheduler, client, split_mpx, split_parts))
    result.seconds = time.perf_counter() - start
    for lost in result.lost_workers:  # said to the user by the summary and the report
        log.info("Dask worker %s was lost while holding %s", lost["worker"],
                 ", ".join(lost["scenes"]) or "no scene")
    write_report(report_path, result)
    return result


@dataclass(frozen=True)
class _Cluster:
    """Where a run's jobs run (:func:`predict_many`'s arguments of the same names)."""

    workers: int | None
    scheduler: str | None
    client: Any
    split_mpx: float | None
    split_parts: int | None

    @property
    def local(self) -> bool:
        """The writers run on this machine (so a process id tells whether one still runs)."""
        return self.client is None and self.scheduler is None


def _run_jobs(result: RunReport, jobs: list[Job], failed_early: dict[int, SceneResult],
              total: int, out: Path, progress: bool,
              on_result: Callable[[SceneResult], None] | None, cluster: _Cluster) -> None:
    """Run the jobs, reporting each scene (failed early or run) as it finishes; the
    scenes' results go into ``result`` in input order."""
    results: dict[int, SceneResult] = dict(failed_early)
    bar = tqdm(total=total, unit="scene", disable=not progress, desc="s2sr scenes")

    def finished(index: int, res: SceneResult, label: str) -> None:
        results[index] = res
        bar.update(1)
        if res.status == "failed":
            log.warning("%s failed: %s", label, res.reason)
        if on_result is not None:
            on_result(res)

    for k, res in failed_early.items():
        finished(k, res, res.input)
    try:
        _execute(result, jobs, finished, out, progress, cluster)
    finally:
        bar.close()
    _clean_up(out, cluster.local)
    result.scenes = [results[k] for k in range(total) if k in results]


def _check_outputs(out: Path, inputs: Sequence[str | os.PathLike[str]],
                   scenes: Sequence[SceneInput], targets: Sequence[Path],
                   weights: str | os.PathLike[str] | None,
                   report: str | os.PathLike[str] | None, overwrite: bool) -> Path:
    """Refuse outputs (scenes, STAC items, the report) that are inputs or lie in input
    folders, and a report s2sr may not replace; the report's path."""
    sources = _input_paths(inputs, scenes, weights)
    _check_targets([t for scene, t in zip(scenes, targets, strict=True) if scene.error is None]
                   + [out / STAC_FOLDER / f"{scene.stem}.json" for scene in scenes
                      if scene.item is not None and scene.error is None], sources)
    report_path = Path(report) if report is not None else out / REPORT_NAME
    check_report(report_path, overwrite, sources, targets, default=report is None)
    return report_path


def _check_run(options: dict[str, Any], workers: int | None, split_mpx: float | None
               ) -> None:
    """Refuse unknown options and combinations a run cannot do, before anything is read."""
    unknown = sorted(set(options) - set(PREDICT_OPTIONS))
    if unknown:
        raise UsageError(f"unknown option(s) {', '.join(unknown)} for predict_many")
    if workers is not None and workers < 1:
        raise UsageError(f"--workers must be at least 1, got {workers}")
    if split_mpx is not None and options.get("adapt", "off") != "off":
        raise UsageError("--adapt cannot be combined with --split-mpx (each row-band would "
                         "adapt on its own): drop --split-mpx, or use --adapt off")
    if workers is not None:
        check_main_guard()


def _jobs(scenes: Sequence[SceneInput], targets: Sequence[Path], out: Path,
          weights: str | os.PathLike[str] | None, options: dict[str, Any], overwrite: bool,
          scale: int) -> tuple[list[Job], dict[int, SceneResult]]:
    """One job per readable scene (its STAC item written out first); the scenes that
    failed already (listing errors, items that cannot be written), by index."""
    jobs = []
    failed_early: dict[int, SceneResult] = {}
    for k, (scene, target) in enumerate(zip(scenes, targets, strict=True)):
        if scene.error is not None:
            failed_early[k] = SceneResult(scene.source, str(target), "failed", scene.error)
            continue
        source = scene.source
        if scene.item is not None:
            item_file = out / STAC_FOLDER / f"{scene.stem}.json"
            try:
                source = _write_item(scene.item, out / STAC_FOLDER, scene.stem, overwrite)
            except (S2SRError, OSError) as err:  # this item fails; the others go on
                reason = short_error(err) if isinstance(err, S2SRError) else \
                    f"cannot write {item_file} ({getattr(err, 'strerror', '') or err})"
                failed_early[k] = SceneResult(scene.source, str(target), "failed", reason)
                continue
        jobs.append(Job(k, source, scene.source if scene.item is not None else source,
                        str(target), None if weights is None else str(weights),
                        dict(options), overwrite, False, scale))
    return jobs, failed_early


def _execute(result: RunReport, jobs: list[Job],
             finished: Callable[[int, SceneResult, str], None], out: Path, progress: bool,
             cluster: _Cluster) -> None:
    """Run the jobs here or on the Dask cluster, filling the cluster's part of ``result``;
    on Ctrl-C, what killed writers left is swept and named on the exception."""
    try:
        with dask_client(cluster.workers, cluster.scheduler, cluster.client) as dask:
            if dask is None:
                for job in jobs:
                    job = Job(**{**asdict(job), "progress": progress and len(jobs) == 1})
                    finished(job.index, run_job(job), job.label)
                return
            result.workers = len(dask.scheduler_info().get("workers", {}))
            result.scheduler = str(dask.scheduler.address)
            result.dashboard = str(getattr(dask, "dashboard_link", "") or "")
            since = time.time()
            try:
                _run_on_cluster(dask, jobs, finished, cluster)
            finally:
                result.lost_workers = lost_workers(
                    dask, since, {f"s2sr-scene-{j.index}-": j.label for j in jobs})
    except KeyboardInterrupt as err:
        left = _clean_up(out, cluster.local)
        if left:
            err.leftovers = left  # type: ignore[attr-defined]
        raise


def _input_paths(inputs: Sequence[str | os.PathLike[str]], scenes: Sequence[SceneInput],
                 weights: str | os.PathLike[str] | None) -> list[str]:
    """What a run reads and must never write: the local inputs given (list files, STAC
    documents), the scenes (files, SAFE and per-band folders) and the weights."""
    found = [str(i).removeprefix("@") for i in inputs if not is_url(str(i))]
    found = [f for f in found if Path(f).is_file()]
    found += [s.source for s in scenes if s.item is None and s.error is None]
    if weights is not None:
        found.append(str(weights))
    return found


def _clean_up(out: Path, local: bool) -> list[Path]:
    """Remove what killed writers left in the output folder (temporaries of dead processes,
    locks nobody holds) when they all ran on this machine; return what is still there.

    On a cluster of other machines the folder is shared with writers whose process ids mean
    nothing here: their own next write of that output sweeps what they left.
    """
    left = []
    for folder in (out, out / STAC_FOLDER):
        if local:
            sweep_stale_temps(folder)
            sweep_stale_locks(folder)
        left += leftovers(folder)
    return left


def _check_targets(targets: Sequence[Path], sources: Sequence[str]) -> None:
    """:func:`check_not_input` for every output and its record, in time linear in the
    number of scenes (a set of the inputs, and of the input folders).

    Raises:
        UsageError: an output (or record) that is an input or lies inside an input folder.
    """
    files: dict[Path, str] = {}
    folders: dict[Path, str] = {}
    for source in sources:
        path = Path(source)
        (folders if path.is_dir() else files)[path.resolve()] = source
    for target in targets:
        for own in (target, record_path(target)):
            resolved = own.resolve()
            if resolved in files:
                raise UsageError(f"output {own} is the input {files[resolved]}: writing it "
                                 "would destroy the input; choose another folder or --name")
            for parent in (resolved, *resolved.parents):
                if parent in folders:
                    raise UsageError(f"output {own} lies inside the input folder "
                                     f"{folders[parent]}: choose an output outside it")


def check_main_guard() -> None:
    """Refuse to start worker processes from a process that is itself a worker starting
    (a script that calls :func:`predict_many` with ``workers`` outside
    ``if __name__ == "__main__":`` runs again in every worker it starts).

    Raises:
        SystemExit: in such a worker, with the one-line message naming the guard (the
            worker then fails to start, and :func:`s2sr.batch.cluster.dask_client` says
            the same in the calling process).
    """
    import multiprocessing

    main = sys.modules.get("__main__")
    starting = getattr(multiprocessing.current_process(), "_inheriting", False)
    if starting or getattr(main, "__name__", "") == "__mp_main__":
        raise SystemExit(f"s2sr: error: {MAIN_GUARD_HINT}")


def _run_on_cluster(client: Any, jobs: list[Job],
                    finished: Callable[[int, SceneResult, str], None],
                    cluster: _Cluster) -> None:
    from distributed import as_completed  # optional dependency (s2sr[dask])

    workers, split_mpx = cluster.workers, cluster.split_mpx
    if workers is not None:  # a local cluster: share the cores among the workers
        threads = max(1, (os.cpu_count() or 1) // max(workers, 1))
        jobs = [job if job.options.get("threads") is not None else
                Job(**{**asdict(job), "options": {**job.options, "threads": threads}})
                for job in jobs]
    split: list[Job] = []
    whole: list[Job] = []
    for job in jobs:
        if split_mpx is not None:
            try:
                big = _scene_megapixels(job.source, job.options) > split_mpx
            except S2SRError:
                big = False  # the task reports the scene's error
            (split if big else whole).append(job)
        else:
            whole.append(job)
    by_key = {}
    futures = []
    for job in whole:
        future = client.submit(run_job, job, pure=False, key=f"s2sr-scene-{job.index}-"
                               f"{os.getpid()}-{time.monotonic_ns()}")
        by_key[future.key] = job
        futures.append(future)
    for job in split:  # row-bands on the workers, written here, while the others run
        runner = partial(predict_blocks, client=client, parts=cluster.split_parts)
        finished(job.index, run_job(job, runner), job.label)
    for future in as_completed(futures):
        job = by_key[future.key]
        try:
            res = future.result()
        except Exception as err:  # e.g. KilledWorker: its worker died too often
            res = SceneResult(job.label, job.output, "failed",
                              f"{type(err).__name__}: {short_error(err)}")
        future.release()
        finished(job.index, res, job.label)
