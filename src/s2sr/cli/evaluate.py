"""``s2sr evaluate``: Table 2-style reports, scene evaluation and consistency checks."""

from __future__ import annotations

import math
from pathlib import Path

import click

from s2sr.cli.common import handle_errors, setup_logging
from s2sr.cli.options import output_opt, overwrite_opt
from s2sr.core.errors import InputNotFoundError, UsageError

# Library modules are imported inside the commands: they pull in torch, rasterio and numpy
# (seconds), which ``s2sr --help`` and shell completion should not wait for.

#: The splits ``s2sr pairs`` writes.
SPLITS = ("train", "val", "test")


@click.command()
@click.option("--weights", multiple=True, type=click.Path(path_type=Path),
              help="Model weights (repeatable; NAME=FILE sets the row name).")
@click.option("--dataset", "datasets", multiple=True, type=click.Path(path_type=Path),
              help="Dataset folder made by s2sr pairs (repeatable).")
@click.option("--split", default="test", show_default=True,
              help="Which split of the datasets: train, val or test.")
@click.option("--kinds", default=None, help="Pair kinds, comma-separated (e.g. SE10>RE5,RE10>RE5).")
@click.option("--lr", "lr", type=click.Path(path_type=Path), default=None,
              help="Scene form: the low-resolution scene (or, with --consistency, the input "
                   "of a predict output).")
@click.option("--hr", "hr", type=click.Path(path_type=Path), default=None,
              help="Scene form: the co-registered reference, --scale times larger.")
@click.option("--consistency", "consistency_of", type=click.Path(path_type=Path), default=None,
              help="Check a predict OUTPUT against its input (--lr); no reference needed.")
@click.option("--panel", is_flag=True,
              help="Robustness panel: the models on held-out real 10 m scenes degraded in "
                   "five ways (block mean; MTF 0.2, 0.3, 0.45, 0.6) at their scale, against "
                   "bicubic, Lanczos and an unsharp mask, per place with the worst place, "
                   "artefact scores and Nyquist-line ratios.")
@click.option("--scene", "scenes", multiple=True, type=click.Path(path_type=Path),
              help="Panel: a real 10 m scene playing the truth (repeatable) [default: the "
                   "test places under --shared: OSCD abudhabi, rio, hongkong, milano and "
                   "boston_roads].")
@click.option("--shared", type=click.Path(path_type=Path), default=Path("../shared/data"),
              show_default=True, help="Panel: where the default scenes are (sentinel2/).")
@click.option("--data-range", type=float, default=1.0, show_default=True,
              help="PSNR/SSIM data range, in reflectance (a positive number).")
@click.option("--crop", type=int, default=None,
              help="Border crop in output pixels, >= 0 [default: the scale].")
@click.option("--no-figures", is_flag=True, help="Write no comparison figures.")
@overwrite_opt("Replace an existing, non-empty report folder.")
@output_opt("Report folder.", "out")
@handle_errors
def evaluate(weights: tuple[Path, ...], datasets: tuple[Path, ...], split: str,
             kinds: str | None, lr: Path | None, hr: Path | None,
             consistency_of: Path | None, panel: bool, scenes: tuple[Path, ...],
             shared: Path, data_range: float, crop: int | None,
             no_figures: bool, overwrite: bool, out: Path) -> None:
    """PSNR/SSIM of models against bicubic, Lanczos and unsharp mask (Table 2 layout).

    \b
    s2sr evaluate --weights A.safetensors [--weights B ...] --dataset DS -o REPORT
    s2sr evaluate --weights A.safetensors --lr LR.tif --hr HR.tif -o REPORT
    s2sr evaluate --consistency OUTPUT.tif --lr INPUT.tif -o REPORT
    s2sr evaluate --panel --weights A.safetensors [--weights B ...] [--scene S.tif ...] -o REPORT
    """
    setup_logging(False)
    from s2sr.evaluation.metrics import Conventions
    from s2sr.evaluation.report import evaluate_consistency, evaluate_models, evaluate_scene
    from s2sr.io.outputs import check_output_dir

    # Options first, then inputs, then the output: all before any model or data is loaded.
    if not (math.isfinite(data_range) and data_range > 0):
        raise UsageError(f"--data-range must be a positive number, got {data_range:g}: use "
                         "1.0 for reflectance")
    if crop is not None and crop < 0:
        raise UsageError(f"--crop must be 0 or more output pixels, got {crop}: leave it out "
                         "to crop the scale")
    if split not in SPLITS:
        raise UsageError(f"--split {split!r} is not a split: use one of {', '.join(SPLITS)}")
    kind_list = _kinds(kinds)
    if scenes and not panel:
        raise UsageError("--scene is for the robustness panel: add --panel")
    if panel:
        others = [name for name, given in (("--dataset", datasets), ("--lr", lr), ("--hr", hr),
                                           ("--consistency", consistency_of),
                                           ("--kinds", kinds)) if given]
        if others:
            raise UsageError(f"--panel takes --weights, --scene and -o: drop {others[0]}")
        if not weights:
            raise UsageError("--panel needs at least one --weights")
    for path in [*datasets, *scenes, *(p for p in (lr, hr, consistency_of) if p)]:
        if not Path(path).exists():
            raise InputNotFoundError(f"{path} does not exist: check the path")
    names, files = _named(weights)
    scene_list: list[Path] = list(scenes)
    dn_offset: float | None = None  # user scenes: detected
    if panel and not scenes:
        from s2sr.evaluation.panel import default_scenes

        scene_list, dn_offset = default_scenes(shared), 0.0  # the shared crops: DN = refl x 1e4
    check_output_dir(out, overwrite, [*datasets, lr, hr, consistency_of, *files, *scene_list])
    conv = Conventions(data_range=data_range, crop=crop)
    if panel:
        from s2sr.evaluation.panel import evaluate_panel

        report = evaluate_panel(dict(zip(names, files, strict=True)), scene_list, out,
                                overwrite=overwrite, conv=conv, dn_offset=dn_offset)
    elif consistency_of is not None:
        if lr is None:
            raise UsageError("--consistency needs --lr, the input the output was made from")
        if hr is not None or weights or datasets:
            raise UsageError("--consistency takes only --lr (the input) and -o: drop "
                             "--hr, --weights and --dataset")
        report = evaluate_consistency(consistency_of, lr, out, overwrite=overwrite)
    elif lr is not None or hr is not None:
        if lr is None or hr is None or len(weights) != 1:
            raise UsageError("the scene form needs --lr, --hr and exactly one --weights")
        if datasets:
            raise UsageError("give either --dataset or --lr/--hr, not both")
        report = evaluate_scene(files[0], lr, hr, out, conv=conv, name=names[0],
                                figures=not no_figures, overwrite=overwrite)
    else:
        if not weights or not datasets:
            raise UsageError("give --weights and --dataset (or --lr/--hr, or --consistency)")
        report = evaluate_models(dict(zip(names, files, strict=True)), datasets, out,
                                 kinds=kind_list, split=split, conv=conv,
                                 figures=not no_figures, overwrite=overwrite)
    click.echo(f"report: {report}")


def _kinds(kinds: str | None) -> list[str] | None:
    if kinds is None:
        return None
    names = [k.strip() for k in kinds.split(",")]
    if not all(names):
        raise UsageError(f"--kinds {kinds!r} has an empty entry: give pair kinds separated by "
                         "commas, e.g. SE20>SE10,RE10>RE5")
    return list(dict.fromkeys(names))


def _named(weights: tuple[Path, ...]) -> tuple[list[str], list[Path]]:
    names: list[str] = []
    files: list[Path] = []
    for w in weights:
        text = str(w)
        if "=" in text and not Path(text).exists():
            name, _, file = text.partition("=")
            name = name.strip()
            if not name:
                raise UsageError(f"--weights {text!r} has an empty name: write NAME=FILE, "
                                 "e.g. edsr=model.safetensors")
            if not file:
                raise UsageError(f"--weights {text!r} has no file: write NAME=FILE")
        else:
            name, file = Path(text).stem, text
        if not Path(file).exists():
            raise InputNotFoundError(f"weights file {file} does not exist: check the path")
        if Path(file).is_dir():
            raise UsageError(f"weights {file} is a folder: give a .safetensors file")
        if name in names:
            raise UsageError(f"two --weights are named {name!r}: name them apart with "
                             "NAME=FILE, e.g. a={file}")
        names.append(name)
        files.append(Path(file))
    return names, files
