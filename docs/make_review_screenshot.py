"""Make docs/img/review.png: the review page over a small real dataset, in headless chromium.

The dataset is made with ``s2sr pairs degrade`` (Wald pairs, 20 m -> 10 m) from two real
Sentinel-2 scenes in ``../shared/data/sentinel2`` plus 300 generated patches
(``tests/support/generated.py``, whose varied statistics fill the histograms); the page is
filtered to the first site (Boadella), one patch rejected by click, and photographed.

Usage: python docs/make_review_screenshot.py [-o docs/img/review.png]
Needs Debian's chromium and Playwright for Python (the dev extra).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

from s2sr.data import DegradeOptions, degrade_scene
from s2sr.review.server import ReviewServer

# the generator of the review tests' dataset (a test fixture: it is not in the wheel)
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from support.generated import generate_dataset

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "sentinel2"
SCENES = (("boadella_20200113_L2A.tif", "boadella", "train"),
          ("boston_roads_L2A.tif", "boston", "val"))


def make_dataset(root: Path) -> None:
    # Wald pairs agree by construction (corr 1, shift 0): generated patches beside them
    # give the histograms something to show
    generate_dataset(root, 300, patch=24, pairs=3)
    if all((SHARED / name).exists() for name, _, _ in SCENES):
        for name, site, split in SCENES:
            degrade_scene(SHARED / name, root, DegradeOptions(
                patch=24, site=site, split=split, resolution=10.0, levels=(20.0, 10.0)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path,
                        default=Path(__file__).resolve().parent / "img" / "review.png")
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("no chromium: apt-get install chromium")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "dataset"
        make_dataset(root)
        with ReviewServer(root) as server, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium)
            page = browser.new_context(bypass_csp=True, viewport={"width": 1280, "height": 860}
                                       ).new_page()
            page.goto(server.url)
            page.wait_for_function("document.body.dataset.loaded")
            site = "boadella" if (SHARED / SCENES[0][0]).exists() else "alps"
            page.select_option("select[name=site]", site)
            page.wait_for_timeout(500)
            page.locator(".card").nth(2).locator("button[data-decide=rejected]").click()
            page.wait_for_function("document.body.dataset.decided === '1'")
            page.wait_for_function("Array.from(document.querySelectorAll('.card img'))"
                                   ".filter(i => i.getBoundingClientRect().top < 860)"
                                   ".every(i => i.complete && i.naturalWidth > 0)")
            args.output.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.output))
            browser.close()
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
