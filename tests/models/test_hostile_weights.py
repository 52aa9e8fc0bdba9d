"""Hostile and bad weights files, and bad model options (issue 9).

Classes of input covered, each refused with a one-line error naming the key and the fix:

* architecture bombs: a tiny header asking for a huge model is refused before anything
  is built, also through the real ``s2sr predict`` (no traceback, no output);
* bad header values: each field of the s2sr header, wrong type, out of range, missing or
  not JSON;
* tensor table: missing, extra, mis-shaped or mis-typed tensors, checked before reading;
* non-finite weights: NaN or infinity anywhere, and normalisation tensors that disagree
  with the header;
* never unpickle: pickles and ``torch.save`` zips with a malicious ``__reduce__``;
  truncated, oversized and non-s2sr files;
* ``build_model`` / ``EDSR`` options from a training config; EDSR ``out_bands``;
* the shipped models and ``save_model`` output keep loading and round-trip;
* exported TorchScript archives (issue 19, held): a malicious ``data.pkl`` and code files
  are never run (the model comes from the embedded weights file), traversal entry names
  are never extracted, a second header entry smuggled under one is refused.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors import safe_open
from safetensors.torch import save_file

from s2sr.cli.main import cli
from s2sr.core.errors import UsageError, WeightsError
from s2sr.models import (
    EDSR,
    build_model,
    get_spec,
    list_pretrained,
    load_model,
    read_metadata,
    save_model,
)
from s2sr.models.pretrained import WEIGHTS_DIR
from support.rasters import field, write_geotiff

BANDS4 = '["B02", "B03", "B04", "B08"]'


def _header(**changes: str | None) -> dict[str, str]:
    meta = {"format": "s2sr-weights", "format_version": "1", "name": "edsr-tiny",
            "bands": BANDS4, "scale": "2", "options": "{}"}
    for key, value in changes.items():
        if value is None:
            meta.pop(key, None)
        else:
            meta[key] = value
    return meta


def _tiny_state(**options: Any) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = build_model("edsr-tiny", **options)
    return {k: v.contiguous() for k, v in model.state_dict().items()}


def _write(path: Path, meta: dict[str, str], tensors: dict[str, torch.Tensor] | None = None
           ) -> Path:
    save_file(_tiny_state() if tensors is None else tensors, str(path), metadata=meta)
    return path


def _raw_safetensors(path: Path, meta: dict[str, str]) -> Path:
    """A safetensors file with a header and no tensors at all, byte by byte."""
    header = json.dumps({"__metadata__": meta}, separators=(",", ":")).encode()
    path.write_bytes(len(header).to_bytes(8, "little") + header)
    return path


def _refused(path: Path, pattern: str) -> str:
    with pytest.raises(WeightsError, match=pattern) as info:
        load_model(path)
    message = str(info.value)
    assert "\n" not in message and len(message) < 600
    assert str(path) in message
    return message


# --- architecture bombs -----------------------------------------------------------------

def _bomb(tmp_path: Path) -> Path:
    meta = _header(name="edsr", options='{"n_resblocks": 100000000}')
    return _raw_safetensors(tmp_path / "bomb.safetensors", meta)


def test_the_262_byte_bomb_is_refused_before_building(tmp_path: Path) -> None:
    path = _bomb(tmp_path)
    assert path.stat().st_size < 300
    _refused(path, r"header options\.n_resblocks must be an integer from 1 to 64, "
                   r"got 100000000; the file is damaged")
    with pytest.raises(WeightsError, match=r"options\.n_resblocks"):
        read_metadata(path)


_PROBE = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
from s2sr.core.errors import WeightsError
from s2sr.models import load_model
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
for path in sys.argv[1:]:
    try:
        load_model(path)
    except WeightsError as err:
        print("refused:", err)
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print("grown_kib", grown)
"""


def test_bombs_allocate_nothing(tmp_path: Path) -> None:
    """In a process limited to 3 GiB of address space: the 262-byte bomb, and a header
    within bounds (64 x 512, x4) whose tensors are a tiny model's, are refused with at most
    a few MiB of memory growth, because shapes are checked before any module is built."""
    widest = _write(tmp_path / "widest.safetensors",
                    _header(name="edsr", scale="4",
                            options='{"n_resblocks": 64, "n_feats": 512}'))
    feats = _raw_safetensors(tmp_path / "feats.safetensors",
                             _header(name="edsr", options='{"n_feats": 1e6}'))
    run = subprocess.run([sys.executable, "-c", _PROBE, str(_bomb(tmp_path)), str(widest),
                          str(feats)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    lines = run.stdout.splitlines()
    assert len([ln for ln in lines if ln.startswith("refused:")]) == 3, run.stdout
    assert "options.n_resblocks must be an integer from 1 to 64" in lines[0]
    assert "tensor(s)" in lines[1] or "shape" in lines[1]
    assert "options.n_feats must be an integer from 1 to 512, got 1000000.0" in lines[2]
    grown_kib = int(lines[-1].split()[1])
    assert grown_kib < 64 * 1024, f"loading hostile files grew memory by {grown_kib} KiB"


def test_predict_cli_refuses_the_bomb_cleanly(tmp_path: Path) -> None:
    src = write_geotiff(tmp_path / "in.tif", field((24, 24), 4))
    out = tmp_path / "out.tif"
    result = CliRunner().invoke(cli, ["predict", str(src), "-o", str(out), "--weights",
                                      str(_bomb(tmp_path))])
    assert result.exit_code == 1, result.output
    assert "s2sr: error:" in result.output and "options.n_resblocks" in result.output
    assert "Traceback" not in result.output
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


# --- bad header values ------------------------------------------------------------------

HEADER_CASES: list[tuple[str, dict[str, str | None], str]] = [
    ("n_feats negative", {"options": '{"n_feats": -4}'},
     r"options\.n_feats must be an integer from 1 to 512, got -4"),
    ("n_feats float", {"options": '{"n_feats": 8.5}'}, r"options\.n_feats must be an integer"),
    ("n_feats string", {"options": '{"n_feats": "8"}'}, r"options\.n_feats .*got '8'"),
    ("n_feats bool", {"options": '{"n_feats": true}'}, r"options\.n_feats .*got True"),
    ("n_resblocks zero", {"options": '{"n_resblocks": 0}'}, r"options\.n_resblocks"),
    ("res_scale NaN", {"options": '{"res_scale": NaN}'},
     r"options\.res_scale must be a finite number in \(0, 10\], got nan"),
    ("res_scale negative", {"options": '{"res_scale": -1}'}, r"options\.res_scale"),
    ("unknown norm", {"options": '{"upsampler_norm": "layer"}'},
     r"options\.upsampler_norm must be one of none, 'batch', got 'layer'"),
    ("global_residual string", {"options": '{"global_residual": "yes"}'},
     r"options\.global_residual must be true or false"),
    ("unknown option", {"options": '{"dropout": 0.5}'},
     r"options\.dropout is not an option of model 'edsr-tiny': use global_residual"),
    ("out_bands option", {"options": '{"out_bands": 3}'}, r"options\.out_bands is not an option"),
    ("options a list", {"options": "[1, 2]"},
     r"header options must be a mapping of option names to values, got \[1, 2\]"),
    ("options null", {"options": "null"}, r"header options must be a mapping"),
    ("options not JSON", {"options": "{n_feats: 8}"}, r"header options is not valid JSON"),
    ("options nested deep", {"options": "[" * 200_000}, r"header options is not valid JSON"),
    ("options missing", {"options": None}, r"header has no 'options' key"),
    ("mean strings", {"options": '{"mean": ["a", "b", "c", "d"]}'},
     r"options\.mean\[0\] must be a finite number .*got 'a'"),
    ("mean a string", {"options": '{"mean": "0.1"}'},
     r"options\.mean must be a list of 4 numbers \(one per band\)"),
    ("mean wrong length", {"options": '{"mean": [0.1, 0.1, 0.1]}'},
     r"options\.mean must have 4 values \(one per band\), got 3"),
    ("mean NaN", {"options": '{"mean": [0.1, NaN, 0.1, 0.1]}'},
     r"options\.mean\[1\] must be a finite number .*got nan"),
    ("mean huge", {"options": '{"mean": [1e300, 0.1, 0.1, 0.1]}'}, r"options\.mean\[0\]"),
    ("std zero", {"options": '{"std": [0.1, 0, 0.1, 0.1]}'},
     r"options\.std\[1\] must be a finite number in \[1e-06, 1000\], got 0"),
    ("std negative", {"options": '{"std": [-0.1, 0.1, 0.1, 0.1]}'}, r"options\.std\[0\]"),
    ("std infinite", {"options": '{"std": [Infinity, 0.1, 0.1, 0.1]}'}, r"options\.std\[0\]"),
    ("scale 3", {"scale": "3"}, r"header scale must be 2 or 4, got '3'"),
    ("scale word", {"scale": "two"}, r"header scale must be 2 or 4, got 'two'"),
    ("scale missing", {"scale": None}, r"header has no 'scale' key"),
    ("bands missing", {"bands": None}, r"header has no 'bands' key"),
    ("bands a string", {"bands": '"B02"'}, r"header bands must be a list of band names"),
    ("bands not JSON", {"bands": "B02,B03,B04,B08"}, r"header bands is not valid JSON"),
    ("bands unknown", {"bands": '["B02", "X9", "B04", "B08"]'},
     r"header bands has unknown Sentinel-2 band\(s\) \['X9'\]"),
    ("bands numbers", {"bands": "[2, 3, 4, 8]"}, r"header bands has unknown"),
    ("bands repeated", {"bands": '["B02", "B02", "B04", "B08"]'},
     r"header bands names a band twice"),
    ("bands empty", {"bands": "[]"}, r"header bands must name 1 to 13 bands, got 0"),
    ("bands too many", {"bands": json.dumps(["B02"] * 14)}, r"must name 1 to 13 bands, got 14"),
    ("name unknown", {"name": "nope"},
     r"header name 'nope' is unknown: choose one of edsr, edsr-tiny"),
    ("name missing", {"name": None}, r"header has no 'name' key"),
    ("format version", {"format_version": "2"},
     r"header format_version '2' is not one this s2sr reads \(1\): upgrade s2sr"),
]


@pytest.mark.parametrize(("changes", "pattern"), [c[1:] for c in HEADER_CASES],
                         ids=[c[0] for c in HEADER_CASES])
def test_bad_header_values_name_the_key(tmp_path: Path, changes: dict[str, str | None],
                                        pattern: str) -> None:
    path = _write(tmp_path / "w.safetensors", _header(**changes))
    _refused(path, pattern)
    with pytest.raises(WeightsError, match=pattern):
        read_metadata(path)


# --- the tensor table -------------------------------------------------------------------

def test_missing_tensor_is_named(tmp_path: Path) -> None:
    state = _tiny_state()
    del state["tail.bias"]
    _refused(_write(tmp_path / "w.safetensors", _header(), state),
             r"lacks tensor\(s\) \['tail.bias'\] for a edsr-tiny x2 on 4 bands")


def test_extra_tensor_is_named(tmp_path: Path) -> None:
    state = _tiny_state()
    state["payload"] = torch.zeros(3)
    _refused(_write(tmp_path / "w.safetensors", _header(), state),
             r"has unexpected tensor\(s\) \['payload'\]")


def test_wrong_shape_is_named(tmp_path: Path) -> None:
    """The header says 8 filters, the tensors have 16: refused on the header alone."""
    state = _tiny_state(n_feats=16)
    _refused(_write(tmp_path / "w.safetensors", _header(), state),
             r"tensor head\.weight has shape \[16, 4, 3, 3\], the header's architecture "
             r"needs \[8, 4, 3, 3\]")


def test_fewer_blocks_than_the_header_says(tmp_path: Path) -> None:
    _refused(_write(tmp_path / "w.safetensors", _header(options='{"n_resblocks": 3}')),
             r"lacks tensor\(s\) \['body\.1\.body\.0\.bias'")


@pytest.mark.parametrize("dtype", [torch.int32, torch.float64, torch.uint8])
def test_wrong_dtype_is_named(tmp_path: Path, dtype: torch.dtype) -> None:
    state = _tiny_state()
    state["head.weight"] = state["head.weight"].to(dtype)
    _refused(_write(tmp_path / "w.safetensors", _header(), state),
             r"tensor head\.weight is [A-Z0-9]+, expected one of F16, BF16, F32")


def test_batchnorm_counter_must_be_int64(tmp_path: Path) -> None:
    state = _tiny_state(upsampler_norm="batch")
    state["upsample.1.num_batches_tracked"] = torch.tensor(0.5)
    meta = _header(options='{"upsampler_norm": "batch"}')
    _refused(_write(tmp_path / "w.safetensors", meta, state),
             r"tensor upsample\.1\.num_batches_tracked is F32, expected one of I64")


# --- non-finite weights -----------------------------------------------------------------

def test_all_nan_weights_are_refused(tmp_path: Path) -> None:
    state = {k: torch.full_like(v, float("nan")) if k not in ("mean", "std") else v
             for k, v in _tiny_state().items()}
    _refused(_write(tmp_path / "w.safetensors", _header(), state),
             r"tensor \S+ holds NaN or infinite values, so every output would be invalid")


@pytest.mark.parametrize("half", [False, True])
def test_a_single_inf_is_refused(tmp_path: Path, half: bool) -> None:
    state = _tiny_state()
    state["body.0.body.2.weight"][0, 0, 1, 1] = float("inf")
    if half:
        state = {k: v.half() if k not in ("mean", "std") else v for k, v in state.items()}
    _refused(_write(tmp_path / "w.safetensors", _header(), state),
             r"tensor body\.0\.body\.2\.weight holds NaN or infinite values")


def test_nan_in_batchnorm_statistics_and_negative_variance(tmp_path: Path) -> None:
    meta = _header(options='{"upsampler_norm": "batch"}')
    state = _tiny_state(upsampler_norm="batch")
    state["upsample.1.running_mean"][2] = float("nan")
    _refused(_write(tmp_path / "a.safetensors", meta, state),
             r"tensor upsample\.1\.running_mean holds NaN")
    state = _tiny_state(upsampler_norm="batch")
    state["upsample.1.running_var"][0] = -1.0
    _refused(_write(tmp_path / "b.safetensors", meta, state),
             r"tensor upsample\.1\.running_var has negative variances")


def test_normalisation_tensor_must_match_the_header(tmp_path: Path) -> None:
    """A zero ``std`` tensor would divide by zero; the header's std is the checked one."""
    state = _tiny_state()
    state["std"] = torch.zeros_like(state["std"])
    _refused(_write(tmp_path / "w.safetensors", _header(), state),
             r"tensor std differs from header options\.std")


def test_predict_cli_refuses_nan_weights_and_writes_nothing(tmp_path: Path) -> None:
    model = build_model("edsr-tiny")
    with torch.no_grad():
        model.tail.weight.fill_(float("nan"))
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    weights = _write(tmp_path / "nan.safetensors", _header(), state)
    src = write_geotiff(tmp_path / "in.tif", field((24, 24), 4))
    out = tmp_path / "out.tif"
    result = CliRunner().invoke(cli, ["predict", str(src), "-o", str(out), "--weights",
                                      str(weights)])
    assert result.exit_code == 1, result.output
    assert "tensor tail.weight holds NaN or infinite values" in result.output
    assert not out.exists()


def test_save_model_refuses_non_finite_weights(tmp_path: Path) -> None:
    model = build_model("edsr-tiny")
    with torch.no_grad():
        model.head.bias[0] = float("nan")
    with pytest.raises(WeightsError, match=r"tensor head\.bias holds NaN or infinite values"):
        save_model(model, tmp_path / "m.safetensors")
    model = build_model("edsr-tiny")
    with torch.no_grad():
        model.head.bias[0] = 1e6  # finite in float32, inf in float16
    save_model(model, tmp_path / "m32.safetensors")
    with pytest.raises(WeightsError, match=r"once stored as float16.*save without half"):
        save_model(model, tmp_path / "m16.safetensors", half=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m32.safetensors"]


# --- never unpickle; not a weights file -------------------------------------------------

class _Marker:
    """Unpickling this creates the file named ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[str, str]]:
        return (open, (self.path, "w"))


@pytest.mark.parametrize("name", ["evil.safetensors", "evil.pt"])
def test_malicious_pickle_is_refused_and_never_run(tmp_path: Path, name: str) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / name
    path.write_bytes(pickle.dumps({"head.weight": _Marker(marker)}, protocol=2))
    _refused(path, r"is a pickle file, which s2sr never loads because loading it can run code")
    assert not marker.exists()


def test_malicious_torch_save_zip_is_refused_and_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.safetensors"
    torch.save({"state_dict": _Marker(marker)}, path)
    _refused(path, r"is a zip \(torch\.save\) file, which s2sr never loads")
    assert not marker.exists()
    # the same file under a .pt name, and through read_metadata
    (tmp_path / "evil.pt").write_bytes(path.read_bytes())
    with pytest.raises(WeightsError, match="never loads"):
        read_metadata(tmp_path / "evil.pt")
    assert not marker.exists()


def test_safetensors_without_metadata_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "plain.safetensors"
    save_file(_tiny_state(), str(path))
    _refused(path, "a safetensors file but not an s2sr weights file")


@pytest.mark.parametrize("cut", ["empty", "4 bytes", "length only", "mid header",
                                 "header only", "last byte"])
def test_truncated_files_are_refused(tmp_path: Path, cut: str) -> None:
    data = save_model(build_model("edsr-tiny"), tmp_path / "full.safetensors").read_bytes()
    header_len = int.from_bytes(data[:8], "little")
    keep = {"empty": 0, "4 bytes": 4, "length only": 8, "mid header": 8 + header_len // 2,
            "header only": 8 + header_len, "last byte": len(data) - 1}[cut]
    path = tmp_path / "cut.safetensors"
    path.write_bytes(data[:keep])
    _refused(path, "corrupt|truncated")


def test_huge_header_length_and_huge_header_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "len.safetensors"
    path.write_bytes((2**63).to_bytes(8, "little") + b"{}")
    _refused(path, "corrupt, truncated or not a safetensors file")
    big = _write(tmp_path / "big.safetensors", _header(padding="x" * (2 << 20)))
    _refused(big, r"has a \d+-byte header, more than the 1048576 bytes")


def test_oversized_file_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "huge.safetensors"
    with open(path, "wb") as handle:  # sparse: no disk space used
        handle.truncate(3 << 30)
    _refused(path, r"is 3\.0 GiB, more than the 2 GiB")


def test_folder_and_missing_paths(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"is a folder: pass the \.safetensors file itself"):
        load_model(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model(tmp_path / "nope.safetensors")


# --- build_model / EDSR options (training configs) --------------------------------------

BUILD_CASES: list[tuple[dict[str, Any], str]] = [
    ({"n_feats": -4}, r"model option n_feats must be an integer from 1 to 512, got -4"),
    ({"n_feats": 1e6}, r"model option n_feats must be an integer from 1 to 512, got 1000000.0"),
    ({"n_resblocks": 100_000_000}, r"n_resblocks must be an integer from 1 to 64"),
    ({"n_resblocks": "8"}, r"n_resblocks must be an integer .*got '8'"),
    ({"res_scale": float("nan")}, r"res_scale must be a finite number"),
    ({"upsampler_norm": "instance"}, r"upsampler_norm must be one of none, 'batch'"),
    ({"mean": [0.1, 0.2]}, r"model option mean must have 4 values"),
    ({"std": ["x", 1, 1, 1]}, r"model option std\[0\] must be a finite number"),
    ({"out_bands": 3}, r"out_bands is not an option of model 'edsr'"),
    ({"scale": 3}, r"model scale must be 2 or 4, got 3"),
    ({"bands": "B02"}, r"model bands must be a list of band names"),
    ({"bands": ("B02", "B02")}, r"model bands names a band twice"),
]


@pytest.mark.parametrize(("options", "pattern"), BUILD_CASES,
                         ids=[next(iter(c[0])) + str(i) for i, c in enumerate(BUILD_CASES)])
def test_build_model_bounds_are_usage_errors(options: dict[str, Any], pattern: str) -> None:
    with pytest.raises(UsageError, match=pattern) as info:
        build_model("edsr", **options)
    assert "\n" not in str(info.value)


def test_edsr_class_is_bounded_too() -> None:
    with pytest.raises(UsageError, match="n_feats must be an integer from 1 to 512"):
        EDSR(n_feats=10**6)
    with pytest.raises(UsageError, match="n_resblocks must be an integer from 1 to 64"):
        EDSR(n_resblocks=10**8)


def test_largest_model_within_bounds_builds() -> None:
    """The bounds are not too tight: 64 blocks of 512 filters is a valid model."""
    from s2sr.models.registry import check_spec, expected_state

    shapes = expected_state(check_spec("edsr", ("B02",), 4, {"n_resblocks": 64,
                                                              "n_feats": 512}))
    assert shapes["body.63.body.2.weight"][0] == (512, 512, 3, 3)


# --- EDSR out_bands ---------------------------------------------------------------------

def test_edsr_refuses_out_bands_other_than_in_bands() -> None:
    with pytest.raises(UsageError, match=r"out_bands must equal in_bands \(4\), got 3"):
        EDSR(in_bands=4, out_bands=3)
    assert EDSR(in_bands=4, out_bands=4).tail.out_channels == 4


def test_edsr_output_is_always_reflectance() -> None:
    """A network whose convolutions output zero returns the per-band mean, in reflectance."""
    model = EDSR(in_bands=3, n_resblocks=1, n_feats=4, mean=[0.1, 0.2, 0.3],
                 std=[0.5, 0.5, 0.5]).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        y = model(torch.rand(1, 3, 5, 5))
    expected = torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1).expand_as(y)
    assert torch.allclose(y, expected)


# --- good files keep working ------------------------------------------------------------

def test_shipped_models_pass_every_check() -> None:
    assert len(list_pretrained()) == 5  # four 10 m models, the guided s2sr_20m_x2
    for name in list_pretrained():
        path = WEIGHTS_DIR / f"{name}.safetensors"
        with safe_open(str(path), framework="pt") as handle:
            assert handle.get_slice("head.weight").get_dtype() == "F16"
        meta = read_metadata(path)
        model = load_model(path)
        assert get_spec(model).options == meta["options"]
        assert all(p.dtype == torch.float32 for p in model.parameters())


def test_every_shipped_config_is_within_bounds() -> None:
    import yaml

    configs = sorted((WEIGHTS_DIR.parent / "configs").rglob("*.yaml"))
    configs += sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))
    assert len(configs) >= 9
    for path in configs:
        model = yaml.safe_load(path.read_text())["model"]
        built = build_model(model["name"], bands=model["bands"], scale=model["scale"],
                            **model["options"])
        assert get_spec(built).options["global_residual"] is True


@pytest.mark.parametrize("half", [False, True])
def test_save_model_round_trips_with_batchnorm(tmp_path: Path, half: bool) -> None:
    torch.manual_seed(1)
    model = build_model("edsr-tiny", bands=("B04", "B8A"), scale=4, upsampler_norm="batch",
                        global_residual=True, res_scale=0.5)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    path = save_model(model, tmp_path / "m.safetensors", half=half)
    loaded = load_model(path)
    assert get_spec(loaded) == get_spec(model)
    x = torch.rand(1, 2, 6, 6)
    with torch.no_grad():
        a, b = model(x), loaded(x)
    if half:
        assert np.allclose(a.numpy(), b.numpy(), atol=1e-2)
    else:
        assert torch.equal(a, b)
    assert os.listdir(tmp_path) == ["m.safetensors"]


# --- exported TorchScript archives are never executed (issue 19, held) ------------------

def _archive(tmp_path: Path, replace: Callable[[str, bytes], bytes | None],
             extra: dict[str, bytes] | None = None) -> tuple[Path, Path]:
    """A real ``s2sr export --format torchscript`` of tiny weights, its entries passed
    through ``replace(name, data)`` (``None``: kept) and ``extra`` entries added."""
    import zipfile

    from s2sr.inference.verified_export import export_model

    torch.manual_seed(0)
    weights = save_model(build_model("edsr-tiny"), tmp_path / "w.safetensors")
    plain = export_model(weights, tmp_path / "plain.pt", "torchscript").path
    bad = tmp_path / "bad.pt"
    with zipfile.ZipFile(plain) as zin, zipfile.ZipFile(bad, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            zout.writestr(info, replace(info.filename, data) or data)
        for name, data in (extra or {}).items():
            zout.writestr(name, data)
    return weights, bad


def _same_model(archive: Path, weights: Path) -> None:
    from s2sr.models.exported import load_torchscript

    x = torch.rand(1, 4, 12, 12, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        torch.testing.assert_close(load_torchscript(archive)(x), load_model(weights)(x))


def test_a_malicious_data_pkl_and_code_in_an_archive_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = f"open({str(marker)!r}, 'w').write('ran')\n".encode()
    replaced = []

    def replace(name: str, data: bytes) -> bytes | None:
        if name.endswith("/data.pkl"):
            replaced.append("pickle")
            return pickle.dumps(_Marker(marker), protocol=2)
        if "/code/" in name and name.endswith(".py"):
            replaced.append("code")
            return payload + data
        return None

    weights, bad = _archive(tmp_path, replace)
    assert {"pickle", "code"} <= set(replaced)
    _same_model(bad, weights)  # the model is rebuilt from the embedded weights file
    src = write_geotiff(tmp_path / "in.tif", field((20, 20), 4))
    result = CliRunner().invoke(cli, ["predict", str(src), "-o", str(tmp_path / "o.tif"),
                                      "--weights", str(bad), "--backend", "torch", "-q"])
    assert result.exit_code == 0, result.output
    assert not marker.exists()


def test_traversal_names_in_an_archive_are_never_extracted(tmp_path: Path) -> None:
    from s2sr.models.exported import load_torchscript

    outside = tmp_path.parent / f"{tmp_path.name}-evil.txt"
    weights, bad = _archive(tmp_path, lambda name, data: None, {
        f"../{outside.name}": b"evil", str(outside): b"evil", "../../../../tmp/x/y": b"e"})
    _same_model(bad, weights)
    assert not outside.exists() and not Path("/tmp/x/y").exists()
    # a second header entry smuggled in under a traversal name is refused, not chosen
    second = tmp_path / "second"
    second.mkdir()
    _, two = _archive(second, lambda name, data: None,
                      {"../evil/extra/s2sr_header.json": b'{"format": "s2sr-export"}'})
    with pytest.raises(WeightsError, match=r"holds 2 's2sr_header\.json' entries"):
        load_torchscript(two)
