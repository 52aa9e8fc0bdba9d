"""Comparison figures of ``s2sr evaluate`` (issue 19, new user: "figures are unreadable:
272x214 px, labels overlapping, titles cut off, the worst patch is stretched noise").

Each test failed on the former figures (Pillow's 10 px bitmap font, 2x zoom, a stretch
from the reference panel alone, the worst patch chosen among all patches)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from s2sr.evaluation.figures import (
    DPI,
    MAX_SIDE,
    MIN_CONTRAST,
    MIN_PANEL,
    MIN_PT,
    Panel,
    build_figure,
    comparison_figure,
    contrast,
    pick_patches,
)
from s2sr.evaluation.writer import ReportWriter, write_figures
from s2sr.inference.baselines import upsample
from s2sr.losses.metrics import Conventions
from support.rasters import texture

BANDS = ["B02", "B03", "B04", "B08"]


def _panels(side: int, seed: int = 0, names: tuple[str, str] = ("bicubic", "s2sr_x2")
            ) -> list[Panel]:
    """input (nearest), bicubic, a model, reference: real-looking reflectance patches."""
    ref = texture((side, side), seed=seed).astype(np.float64)
    lr = ref.reshape(4, side // 2, 2, side // 2, 2).mean(axis=(2, 4))
    return [Panel("input (nearest)", upsample(lr, 2, "nearest")),
            Panel(names[0], upsample(lr, 2, "bicubic"), "42.60 dB / 0.9564"),
            Panel(names[1], 0.5 * ref + 0.5 * upsample(lr, 2, "bicubic"), "46.10 dB / 0.9817"),
            Panel("reference", ref)]


class TestNewUserLegible:
    """New user: a figure a person would put in a report, legible at 100 %."""

    def test_small_patches_make_a_large_enough_figure(self, tmp_path: Path) -> None:
        """The reported case: 32 px patches gave a 272x214 px PNG."""
        path = tmp_path / "f.png"
        info = comparison_figure(_panels(32), BANDS, path, "s2sr_x2 on SE20>SE10: worst",
                                 subtitle="patch a:0:0", caption="A caption. " * 20)
        with Image.open(path) as img:
            assert img.size == (info.width, info.height)
            assert img.size[0] >= 4 * MIN_PANEL and img.size[1] >= 2 * MIN_PANEL
            assert img.info["dpi"][0] == pytest.approx(DPI, abs=0.1)
            assert img.info["s2sr:panels"] == "8"
        for x0, y0, x1, y1 in info.boxes.values():
            assert x1 - x0 >= MIN_PANEL and y1 - y0 >= MIN_PANEL
            assert (x1 - x0) % 32 == 0  # whole source pixels (an integer zoom)

    def test_large_patch_is_shown_as_its_most_contrasted_window(self) -> None:
        ref = np.full((4, 900, 700), 0.1)
        ref += np.random.default_rng(0).normal(0, 0.001, ref.shape)
        ref[:, 500:800, 100:400] = texture((300, 300), seed=3)  # the only structure
        panels = [Panel("bicubic", ref), Panel("reference", ref)]
        _, info = build_figure(panels, BANDS)
        assert info.window is not None
        r0, r1, c0, c1 = info.window
        assert (r1 - r0, c1 - c0) == (MAX_SIDE, MAX_SIDE)
        overlap = (min(r1, 800) - max(r0, 500)) * (min(c1, 400) - max(c0, 100))
        assert overlap >= MAX_SIDE ** 2 / 2  # mostly the structure, not the flat rest
        assert info.width < 3 * MAX_SIDE  # not the whole 900 px scene per panel

    @pytest.mark.parametrize("side", [24, 64, 200, 384])
    def test_no_text_overlaps_or_leaves_the_figure(self, side: int) -> None:
        """Titles, panel titles, row names and the caption: no two boxes overlap, none
        overlaps a panel or is cut by the figure's edge, and the type stays legible."""
        long_name = "my_model_trained_on_the_whole_world_" * 2 + "+consistency"
        panels = _panels(side, names=("bicubic", long_name))
        fig, info = build_figure(
            panels, BANDS, title="x" * 30 + " on SE20>SE10: worst gain over bicubic +0.22 dB",
            subtitle="patch " + "boadella-20200113-L2A__" * 6 + "3ec9d879:32:0",
            caption="Columns: the input enlarged by nearest neighbour, bicubic, the model. " * 4)
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
        boxes = [t.get_window_extent(renderer) for t in fig.texts]
        # title, subtitle, a title per panel, a name per row, the caption's lines
        assert len(boxes) >= 2 + len(panels) + 2 + 2
        for t in fig.texts:
            assert float(t.get_fontsize()) >= MIN_PT
        for a, b in itertools.combinations(boxes, 2):
            assert not a.overlaps(b), (a, b)
        for box in boxes:
            assert box.x0 >= 0 and box.y0 >= 0
            assert box.x1 <= info.width and box.y1 <= info.height
            for x0, y0, x1, y1 in info.boxes.values():  # panel boxes, y down from the top
                top, bottom = info.height - y0, info.height - y1
                assert box.x1 <= x0 or box.x0 >= x1 or box.y1 <= bottom or box.y0 >= top
        titles = [t.get_text() for t in fig.texts if "dB / " in t.get_text()]
        assert len(titles) == 2 and all("\n" not in t for t in titles)
        assert all(t.endswith(" dB / 0.9817") or t.endswith(" dB / 0.9564") for t in titles)

    def test_names_are_drawn_as_written(self) -> None:
        """A method named with TeX-like text ($...$) is text, not a formula (that could
        fail to parse and stop the report)."""
        panels = _panels(32, names=("bicubic", "$\\frac{a}{"))
        fig, _ = build_figure(panels, BANDS, title="$x^$")
        fig.canvas.draw()
        assert any(t.get_text().startswith("$\\frac{a}{") for t in fig.texts)


class TestNewUserOneStretch:
    """One stretch per patch and row, computed over all panels, applied to all."""

    def test_rendered_pixels_use_the_stretch_of_all_panels(self, tmp_path: Path) -> None:
        rng = np.random.default_rng(1)
        side = 48
        levels = [0.02, 0.08, 0.30, 0.12]  # a dark input, a bright model output...
        arrays = []
        for level in levels:
            a = level + rng.uniform(-0.01, 0.01, (4, side, side))
            a[:, 16:32, 16:32] = level  # a flat centre to read back
            arrays.append(a)
        # the reference alone spans 0.11-0.13: its own stretch would saturate the others
        panels = [Panel(f"p{k}", a) for k, a in enumerate(arrays)]
        path = tmp_path / "f.png"
        info = comparison_figure(panels, BANDS, path)
        pixels = np.asarray(Image.open(path).convert("RGB"))
        for row, idx in ((0, [2, 1, 0]), (1, [3, 2, 1])):
            pooled = np.concatenate([a[idx].reshape(3, -1) for a in arrays], axis=1)
            lo, hi = np.percentile(pooled, [2, 98], axis=1)
            stretch = info.stretches["true colour" if row == 0 else "NIR false colour"]
            np.testing.assert_allclose(stretch.lo, lo)
            np.testing.assert_allclose(stretch.hi, hi)
            for col, level in enumerate(levels):
                x0, y0, x1, y1 = info.boxes[(row, col)]
                got = pixels[(y0 + y1) // 2, (x0 + x1) // 2]
                want = np.clip((level - lo) / (hi - lo) * 255, 0, 255).astype(np.uint8)
                np.testing.assert_allclose(got.astype(int), want.astype(int), atol=1)
        # no panel is clipped to black or white alike: brightness keeps its order
        centre = [pixels[(b[1] + b[3]) // 2, (b[0] + b[2]) // 2].astype(int).sum()
                  for b in (info.boxes[(0, c)] for c in range(4))]
        assert list(np.argsort(centre)) == list(np.argsort(levels))
        assert len(set(centre)) == 4

    def test_flat_patch_is_not_stretched_into_noise(self, tmp_path: Path) -> None:
        flat = 0.05 + np.random.default_rng(2).normal(0, 0.002, (4, 32, 32))
        info = comparison_figure([Panel("a", flat), Panel("reference", flat)], BANDS,
                                 tmp_path / "f.png")
        stretch = info.stretches["true colour"]
        assert np.all(stretch.hi - stretch.lo >= 0.02 - 1e-12)
        pixels = np.asarray(Image.open(tmp_path / "f.png").convert("L"), dtype=float)
        x0, y0, x1, y1 = info.boxes[(0, 1)]
        assert pixels[y0:y1, x0:x1].std() < 40  # magnified noise would be ~60-70 grey levels


class TestNewUserWorstPatch:
    """The worst patch is chosen among patches with content, not flat noise."""

    def test_a_flat_patch_with_the_lowest_gain_is_not_the_worst_shown(self) -> None:
        rng = np.random.default_rng(3)
        refs = [texture((64, 64), seed=s) for s in range(5)]
        refs.append(0.04 + rng.normal(0, 0.003, (4, 64, 64)))  # water: flat plus noise
        contrasts = [contrast(r, BANDS) for r in refs]
        assert contrasts[-1] < MIN_CONTRAST <= min(contrasts[:-1])
        gains = [3.0, 2.5, 4.0, 1.5, 5.0, 0.2]  # the flat patch gains least
        picks, eligible = pick_patches(gains, contrasts)
        assert eligible == 5
        assert picks == {"best": 4, "median": 0, "worst": 3}

    def test_the_report_draws_the_worst_patch_with_content(self, tmp_path: Path) -> None:
        """Wiring: evaluate's figures pass the patches' contrast to the pick."""
        rng = np.random.default_rng(4)
        refs = [texture((64, 64), seed=s) for s in range(4)]
        refs.append(0.04 + rng.normal(0, 0.003, (4, 64, 64)))  # flat, the lowest gain
        items = [{"patch_id": f"p{k}\u00e9", "lr": torch.from_numpy(
            r.reshape(4, 32, 2, 32, 2).mean(axis=(2, 4))), "hr": torch.from_numpy(r)}
            for k, r in enumerate(refs)]
        report = ReportWriter(tmp_path, Conventions(crop=2), BANDS, "")
        preds: dict[str, list[np.ndarray]] = {"bicubic": [], "m": []}
        for k, it in enumerate(items):
            for method, psnr in (("bicubic", 40.0), ("m", 40.0 + [3, 2, 4, 1, 0.1][k])):
                report.add(method, "SE20>SE10", it["patch_id"], {"psnr": psnr, "ssim": 0.9})
                preds[method].append(refs[k])
        write_figures(report, "SE20>SE10", items, preds, ["m"], BANDS)
        shown = {}
        for name in report.figures:
            with Image.open(tmp_path / name) as img:
                shown[img.info["s2sr:pick"]] = img.info["s2sr:patch"]
        assert shown == {"best": "p2\u00e9", "median": "p0\u00e9", "worst": "p3\u00e9"}

    def test_all_flat_falls_back_to_all_and_nan_ranks_last(self) -> None:
        picks, eligible = pick_patches([1.0, float("nan"), 2.0], [0.0, 0.0, 0.0])
        assert eligible == 0 and picks == {"best": 2, "median": 0, "worst": 1}

    def test_contrast_ignores_nan_and_uses_the_shown_channels(self) -> None:
        ref = np.zeros((4, 10, 10))
        ref[3] = np.linspace(0, 1, 100).reshape(10, 10)  # contrast in B08 only
        assert contrast(ref, BANDS) == 0.0
        ref[:3, :, :5] = 0.3
        ref[:3, 0, 0] = np.nan
        assert contrast(ref, BANDS) == pytest.approx(0.3)
        assert contrast(np.full((4, 4, 4), np.nan), BANDS) == 0.0


def test_bands_without_true_colour_still_draw() -> None:
    """A model on the 20 m bands (no B02-B04): the first three bands as one row."""
    ref = texture((32, 32), bands=6, seed=5)
    _, info = build_figure([Panel("a", ref), Panel("reference", ref)],
                           ["B05", "B06", "B07", "B8A", "B11", "B12"])
    assert list(info.stretches) == ["B05 B06 B07"] and info.panels == 2
    _, info = build_figure([Panel("reference", ref[:1])], ["B05"])
    assert info.panels == 1
