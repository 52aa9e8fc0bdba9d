"""``s2sr evaluate``: Table 2-style reports, scene evaluation and consistency checks."""

from __future__ import annotations

from pathlib import Path

import click

from s2sr.cli.common import handle_errors, setup_logging


@click.command()
@click.option("--weights", multiple=True, type=click.Path(path_type=Path),
              help="Model weights (repeatable; NAME=FILE sets the row name).")
@click.option("--dataset", "datasets", multiple=True, type=click.Path(path_type=Path),
              help="Dataset folder made by s2sr pairs (repeatable).")
@click.option("--split", default="test", show_default=True)
@click.option("--kinds", default=None, help="Pair kinds, comma-separated (e.g. SE10>RE5,RE10>RE5).")
@click.option("--lr", "lr", type=click.Path(path_type=Path), default=None,
              help="Scene form: the low-resolution scene (or, with --consistency, the input "
                   "of a predict output).")
@click.option("--hr", "hr", type=click.Path(path_type=Path), default=None,
              help="Scene form: the co-registered reference, --scale times larger.")
@click.option("--consistency", "consistency_of", type=click.Path(path_type=Path), default=None,
              help="Check a predict OUTPUT against its input (--lr); no reference needed.")
@click.option("--data-range", type=click.FloatRange(min=0, min_open=True), default=1.0,
              show_default=True, help="PSNR/SSIM data range, in reflectance.")
@click.option("--crop", type=click.IntRange(min=0), default=None,
              help="Border crop in output pixels [default: the scale].")
@click.option("--no-figures", is_flag=True)
@click.option("-o", "--output", "out", required=True, type=click.Path(path_type=Path),
              help="Report folder.")
@handle_errors
def evaluate(weights: tuple[Path, ...], datasets: tuple[Path, ...], split: str,
             kinds: str | None, lr: Path | None, hr: Path | None,
             consistency_of: Path | None, data_range: float, crop: int | None,
             no_figures: bool, out: Path) -> None:
    """PSNR/SSIM of models against bicubic and Lanczos (the study's Table 2 layout).

    \b
    s2sr evaluate --weights A.safetensors [--weights B ...] --dataset DS -o REPORT
    s2sr evaluate --weights A.safetensors --lr LR.tif --hr HR.tif -o REPORT
    s2sr evaluate --consistency OUTPUT.tif --lr INPUT.tif -o REPORT
    """
    setup_logging(False)
    from s2sr.errors import InputNotFoundError, UsageError
    from s2sr.evaluation.metrics import Conventions
    from s2sr.evaluation.report import evaluate_consistency, evaluate_models, evaluate_scene

    for path in [*datasets, *(p for p in (lr, hr, consistency_of) if p)]:
        if not Path(path).exists():
            raise InputNotFoundError(f"{path} does not exist: check the path")
    conv = Conventions(data_range=data_range, crop=crop)
    if consistency_of is not None:
        if lr is None:
            raise UsageError("--consistency needs --lr, the input the output was made from")
        report = evaluate_consistency(consistency_of, lr, out)
    elif lr is not None or hr is not None:
        if lr is None or hr is None or len(weights) != 1:
            raise UsageError("the scene form needs --lr, --hr and exactly one --weights")
        report = evaluate_scene(_named(weights)[1][0], lr, hr, out, conv=conv)
    else:
        if not weights or not datasets:
            raise UsageError("give --weights and --dataset (or --lr/--hr, or --consistency)")
        names, files = _named(weights)
        report = evaluate_models(dict(zip(names, files, strict=True)), datasets, out,
                                 kinds=kinds.split(",") if kinds else None, split=split,
                                 conv=conv, figures=not no_figures)
    click.echo(f"report: {report}")


def _named(weights: tuple[Path, ...]) -> tuple[list[str], list[Path]]:
    names, files = [], []
    for w in weights:
        text = str(w)
        if "=" in text and not Path(text).exists():
            name, _, file = text.partition("=")
        else:
            name, file = Path(text).stem, text
        if not Path(file).exists():
            from s2sr.errors import InputNotFoundError

            raise InputNotFoundError(f"weights file {file} does not exist: check the path")
        names.append(name)
        files.append(Path(file))
    return names, files
