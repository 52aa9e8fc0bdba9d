"""Turn a finished run into a shipped model: ``python -m s2sr.training.release RUN DEST
[--overwrite]``.

Takes the run's best-on-validation weights (``best.safetensors``; the test scenes were
never seen) and writes them as float16 safetensors, half the size, for the package. A run
without them (none selected: a guided run whose every epoch failed its artefact gate, or a
run stopped before its first validation) is refused: the last epoch is never released in
their place.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from s2sr.core.errors import S2SRError, UsageError, report_error
from s2sr.core.files import make_parents, remove_made
from s2sr.io.outputs import check_output_file
from s2sr.models import load_model, save_model


def release(run_dir: str | Path, dest: str | Path, *, overwrite: bool = False) -> Path:
    """Write ``run_dir``'s best weights to ``dest`` in float16 (a missing folder above it
    is made; an existing file is replaced only with ``overwrite``).

    Raises:
        UsageError: ``run_dir`` holds no ``best.safetensors``, or ``dest`` cannot be
            written (a folder, a device, a path under a file, the run's own weights).
        OutputExistsError: ``dest`` exists and ``overwrite`` is not given.
    """
    source = Path(run_dir) / "best.safetensors"
    if not source.is_file():
        raise UsageError(f"{run_dir} has no best.safetensors (no epoch was selected; see its "
                         "metrics.csv): finish or rerun the training before releasing it")
    out = check_output_file(dest, overwrite, (source,), create_parent=True)
    model = load_model(source)
    made = make_parents(out)
    try:
        return save_model(model, out, half=True)
    except OSError as err:
        remove_made(made)
        raise UsageError(f"cannot write {out} ({err.strerror or err}): choose another "
                         "output path") from None


def main(argv: list[str] | None = None) -> int:
    """Command line: ``RUN DEST``; exit 2 on usage errors, 1 on bad weights, one line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="the run folder")
    parser.add_argument("dest", type=Path, help="the float16 weights file to write")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing DEST")
    args = parser.parse_args(argv)
    try:
        print(release(args.run, args.dest, overwrite=args.overwrite))
    except S2SRError as err:
        return report_error(err)
    return 0


if __name__ == "__main__":
    sys.exit(main())
