"""predict_many on a local Dask cluster (2 worker processes, 1 thread each, loopback):
outputs equal to the single-process run, one scene split over the workers, a worker killed
mid-write, a re-run doing only the missing work."""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio

from s2sr import predict, predict_many
from s2sr.batch.blocks import predict_blocks, row_bands
from s2sr.batch.many_pairs import build_pairs
from s2sr.batch.record import check_record, read_record
from support.cluster import local_client
from support.many import OPTS, pixels, scenes
from support.pairs import OPTS as PAIR_OPTS
from support.pairs import assert_same_dataset, make_pairs

distributed = pytest.importorskip("distributed")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    with local_client() as dask:
        yield dask


def test_outputs_equal_single_process(tmp_path: Path, tiny_weights: Path, client: Any
                                      ) -> None:
    inputs = scenes(tmp_path / "in", 4)
    report = predict_many([str(tmp_path / "in")], tmp_path / "out", tiny_weights,
                          client=client, **OPTS)
    assert [s.status for s in report.scenes] == ["done"] * 4
    assert report.workers == 2 and report.scheduler.startswith("tcp://127.0.0.1")
    assert len({s.worker for s in report.scenes}) == 2  # both workers took scenes
    for k, src in enumerate(inputs):
        single = predict(src, tmp_path / f"single{k}.tif", tiny_weights, **OPTS)
        made = tmp_path / "out" / f"scene{k}_x2.tif"
        np.testing.assert_array_equal(pixels(made), pixels(single))


def test_row_bands_cover_the_rows() -> None:
    assert row_bands(7, 3) == [(0, 3), (3, 6), (6, 7)]
    assert row_bands(2, 8) == [(0, 1), (1, 2)]
    assert row_bands(5, 1) == [(0, 5)]


@pytest.mark.parametrize("parts", [2, 5])
def test_one_scene_split_over_workers_equals_predict(tmp_path: Path, tiny_weights: Path,
                                                     client: Any, parts: int) -> None:
    (src,) = scenes(tmp_path / "in", 1, (150, 130))  # 5 x 5 tiles of stride 32
    single = predict(src, tmp_path / "single.tif", tiny_weights, **OPTS)
    split = predict_blocks(src, tmp_path / "split.tif", tiny_weights, client=client,
                           parts=parts, **OPTS)
    np.testing.assert_array_equal(pixels(split), pixels(single))
    with rasterio.open(split) as a, rasterio.open(single) as b:
        assert a.profile == b.profile and a.tags() == b.tags()
    # through predict_many: scenes above split_mpx are split; the record is written too
    report = predict_many([str(src)], tmp_path / "out", tiny_weights, client=client,
                          split_mpx=0.001, split_parts=parts, **OPTS)
    assert report.scenes[0].status == "done"
    made = tmp_path / "out" / "scene0_x2.tif"
    np.testing.assert_array_equal(pixels(made), pixels(single))
    assert read_record(made) is not None


def _writing_worker(out: Path) -> int | None:
    """The pid of a worker that is writing an output right now (its temporary's name)."""
    for entry in out.glob(".*.s2sr-*.tmp*"):
        match = re.search(r"\.s2sr-(\d+)-", entry.name)
        if match and int(match.group(1)) != os.getpid():
            return int(match.group(1))
    return None


def test_worker_killed_mid_write_loses_nothing(tmp_path: Path, tiny_weights: Path,
                                               client: Any) -> None:
    inputs = scenes(tmp_path / "in", 6, (200, 200))
    out = tmp_path / "out"
    opts = {**OPTS, "tile": 24}  # many small tiles: each scene takes a while
    result: dict[str, Any] = {}

    def run() -> None:
        result["report"] = predict_many([str(tmp_path / "in")], out, tiny_weights,
                                        client=client, **opts)

    thread = threading.Thread(target=run)
    thread.start()
    killed = None
    deadline = time.monotonic() + 120
    while killed is None and thread.is_alive() and time.monotonic() < deadline:
        killed = _writing_worker(out) if out.is_dir() else None
        time.sleep(0.02)
    assert killed is not None, "no scene was being written"
    os.kill(killed, signal.SIGKILL)
    thread.join(300)
    report = result["report"]
    assert [s.status for s in report.scenes] == ["done"] * 6, report.summary()
    assert all(f"pid {killed}" != s.worker for s in report.scenes)
    # the loss is said: in the summary and in the run report, with the scene it ran
    (lost,) = report.lost_workers
    assert lost["scenes"] and all(s.endswith(".tif") for s in lost["scenes"]), lost
    assert "was lost (killed, or out of memory)" in report.summary()
    assert json.loads(Path(report.report).read_text())["lost_workers"] == [lost]
    for k, src in enumerate(inputs):
        made = out / f"scene{k}_x2.tif"
        single = predict(src, tmp_path / f"single{k}.tif", tiny_weights, **opts)
        np.testing.assert_array_equal(pixels(made), pixels(single))
        record = read_record(made)
        assert record is not None and check_record(made, {
            k: record[k] for k in ("model_sha256", "options", "input")})[0]
    assert not list(out.glob(".*.tmp*"))  # the dead worker's temporary was swept
    client.wait_for_workers(2, timeout=60)  # the nanny restarted it


def test_rerun_after_interruption_does_only_the_missing_work(tmp_path: Path,
                                                             tiny_weights: Path,
                                                             client: Any) -> None:
    scenes(tmp_path / "in", 4)
    out = tmp_path / "out"
    first = predict_many([str(tmp_path / "in")], out, tiny_weights, client=client, **OPTS)
    assert first.count("done") == 4
    # as if the run had been stopped: one output never made, one made without its record
    (out / "scene1_x2.tif").unlink()
    (out / "scene1_x2.tif.s2sr.json").unlink()
    (out / "scene3_x2.tif.s2sr.json").unlink()
    again = predict_many([str(tmp_path / "in")], out, tiny_weights, client=client, **OPTS)
    assert [s.status for s in again.scenes] == ["skipped", "done", "skipped", "done"]


def test_pairs_on_the_cluster_equal_the_local_build(tmp_path: Path, client: Any) -> None:
    csv_path = make_pairs(tmp_path / "in", 3)
    local = build_pairs(csv_path, tmp_path / "local", PAIR_OPTS)
    spread = build_pairs(csv_path, tmp_path / "dask", PAIR_OPTS, client=client)
    assert [r.status for r in spread] == [r.status for r in local] == ["done"] * 3 + [
        "failed"]
    assert len({r.worker for r in spread}) == 1  # committed by this process alone
    assert_same_dataset(tmp_path / "dask", tmp_path / "local")


def _distributed_level() -> int:
    import logging
    return logging.getLogger("distributed.batched").getEffectiveLevel()


def test_local_workers_log_only_critical_and_the_environment_is_put_back() -> None:
    """A worker stopped by SIGTERM logged its INFO "Batched Comm Closed" traceback on the
    user's terminal (`silence_logs` quietens only the nanny's logger in the worker)."""
    import logging

    from s2sr.batch.cluster import dask_client
    key = "DASK_LOGGING__DISTRIBUTED"
    assert key not in os.environ
    with dask_client(1, None) as dask:
        levels = set(dask.run(_distributed_level).values())
    assert levels == {logging.CRITICAL}
    assert key not in os.environ
