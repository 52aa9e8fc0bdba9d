"""End to end in a real headless browser: Debian's chromium driven by Playwright.

Open the page, filter, reject one patch by click and another by keyboard, reload and see
both kept; then the manifest, ``s2sr pairs info`` and training's datasets agree. Skipped,
with the reason, only where no browser can be had (``make test`` installs chromium with
apt where it can).
"""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from s2sr.data import PairDataset, PairStore
from s2sr.review.server import ReviewServer
from s2sr.training.config import load_config
from s2sr.training.data import datasets
from support.cli import write_config

try:
    from playwright.sync_api import Page, expect, sync_playwright
except ImportError:  # pragma: no cover - the dev extra installs it
    sync_playwright = None

CHROMIUM = next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser"))
                 if p), None)
pytestmark = [
    pytest.mark.skipif(sync_playwright is None, reason="Playwright for Python is not "
                       "installed (pip install -e '.[dev]' installs it)"),
    pytest.mark.skipif(CHROMIUM is None, reason="no Chromium browser on this machine "
                       "(Debian: apt-get install chromium; make test does it where apt "
                       "and root are available)"),
    pytest.mark.slow,
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_playwright() as p:  # type: ignore[misc]
        # Debian's chromium, not a Playwright download; as root it needs --no-sandbox,
        # which Playwright adds when chromium_sandbox is False (its default)
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Page]:
    # bypass_csp: Playwright's waits evaluate script text, which the page's CSP forbids
    context = browser.new_context(bypass_csp=True, viewport={"width": 1300, "height": 900})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda err: errors.append(str(err)))
    yield pg
    context.close()
    assert errors == []


def wait_loaded(page: Page, previous: str | None = None) -> str:
    """Wait for the grid to (re)load; returns its load stamp."""
    page.wait_for_function("prev => document.body.dataset.loaded && "
                           "document.body.dataset.loaded !== prev", arg=previous or "")
    return page.evaluate("document.body.dataset.loaded")


def card_ids(page: Page) -> list[str]:
    return page.eval_on_selector_all(".card", "cards => cards.map(c => c.dataset.id)")


def test_review_end_to_end(page: Page, built: Path, tmp_path: Path) -> None:
    store = PairStore(built)
    south = {r["patch_id"] for r in store.rows() if r["site"] == "south"}
    with ReviewServer(built) as server:
        page.goto(server.url)
        stamp = wait_loaded(page)
        assert page.url == f"http://127.0.0.1:{server.port}/"  # the token left the URL
        expect(page.locator("#summary")).to_contain_text("32 of 32 patches")
        # filter: site south
        page.select_option("select[name=site]", "south")
        stamp = wait_loaded(page, stamp)
        expect(page.locator("#summary")).to_contain_text("16 of 32 patches")
        ids = card_ids(page)
        assert set(ids) == south
        # histograms drawn for every statistic, thresholds in the captions
        assert page.locator("#histograms canvas").count() == 6
        expect(page.locator("#histograms")).to_contain_text("corr (min 0.600)")
        # the thumbnails are real images
        page.wait_for_function("Array.from(document.querySelectorAll('.card img'))"
                               ".slice(0, 9).every(i => i.complete && i.naturalWidth > 0)")
        # reject the second patch by click on its button; the next one is selected
        page.locator(f'.card[data-id="{ids[1]}"] button[data-decide=rejected]').click()
        page.wait_for_function("document.body.dataset.decided === '1'")
        expect(page.locator(f'.card[data-id="{ids[1]}"] .badge')).to_have_text("rejected: manual")
        expect(page.locator(".card.selected")).to_have_attribute("data-id", ids[2])
        # move on by keyboard and reject with "r"
        page.keyboard.press("ArrowRight")
        expect(page.locator(".card.selected")).to_have_attribute("data-id", ids[3])
        page.keyboard.press("r")
        page.wait_for_function("document.body.dataset.decided === '2'")
        expect(page.locator(".card.selected")).to_have_attribute("data-id", ids[4])
        # accept the selected one with "a", go back and reset it to automatic with "u"
        page.keyboard.press("a")
        page.wait_for_function("document.body.dataset.decided === '3'")
        expect(page.locator(f'.card[data-id="{ids[4]}"] .badge')).to_have_text("accepted: manual")
        page.keyboard.press("ArrowLeft")
        page.keyboard.press("u")
        page.wait_for_function("document.body.dataset.decided === '4'")
        expect(page.locator(f'.card[data-id="{ids[4]}"] .badge')).to_have_text("auto-accepted")
        # the detail view: full-size images, statistics, a note
        page.locator(f'.card[data-id="{ids[5]}"] .imgs').dblclick()
        expect(page.locator("#detail")).to_be_visible()
        expect(page.locator("#detail-title")).to_have_text(ids[5])
        expect(page.locator("#detail-stats")).to_contain_text("ssim")
        page.wait_for_function("document.getElementById('d-hr').naturalWidth === 24")
        page.screenshot(path=str(tmp_path / "detail.png"))
        page.keyboard.press("Escape")
        expect(page.locator("#detail")).to_be_hidden()
        # NIR false colour changes the images
        before = page.locator(f'.card[data-id="{ids[0]}"] img[data-view=lr]').get_attribute("src")
        page.keyboard.press("n")
        stamp = wait_loaded(page, stamp)
        after = page.locator(f'.card[data-id="{ids[0]}"] img[data-view=lr]').get_attribute("src")
        assert before != after and "mode=nir" in (after or "")
        # reload: both rejections persisted
        page.reload()
        stamp = wait_loaded(page)
        page.select_option("select[name=status]", "rejected")
        stamp = wait_loaded(page, stamp)
        assert set(card_ids(page)) == {ids[1], ids[3]}
        expect(page.locator("#summary")).to_contain_text("2 of 32 patches")
        page.screenshot(path=str(tmp_path / "page.png"))

    shot = np.asarray(Image.open(io.BytesIO((tmp_path / "page.png").read_bytes())))
    assert shot.shape[:2] == (900, 1300) and shot.std() > 10  # not a blank page

    # the store, the command line and training agree
    rows = {r["patch_id"]: r for r in PairStore(built).rows()}
    assert rows[ids[1]]["status"] == rows[ids[3]]["status"] == "rejected"
    assert rows[ids[4]]["status"] == rows[ids[4]]["auto_status"]  # accepted then reset
    decisions = json.loads((built / "decisions.json").read_text())
    assert set(decisions) == {ids[1], ids[3]}
    info = subprocess.run([sys.executable, "-m", "s2sr.cli.main", "pairs", "info", str(built),
                           "--json"], capture_output=True, text=True, check=True)
    assert json.loads(info.stdout)["by_status"]["rejected"] == 2
    csv_text = (built / "manifest.csv").read_text()
    assert sum(line.startswith(ids[1]) and ",rejected," in line
               for line in csv_text.splitlines()) == 1
    kept = {r["patch_id"] for r in PairDataset(built).rows}
    assert ids[1] not in kept and ids[3] not in kept and ids[4] in kept
    cfg = load_config(write_config(tmp_path / "cfg.yaml", built))
    val = datasets(cfg, "val", None, False, 0)  # the south pair is the val split
    used = {val[k]["patch_id"] for k in range(len(val))}
    assert ids[1] not in used and ids[3] not in used and ids[0] in used


LONG = "S2B_MSIL2A_20230715T102559_N0509_R108_T32TQM_20230715T141603"


@pytest.fixture
def long_ids(tmp_path: Path) -> Path:
    """Two pairs whose scene names share their first 60 characters, so that their patch
    ids differ only at the end (the pair's hash and the patch's row:col)."""
    from s2sr.data import DegradeOptions, degrade_scene
    from support.rasters import texture, write_geotiff

    for k, site in enumerate(("alpha", "beta")):
        dn = np.rint(texture((96, 96), seed=60 + k) * 10000).astype(np.uint16)
        scene = write_geotiff(tmp_path / f"{LONG}_{k}.tif", dn)
        degrade_scene(scene, tmp_path / "ds", DegradeOptions(patch=12, site=site))
    return tmp_path / "ds"


def test_cards_are_labelled_and_ids_show_where_they_differ(page: Page, long_ids: Path
                                                           ) -> None:
    with ReviewServer(long_ids) as server:
        page.goto(server.url)
        wait_loaded(page)
        ids = card_ids(page)
        assert len(ids) == 32 and len({i[:80] for i in ids}) == 1  # a long common start
        # each of the three images says what it is, visibly
        for k in (0, len(ids) - 1):
            captions = page.locator(f'.card[data-id="{ids[k]}"] figcaption')
            expect(captions).to_have_text(["Sentinel-2", "reference", "difference"])
            for n in range(3):
                expect(captions.nth(n)).to_be_visible()
        # the part of an id that tells it apart is never cut; the full id is the title
        shown = page.eval_on_selector_all(".card", """cards => cards.map(c => {
            const id = c.querySelector('.id'), tail = c.querySelector('.id-tail');
            const box = tail.getBoundingClientRect(), card = c.getBoundingClientRect();
            return {id: c.dataset.id, title: id.title, tail: tail.textContent,
                    whole: tail.scrollWidth <= tail.clientWidth + 1 &&
                           box.right <= card.right && box.left >= card.left,
                    cut: id.querySelector('.id-head').scrollWidth >
                         id.querySelector('.id-head').clientWidth};
        })""")
        for card in shown:
            assert card["title"] == card["id"] and card["id"].endswith(card["tail"])
            assert card["whole"], card
            assert card["tail"].count(":") == 2 and len(card["tail"].split(":")[0]) == 8
        assert len({c["tail"] for c in shown}) == len(shown)  # every card tells itself apart
        assert any(c["cut"] for c in shown)  # the ids are long enough to need cutting here
        page.screenshot(path=str(long_ids.parent / "long_ids.png"))


def test_filters_survive_a_reload_and_a_shared_link(page: Page, long_ids: Path) -> None:
    with ReviewServer(long_ids) as server:
        page.goto(server.url)
        stamp = wait_loaded(page)
        page.select_option("select[name=site]", "beta")
        stamp = wait_loaded(page, stamp)
        page.select_option("select[name=sort]", "cloud")
        stamp = wait_loaded(page, stamp)
        page.check("input[name=desc]")
        stamp = wait_loaded(page, stamp)
        page.select_option("select[name=limit]", "24")
        stamp = wait_loaded(page, stamp)
        expect(page.locator("#summary")).to_contain_text("16 of 32 patches")
        ids = card_ids(page)
        assert len(ids) == 16
        url = page.url
        assert "site=beta" in url and "sort=cloud" in url and "desc=1" in url and \
            "limit=24" in url
        page.reload()
        wait_loaded(page)
        expect(page.locator("#summary")).to_contain_text("16 of 32 patches")
        assert page.locator("select[name=site]").input_value() == "beta"
        assert page.locator("select[name=sort]").input_value() == "cloud"
        assert page.locator("input[name=desc]").is_checked()
        assert card_ids(page) == ids
        # the link opened in another tab of the same browser (the cookie is there)
        other = page.context.new_page()
        other.goto(url)
        wait_loaded(other)
        assert card_ids(other) == ids
        other.close()


def test_a_decision_made_in_a_terminal_shows_without_an_action(page: Page, long_ids: Path
                                                                ) -> None:
    with ReviewServer(long_ids) as server:
        page.goto(server.url)
        wait_loaded(page)
        target = card_ids(page)[5]
        expect(page.locator(f'.card[data-id="{target}"] .badge')).to_have_text(
            re.compile("^auto-"))
        subprocess.run([sys.executable, "-m", "s2sr.cli.main", "pairs", "decide",
                        str(long_ids), target, "rejected", "--note", "from a terminal"],
                       check=True, capture_output=True)
        # nothing is touched on the page: it notices the change by itself
        page.wait_for_function("Number(document.body.dataset.refreshed || 0) >= 1")
        expect(page.locator(f'.card[data-id="{target}"] .badge')).to_have_text(
            "rejected: from a terminal")
        expect(page.locator("#summary")).to_contain_text("rejected 1")
        # a decision of the page itself does not make it reload
        page.locator(f'.card[data-id="{card_ids(page)[0]}"] button[data-decide=rejected]'
                     ).click()
        page.wait_for_function("document.body.dataset.decided === '1'")
        page.wait_for_timeout(5000)  # more than two polls
        assert page.evaluate("document.body.dataset.refreshed") == "1"
