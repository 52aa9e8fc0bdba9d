"""``s2sr evaluate``: one subcommand per kind of evaluation.

``dataset`` (Table 2-style report on datasets from ``s2sr pairs``), ``scene`` (one
co-registered scene pair), ``consistency`` (a predict output against its input, no
reference) and ``panel`` (the robustness panel on held-out real scenes). Each takes only
its own options. The flag form of earlier releases (``s2sr evaluate --panel ...``) is
refused with a one-line error naming the subcommand to use.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from s2sr.cli.common import handle_errors, setup_logging
from s2sr.cli.options import output_opt, overwrite_opt
from s2sr.core.errors import InputNotFoundError, UsageError

if TYPE_CHECKING:
    from s2sr.losses.metrics import Conventions

# Library modules are imported inside the commands: they pull in torch, rasterio and numpy
# (seconds), which ``s2sr --help`` and shell completion should not wait for.

F = TypeVar("F", bound=Callable[..., Any])

#: The splits ``s2sr pairs`` writes.
SPLITS = ("train", "val", "test")


def _old_form(args: Sequence[str]) -> str:
    """What replaces an ``s2sr evaluate --flag ...`` command line of earlier releases."""
    flags = {a.partition("=")[0] for a in args}
    if "--panel" in flags:
        return "s2sr evaluate panel ... (the same options, without --panel)"
    if "--consistency" in flags:
        return ("s2sr evaluate consistency OUTPUT --lr INPUT -o REPORT (OUTPUT was "
                "--consistency's value)")
    if flags & {"--lr", "--hr"}:
        return "s2sr evaluate scene ... (the same options)"
    return "s2sr evaluate dataset ... (the same options)"


class _Evaluate(click.Group):
    """The ``evaluate`` group; refuses the flag form of earlier releases in one line."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0].startswith("-") and args[0] not in ctx.help_option_names:
            click.echo("s2sr: error: s2sr evaluate takes a subcommand (dataset, scene, "
                       f"consistency, panel, bands): write {_old_form(args)}", err=True)
            sys.exit(2)
        return super().parse_args(ctx, args)


@click.group(cls=_Evaluate)
def evaluate() -> None:
    """Score models and outputs: on datasets, a scene pair, the panel, or consistency.

    \b
    s2sr evaluate dataset --weights A.safetensors [--weights B ...] --dataset DS -o REPORT
    s2sr evaluate scene --weights A.safetensors --lr LR.tif --hr HR.tif -o REPORT
    s2sr evaluate consistency OUTPUT.tif --lr INPUT.tif -o REPORT
    s2sr evaluate panel --weights A.safetensors [--weights B ...] [--scene S.tif ...] -o REPORT
    s2sr evaluate bands [--weights-20m M.safetensors ...] [--shared ../shared/data] -o REPORT
    """


def _weights_opt(help: str) -> Callable[[F], F]:
    return click.option("--weights", multiple=True, type=click.Path(path_type=Path),
                        help=help)


def _scoring_opts(func: F) -> F:
    """``--data-range`` and ``--crop``: the PSNR/SSIM conventions."""
    func = click.option("--crop", type=int, default=None,
                        help="Border crop in output pixels, >= 0 [default: the scale].")(func)
    return click.option("--data-range", type=float, default=1.0, show_default=True,
                        help="PSNR/SSIM data range, in reflectance (a positive number)."
                        )(func)


_no_figures_opt = click.option("--no-figures", is_flag=True,
                               help="Write no comparison figures.")


@evaluate.command("dataset", short_help="Models on datasets from s2sr pairs (Table 2).")
@_weights_opt("Model weights (repeatable; NAME=FILE sets the row name).")
@click.option("--dataset", "datasets", multiple=True, type=click.Path(path_type=Path),
              help="Dataset folder made by s2sr pairs (repeatable).")
@click.option("--split", default="test", show_default=True,
              help="Which split of the datasets: train, val or test.")
@click.option("--kinds", default=None, help="Pair kinds, comma-separated (e.g. SE10>RE5,RE10>RE5).")
@_scoring_opts
@_no_figures_opt
@overwrite_opt("Replace an existing, non-empty report folder.")
@output_opt("Report folder.", "out")
@handle_errors
def dataset(weights: tuple[Path, ...], datasets: tuple[Path, ...], split: str,
            kinds: str | None, data_range: float, crop: int | None, no_figures: bool,
            overwrite: bool, out: Path) -> None:
    """PSNR/SSIM of models on datasets against bicubic, Lanczos and unsharp mask (Table 2).

    \b
    s2sr evaluate dataset --weights A.safetensors [--weights NAME=B.safetensors ...] \\
        --dataset DS [--dataset DS2 ...] -o REPORT
    """
    setup_logging(False)
    conv = _conventions(data_range, crop)
    if split not in SPLITS:
        raise UsageError(f"--split {split!r} is not a split: use one of {', '.join(SPLITS)}")
    kind_list = _kinds(kinds)
    if not weights or not datasets:
        raise UsageError("evaluate dataset needs --weights and --dataset")
    _exist(datasets)
    names, files = _named(weights)
    _check_out(out, overwrite, [*datasets, *files])
    from s2sr.evaluation.report import evaluate_models

    report = evaluate_models(dict(zip(names, files, strict=True)), datasets, out,
                             kinds=kind_list, split=split, conv=conv,
                             figures=not no_figures, overwrite=overwrite)
    click.echo(f"report: {report}")


@evaluate.command("scene", short_help="One model on a co-registered scene pair.")
@_weights_opt("Model weights (exactly one; NAME=FILE sets the row name).")
@click.option("--lr", "lr", type=click.Path(path_type=Path), default=None,
              help="The low-resolution scene.")
@click.option("--hr", "hr", type=click.Path(path_type=Path), default=None,
              help="The co-registered reference, the model's scale times larger.")
@_scoring_opts
@_no_figures_opt
@overwrite_opt("Replace an existing, non-empty report folder.")
@output_opt("Report folder.", "out")
@handle_errors
def scene(weights: tuple[Path, ...], lr: Path | None, hr: Path | None, data_range: float,
          crop: int | None, no_figures: bool, overwrite: bool, out: Path) -> None:
    """PSNR/SSIM of one model on a co-registered scene pair, with figures.

    \b
    s2sr evaluate scene --weights A.safetensors --lr LR.tif --hr HR.tif -o REPORT
    """
    setup_logging(False)
    conv = _conventions(data_range, crop)
    if lr is None or hr is None or len(weights) != 1:
        raise UsageError("evaluate scene needs --lr, --hr and exactly one --weights")
    _exist([lr, hr])
    names, files = _named(weights)
    _check_out(out, overwrite, [lr, hr, *files])
    from s2sr.evaluation.report import evaluate_scene

    report = evaluate_scene(files[0], lr, hr, out, conv=conv, name=names[0],
                            figures=not no_figures, overwrite=overwrite)
    click.echo(f"report: {report}")


@evaluate.command("consistency", short_help="A predict output against its input.")
@click.argument("output", type=click.Path(path_type=Path), metavar="OUTPUT")
@click.option("--lr", "lr", type=click.Path(path_type=Path), default=None,
              help="The input OUTPUT was made from (required).")
@overwrite_opt("Replace an existing, non-empty report folder.")
@output_opt("Report folder.", "out")
@handle_errors
def consistency(output: Path, lr: Path | None, overwrite: bool, out: Path) -> None:
    """Check a predict OUTPUT against its input: no reference needed.

    \b
    s2sr evaluate consistency OUTPUT.tif --lr INPUT.tif -o REPORT
    """
    setup_logging(False)
    if lr is None:
        raise UsageError("evaluate consistency needs --lr, the input the output was made from")
    _exist([output, lr])
    _check_out(out, overwrite, [output, lr])
    from s2sr.evaluation.report import evaluate_consistency

    report = evaluate_consistency(output, lr, out, overwrite=overwrite)
    click.echo(f"report: {report}")


@evaluate.command("panel", short_help="The robustness panel on held-out real scenes.")
@_weights_opt("Model weights (repeatable; NAME=FILE sets the column name).")
@click.option("--scene", "scenes", multiple=True, type=click.Path(path_type=Path),
              help="A real 10 m scene playing the truth (repeatable) [default: the test "
                   "places under --shared: OSCD abudhabi, rio, hongkong, milano and "
                   "boston_roads].")
@click.option("--shared", type=click.Path(path_type=Path), default=Path("../shared/data"),
              show_default=True, help="Where the default scenes are (sentinel2/).")
@_scoring_opts
@overwrite_opt("Replace an existing, non-empty report folder.")
@output_opt("Report folder.", "out")
@handle_errors
def panel(weights: tuple[Path, ...], scenes: tuple[Path, ...], shared: Path,
          data_range: float, crop: int | None, overwrite: bool, out: Path) -> None:
    """Robustness panel: the models on held-out real 10 m scenes degraded five ways.

    The block mean and MTF 0.2, 0.3, 0.45, 0.6 at each model's scale, against bicubic,
    Lanczos and an unsharp mask, per place with the worst place, artefact scores and
    Nyquist-line ratios.

    \b
    s2sr evaluate panel --weights A.safetensors [--weights B ...] [--scene S.tif ...] -o REPORT
    """
    setup_logging(False)
    conv = _conventions(data_range, crop)
    if not weights:
        raise UsageError("evaluate panel needs at least one --weights")
    _exist(scenes)
    names, files = _named(weights)
    from s2sr.evaluation.panel import default_scenes
    from s2sr.evaluation.panel_report import evaluate_panel

    scene_list: list[Path] = list(scenes)
    dn_offset: float | None = None  # user scenes: detected
    if not scenes:
        scene_list, dn_offset = default_scenes(shared), 0.0  # the shared crops: DN = refl x 1e4
    _check_out(out, overwrite, [*files, *scene_list])
    report = evaluate_panel(dict(zip(names, files, strict=True)), scene_list, out,
                            overwrite=overwrite, conv=conv, dn_offset=dn_offset)
    click.echo(f"report: {report}")


@evaluate.command("bands", short_help="The 20 m panel: the 20 m bands on held-out places.")
@click.option("--weights-20m", "weights", multiple=True, type=click.Path(path_type=Path),
              help="Guided 20 m model weights (repeatable; NAME=FILE sets the column name) "
                   "[default: none, the baselines only].")
@click.option("--shared", type=click.Path(path_type=Path), default=Path("../shared/data"),
              show_default=True, help="Where the held-out multi-resolution scenes are "
                                      "(sentinel2/).")
@_scoring_opts
@overwrite_opt("Replace an existing, non-empty report folder.")
@output_opt("Report folder.", "out")
@handle_errors
def bands(weights: tuple[Path, ...], shared: Path, data_range: float, crop: int | None,
          overwrite: bool, out: Path) -> None:
    """The 20 m panel: B05 B06 B07 B8A B11 B12 by Wald at x2 and x4 on the held-out places.

    Per place and band PSNR, SSIM and RMSE, the ten-band spectral angle, SWIR on its own
    row, against bicubic and the guided high-pass baseline; the worst place; the models'
    Nyquist-line ratios on the native scenes (docs/evaluation.md).

    \b
    s2sr evaluate bands [--weights-20m M.safetensors ...] [--shared ../shared/data] -o REPORT
    """
    setup_logging(False)
    conv = _conventions(data_range, crop)
    if not (shared / "sentinel2").is_dir():
        raise InputNotFoundError(f"no sentinel2/ folder under --shared {shared}: pass "
                                 "--shared DIR, the shared data folder (../shared/data)")
    names, files = _named(weights, "--weights-20m")
    _check_out(out, overwrite, [*files, shared])
    from s2sr.evaluation.panel20_report import evaluate_bands

    report = evaluate_bands(shared, out, dict(zip(names, files, strict=True)),
                            overwrite=overwrite, conv=conv)
    click.echo(f"report: {report}")


def _conventions(data_range: float, crop: int | None) -> Conventions:
    """The checked ``--data-range`` and ``--crop`` as :class:`Conventions`."""
    if not (math.isfinite(data_range) and data_range > 0):
        raise UsageError(f"--data-range must be a positive number, got {data_range:g}: use "
                         "1.0 for reflectance")
    if crop is not None and crop < 0:
        raise UsageError(f"--crop must be 0 or more output pixels, got {crop}: leave it out "
                         "to crop the scale")
    from s2sr.losses.metrics import Conventions as Conv

    return Conv(data_range=data_range, crop=crop)


def _exist(paths: Sequence[Path]) -> None:
    for path in paths:
        if not Path(path).exists():
            raise InputNotFoundError(f"{path} does not exist: check the path")


def _check_out(out: Path, overwrite: bool, inputs: Sequence[Path]) -> None:
    """The report folder is checked before any model or data is loaded."""
    from s2sr.io.outputs import check_output_dir

    check_output_dir(out, overwrite, list(inputs))


def _kinds(kinds: str | None) -> list[str] | None:
    if kinds is None:
        return None
    names = [k.strip() for k in kinds.split(",")]
    if not all(names):
        raise UsageError(f"--kinds {kinds!r} has an empty entry: give pair kinds separated by "
                         "commas, e.g. SE20>SE10,RE10>RE5")
    return list(dict.fromkeys(names))


def _named(weights: tuple[Path, ...], flag: str = "--weights"
           ) -> tuple[list[str], list[Path]]:
    names: list[str] = []
    files: list[Path] = []
    for w in weights:
        text = str(w)
        if "=" in text and not Path(text).exists():
            name, _, file = text.partition("=")
            name = name.strip()
            if not name:
                raise UsageError(f"{flag} {text!r} has an empty name: write NAME=FILE, "
                                 "e.g. edsr=model.safetensors")
            if not file:
                raise UsageError(f"{flag} {text!r} has no file: write NAME=FILE")
        else:
            name, file = Path(text).stem, text
        if not Path(file).exists():
            raise InputNotFoundError(f"weights file {file} does not exist: check the path")
        if Path(file).is_dir():
            raise UsageError(f"weights {file} is a folder: give a .safetensors file")
        if name in names:
            raise UsageError(f"two {flag} are named {name!r}: name them apart with "
                             "NAME=FILE, e.g. a={file}")
        names.append(name)
        files.append(Path(file))
    return names, files
