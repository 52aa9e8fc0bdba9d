"""The real Sentinel-2 sample that ships on PyPI: a BigEarthNet L2A patch.

The patch (120 x 120 px of 10 m bands, CDLA-Permissive-1.0) is in the example archive
inside the ``bigearthnet-common`` package, so it reaches any machine through the package
registry. The demo super-resolves it; int8 quantisation calibrates on it.
"""

from __future__ import annotations

import importlib.metadata
import tarfile
from pathlib import Path

from s2sr.core.errors import UsageError

SAMPLE_ARCHIVE = "bigearthnet_common/BigEarthNet-S2-Example.tar.bz2"
SAMPLE_PATCH = "S2A_MSIL2A_20170613T101031_87_48"


def sample_archive() -> Path:
    """Path of the BigEarthNet example archive inside the installed ``bigearthnet-common``."""
    try:
        dist = importlib.metadata.distribution("bigearthnet-common")
    except importlib.metadata.PackageNotFoundError:
        raise UsageError(
            "the demo sample comes with the package bigearthnet-common: "
            "pip install 's2sr[demo]' (or make demo)"
        ) from None
    path = Path(str(dist.locate_file(SAMPLE_ARCHIVE)))
    if not path.exists():
        raise UsageError(f"{path} is missing from bigearthnet-common: reinstall it")
    return path


def extract_sample(dest: Path, patch: str = SAMPLE_PATCH) -> Path:
    """Extract one patch's per-band GeoTIFFs into ``dest``; returns the patch folder."""
    folder = dest / patch
    if folder.is_dir() and any(folder.glob("*_B02.tif")):
        return folder
    with tarfile.open(sample_archive()) as tar:
        members = [m for m in tar.getmembers() if f"/{patch}/" in m.name and m.isfile()]
        if not members:
            raise UsageError(f"patch {patch} is not in the BigEarthNet example archive")
        folder.mkdir(parents=True, exist_ok=True)
        for member in members:
            member.name = Path(member.name).name
            tar.extract(member, folder, filter="data")
    return folder
