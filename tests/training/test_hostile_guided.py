"""Bad and hostile experiment files of the guided 20 m models (issue 22).

Classes of input, each refused with a one-line message naming the value and the fix (exit 2
from ``python -m s2sr.training.guided``, nothing trained, no run folder left):

* security: an architecture bomb (refused on the "meta" device before anything is
  allocated), a YAML alias bomb, a non-UTF-8 file;
* reliability: unknown keys, wrong types, out-of-range numbers, a single-input model name;
* new-user: a folder instead of the file.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from s2sr.core.errors import UsageError
from s2sr.training.guided import main
from s2sr.training.guided_config import load_guided_config

GOOD = ("name: t\nmodel: {name: guided-edsr-tiny, scale: 2}\n"
        "data: {val: [beihai], patch: 32, samples_per_epoch: 8}\n")


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(("text", "message"), [
    (GOOD + "epochs: 0\n", "epochs must be an integer from 1 to 1000, got 0"),
    (GOOD + "lr: .nan\n", "lr must be a number from"),
    (GOOD + "precision: fp16\n", "precision must be fp32 or bf16"),
    (GOOD + "max_line_ratio: 0\n", "max_line_ratio must be a number from 0.01 to 10"),
    (GOOD + "max_line_ratio: [0.3]\n", "max_line_ratio must be a number from 0.01 to 10"),
    (GOOD + "bogus: 1\n", "has unknown key(s) bogus"),
    (GOOD.replace("guided-edsr-tiny", "edsr"), "model.name must be one of guided-edsr"),
    (GOOD.replace("scale: 2", "scale: 3"), "scale must be 2 or 4"),
    (GOOD.replace("scale: 2", "scale: 2, options: {n_resblocks: 100000000}"),
     "n_resblocks must be an integer from 1 to 64"),
    (GOOD.replace("scale: 2", "scale: 2, options: {n_feats: 100000}"),
     "n_feats must be an integer from 1 to 512"),
    (GOOD.replace("scale: 2", "scale: 2, guide_bands: [B05]"), "must not repeat the bands"),
    (GOOD.replace("patch: 32", "patch: 100000"), "data.patch must be an integer from 16"),
    (GOOD.replace("patch: 32", "patch: 18"),
     "data.patch must be a multiple of 4 from 8 to 512 for a x2 model, got 18"),
    (GOOD.replace("scale: 2", "scale: 4").replace("patch: 32", "patch: 36"),
     "data.patch must be a multiple of 8 from 16 to 512 for a x4 model, got 36"),
    (GOOD.replace("scale: 2", "scale: 2, options: 5"), "model.options must be a mapping, got 5"),
    (GOOD.replace("scale: 2", "scale: 2, options: [[1, 2]]"), "model.options must be a mapping"),
    (GOOD.replace("val: [beihai]", "val: beihai"), "data.val must be a list of scene names"),
    (GOOD.replace("samples_per_epoch: 8", "samples_per_epoch: 8, degradation: {mtf: [0.9, 0.1]}"),
     "degradation mtf range must satisfy"),
    (GOOD.replace("samples_per_epoch: 8", "samples_per_epoch: 8, degradation: {haze: 2}"),
     "data.degradation.haze must be a number from 0 to 1"),
    ("name: t\n", "model must be a mapping"),
    ("", "is empty: start from configs/bands20/s2sr_20m_x2.yaml"),
    ("# only a comment\n", "is empty (only comments): start from configs/bands20/"),
])
def test_bad_values_are_refused_with_the_fix(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(UsageError) as info:
        load_guided_config(_file(tmp_path, text))
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_an_architecture_bomb_is_refused_before_allocating(tmp_path: Path) -> None:
    """512 filters x 64 blocks is within bounds (built on "meta": no memory), one more is
    refused; neither allocates (a real build of the largest would take ~1 GB and seconds)."""
    text = GOOD.replace("scale: 2", "scale: 4, options: {n_resblocks: 64, n_feats: 512}")
    start = time.perf_counter()
    cfg = load_guided_config(_file(tmp_path, text))
    assert cfg.options == {"n_resblocks": 64, "n_feats": 512}
    assert time.perf_counter() - start < 30  # generous: "meta" builds take milliseconds


def test_alias_bomb_and_non_utf8_are_refused(tmp_path: Path) -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n"
        for p, c in zip("abcdefgh", "bcdefghi", strict=True))
    with pytest.raises(UsageError, match=r"alias|values"):
        load_guided_config(_file(tmp_path, bomb))
    path = tmp_path / "latin.yaml"
    path.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(UsageError, match="not UTF-8"):
        load_guided_config(path)


def test_command_line_exit_codes_and_nothing_left(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    bad = _file(tmp_path, GOOD + "epochs: -1\n")
    assert main([str(bad), "-o", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: epochs must be") and err.count("\n") == 1
    assert not (tmp_path / "run").exists()
    assert main([str(tmp_path), "-o", str(tmp_path / "run")]) == 2  # a folder
    assert "configs/bands20/s2sr_20m_x2.yaml" in capsys.readouterr().err
