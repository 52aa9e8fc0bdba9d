"""The default ``predict`` (streamed, issue 23) equals the whole-scene forward within 1 DN
everywhere, seams and borders included: scene sizes down to one pixel and odd ones, x2 and
x4, nodata holes, tiny and shipped models. It holds by construction, so the default path
needs no seam test (the tiled engine's stay in test_engine.py, with ``--engine tiled``).
Also: ``--consistency`` streamed equals the whole-scene back-projection; a scene cut into
row bands on a real local Dask cluster (``--split-mpx``) equals it too."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import torch
from rasterio.windows import Window

from s2sr import predict, predict_many
from s2sr.core.errors import UsageError
from s2sr.data.degrade_torch import back_project
from s2sr.inference.backends import TorchBackend
from s2sr.inference.encoding import DnEncoding
from s2sr.inference.plan import model_fill
from s2sr.inference.stream_consistency import BandBackProjection, back_projection_halo
from s2sr.inference.stream_engine import streaming_engine
from s2sr.models import load_model, pretrained_path
from support.cluster import local_client
from support.rasters import field, write_geotiff


def _read(path: Path) -> tuple[np.ndarray, dict[str, str]]:
    with rasterio.open(path) as ds:
        return ds.read().astype(np.int64), ds.tags()


def _whole(weights: Path, arr: np.ndarray, consistency: bool = False) -> np.ndarray:
    """The whole-scene forward of ``arr`` (uint16 DN, nodata 0) in DN, nodata pixels
    filled with the model's mean as every engine does, optionally back-projected onto
    the whole input (``--consistency``)."""
    model = load_model(weights).eval()
    valid = (arr != 0).all(0)
    refl = np.where(valid[None], arr.astype(np.float32) * 1e-4,
                    np.asarray(model_fill(model, 4), np.float32)[:, None, None])
    x = torch.from_numpy(refl.astype(np.float32))[None]
    with torch.inference_mode():
        y = model(x.contiguous(memory_format=torch.channels_last))
        if consistency:
            y = back_project(y, x, model.scale, 3)
    enc = DnEncoding("uint16", (1e-4,) * 4, (0.0,) * 4, 0)
    return enc.to_dn(y[0].numpy(), valid, None).astype(np.int64)


def _scene(path: Path, shape: tuple[int, int], seed: int = 0) -> tuple[Path, np.ndarray]:
    """A scene with nodata holes (a corner block and pixels inside), from 3 x 3 pixels."""
    arr = field(shape, 4, seed=seed)
    h, w = shape
    if min(h, w) >= 3:
        arr[:, :h // 4, :w // 3] = 0
        arr[:, h // 2, w // 2] = 0
        arr[:, h - 1, w - 1] = 0
    return write_geotiff(path, arr, nodata=0), arr


#: (rows, columns): one pixel, odd, tall, wide (wide: 3 bands of rows, 1100 px wide)
SIZES = [(1, 1), (3, 7), (37, 61), (130, 9), (150, 1100)]


@pytest.mark.parametrize("scale", [2, 4])
@pytest.mark.parametrize("shape", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_default_equals_whole_scene(tmp_path: Path, tiny_weights: Path,
                                    tiny_weights_x4: Path, scale: int,
                                    shape: tuple[int, int]) -> None:
    weights = tiny_weights if scale == 2 else tiny_weights_x4
    src, arr = _scene(tmp_path / "in.tif", shape)
    out, tags = _read(predict(src, tmp_path / "o.tif", weights))  # every option default
    assert tags["S2SR_ENGINE"] == "stream"
    whole = _whole(weights, arr)
    assert out.shape == whole.shape == (4, shape[0] * scale, shape[1] * scale)
    assert np.abs(out - whole).max() <= 1
    assert ((out == 0) == (whole == 0)).all()  # the same nodata pixels, nothing else 0


@pytest.mark.parametrize("scale", [2, 4])
def test_shipped_models_default_equals_whole_scene(tmp_path: Path, scale: int) -> None:
    src, arr = _scene(tmp_path / "in.tif", (45, 67), seed=3)
    out, tags = _read(predict(src, tmp_path / "o.tif", scale=scale))
    assert tags["S2SR_ENGINE"] == "stream"
    assert np.abs(out - _whole(pretrained_path(scale), arr)).max() <= 1


@pytest.mark.parametrize("scale", [2, 4])
def test_consistency_equals_whole_scene_back_projection(tmp_path: Path, tiny_weights: Path,
                                                        tiny_weights_x4: Path,
                                                        scale: int) -> None:
    """Back-projected band by band with a halo of rows: the whole-scene back-projection
    (the tiled engine's, per tile and blended, only approximates it)."""
    weights = tiny_weights if scale == 2 else tiny_weights_x4
    src, arr = _scene(tmp_path / "in.tif", (150, 1100))
    out, tags = _read(predict(src, tmp_path / "o.tif", weights, consistency=True))
    assert (tags["S2SR_ENGINE"], tags["S2SR_CONSISTENCY"]) == ("stream", "back-projection x3")
    fixed = _whole(weights, arr, consistency=True)
    assert np.abs(out - fixed).max() <= 1
    assert np.abs(out - _whole(weights, arr)).max() > 10  # it did back-project


@pytest.mark.parametrize("scale", [2, 4])
def test_band_back_projection_equals_the_whole_scene(scale: int) -> None:
    """Fed in uneven bands, back-projected in chunks of a few rows: the whole-scene
    back-projection (measured: exactly from a halo of 9 rows, the halo is 15); with a halo
    of 3 rows, it is not."""
    gen = torch.Generator().manual_seed(scale)
    lr = torch.rand(4, 71, 23, generator=gen)
    sr = torch.nn.functional.interpolate(lr[None], scale_factor=scale, mode="nearest")[0] \
        + 0.05 * torch.rand(4, 71 * scale, 23 * scale, generator=gen)
    whole = back_project(sr[None], lr[None], scale, 3)[0]

    def banded(halo: int) -> torch.Tensor:
        back = BandBackProjection(scale, 3, 23, chunk_bytes=1)
        assert back.halo == back_projection_halo(scale, 3) == 15
        back.halo = back.chunk_rows = halo
        outs = []
        for r0, r1 in [(0, 1), (1, 9), (9, 40), (40, 41), (41, 71)]:
            back.add_input(lr[:, r0:r1].numpy())
            outs.append(back.feed(sr[:, r0 * scale:r1 * scale], last=False))
        outs.append(back.feed(sr[:, :0], last=True))
        return torch.cat(outs, dim=1)

    assert banded(15).shape == whole.shape
    assert (banded(15) - whole).abs().max() < 1e-6
    assert (banded(3) - whole).abs().max() > 1e-3


@pytest.mark.parametrize(("band_rows", "rows"), [(3, None), (5, range(20, 41))])
def test_engine_consistency_in_small_chunks(tiny_weights_x4: Path, band_rows: int,
                                            rows: range | None) -> None:
    """Bands of a few rows, back-projected a halo's worth of rows at a time, all rows or
    a band of them (as a Dask block): the whole-scene result."""
    arr = field((61, 37), 4, seed=5)
    arr[:, 10:14, 3:9] = 0
    model = load_model(tiny_weights_x4).eval()
    engine = streaming_engine(TorchBackend(model, torch.device("cpu")), 61, 37,
                              DnEncoding("uint16", (1e-4,) * 4, (0.0,) * 4, 0),
                              np.asarray(model_fill(model, 4), np.float32), "fp32", 3)
    engine.band_rows, engine.back_chunk_bytes = band_rows, 1
    out = np.zeros((4, 61 * 4, 37 * 4), np.int64)
    written = np.zeros(out.shape[1:], bool)

    def write(w: Window, data: np.ndarray) -> None:
        out[:, w.row_off:w.row_off + w.height, w.col_off:w.col_off + w.width] = data
        written[w.row_off:w.row_off + w.height, w.col_off:w.col_off + w.width] = True

    engine.run(lambda w: arr[:, w.row_off:w.row_off + w.height,
                             w.col_off:w.col_off + w.width], write, rows)
    keep = rows or range(61)
    assert written.sum() == len(keep) * 4 * 37 * 4 and written[keep.start * 4].all()
    diff = np.abs(out - _whole(tiny_weights_x4, arr, consistency=True))
    assert diff[:, keep.start * 4:keep.stop * 4].max() <= 1


def test_engine_refuses_rows_outside_the_scene(tiny_weights: Path) -> None:
    model = load_model(tiny_weights).eval()
    engine = streaming_engine(TorchBackend(model, torch.device("cpu")), 20, 10,
                              DnEncoding("uint16", (1e-4,) * 4, (0.0,) * 4, 0),
                              np.asarray(model_fill(model, 4), np.float32), "fp32")
    arr = field((20, 10), 4)
    for rows in (range(5, 3), range(0, 21), range(-1, 4), range(0, 20, 2)):
        with pytest.raises(UsageError, match=r"not a range of the scene's 20 rows"):
            engine.run(lambda w: arr, lambda w, d: None, rows)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none here)")
@pytest.mark.parametrize("scale", [2, 4])
def test_default_on_cuda_equals_the_cpu(tmp_path: Path, scale: int) -> None:
    """fp32 on the GPU (cuDNN without TF32) streams, in larger bands: the CPU's output."""
    src, _ = _scene(tmp_path / "in.tif", (150, 1100))
    gpu, tags = _read(predict(src, tmp_path / "g.tif", scale=scale, device="cuda",
                              precision="fp32"))
    cpu, _ = _read(predict(src, tmp_path / "c.tif", scale=scale, device="cpu"))
    assert (tags["S2SR_ENGINE"], tags["S2SR_PRECISION"]) == ("stream", "fp32")
    assert np.abs(gpu - cpu).max() <= 1


# ======================================================== row bands on a Dask cluster

@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    with local_client() as dask:
        yield dask


@pytest.mark.slow
@pytest.mark.parametrize(("parts", "consistency"), [(2, False), (5, True)])
def test_split_over_workers_equals_whole_scene(tmp_path: Path, tiny_weights_x4: Path,
                                               client: Any, parts: int,
                                               consistency: bool) -> None:
    """Each Dask block is a band of rows plus the receptive field's rows (and the
    back-projection's), streamed, the halo cut off: the whole-scene result within 1 DN."""
    from s2sr.batch.blocks import predict_blocks

    src, arr = _scene(tmp_path / "in.tif", (97, 61))
    split = predict_blocks(src, tmp_path / "split.tif", tiny_weights_x4, client=client,
                           parts=parts, consistency=consistency)
    out, tags = _read(split)
    assert tags["S2SR_ENGINE"] == "stream"
    whole = _whole(tiny_weights_x4, arr, consistency)
    assert np.abs(out - whole).max() <= 1
    single, single_tags = _read(predict(src, tmp_path / "single.tif", tiny_weights_x4,
                                        consistency=consistency))
    assert tags == single_tags and np.abs(out - single).max() <= 1
    # through predict_many, as --split-mpx does
    report = predict_many([str(src)], tmp_path / "out", tiny_weights_x4, client=client,
                          split_mpx=0.001, split_parts=parts, consistency=consistency)
    assert report.scenes[0].status == "done"
    made, _ = _read(tmp_path / "out" / "in_x4.tif")
    assert np.abs(made - whole).max() <= 1
