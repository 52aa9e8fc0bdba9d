"""The panel's hook for reduced precision (benchmarks/precision_panel.py): the models run
at the precision and on the backend asked, fp32 on PyTorch by default."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from s2sr.evaluation.panel import artefact_rows, panel_rows
from s2sr.models import load_model
from support.rasters import texture


def _gains(rows: list[dict], name: str) -> dict[str, float]:
    return {r["case"]: r["gain_psnr"] for r in rows if r["scene"] == "mean"
            and r["method"] == name}


@pytest.mark.parametrize(("precision", "backend"), [("bf16", "torch"),
                                                    ("int8", "onnxruntime")])
def test_panel_runs_a_model_at_a_precision(tiny_weights: Path, precision: str, backend: str,
                                           tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    if backend == "onnxruntime":
        pytest.importorskip("onnxruntime", reason="int8 runs on ONNX Runtime")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    models = {"t": load_model(tiny_weights)}
    scenes = {"a": texture((48, 48), seed=4).astype(np.float32)}
    ref = panel_rows(models, scenes, device="cpu")
    assert ref == panel_rows(models, scenes, device="cpu", precision="fp32",
                             backend="torch")  # the default
    low = panel_rows(models, scenes, device="cpu", precision=precision, backend=backend)
    g_ref, g_low = _gains(ref, "t"), _gains(low, "t")
    assert list(g_ref) == list(g_low) and len(g_ref) == 5
    deltas = [abs(g_low[c] - g_ref[c]) for c in g_ref]
    assert 0 < max(deltas) < 0.5  # it ran at another precision, and not far off
    bic = [r["psnr"] for r in low if r["method"] == "bicubic"]
    assert bic == [r["psnr"] for r in ref if r["method"] == "bicubic"]  # baselines as before
    arts = artefact_rows(models, scenes, device="cpu", precision=precision, backend=backend)
    art_ref = artefact_rows(models, scenes, device="cpu")
    score = {r["method"]: r["score"] for r in arts if r["scene"] == "max"}
    score_ref = {r["method"]: r["score"] for r in art_ref if r["scene"] == "max"}
    assert score["bicubic x2"] == score_ref["bicubic x2"]
    assert score["t"] != score_ref["t"] and abs(score["t"] - score_ref["t"]) < 0.1
