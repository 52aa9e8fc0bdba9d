"""Benchmark of ``s2sr review`` on a large dataset (issue #14).

Generates a dataset of N patches (default 20,000; ``tests/support/generated.py``: written with
the store's own writer and commit), serves it with :class:`s2sr.review.ReviewServer` on
127.0.0.1 and measures over real HTTP:

* opening the dataset (manifest read, columns built);
* API latency (median and max of R requests): the options, the first page, a filtered and
  sorted page, a deep page, a page of 200;
* thumbnails: a cold render (arrays memory-mapped, bicubic, PNG) and a cached one;
* a decision (POST, through ``PairStore.decide``: lock, decisions.json, manifest.csv);
* with Debian's chromium and Playwright: the page load (navigation to the first 48 cards'
  144 images decoded) and a filter change (select to the grid redrawn with its images).

Usage: python benchmarks/bench_review.py [--patches 20000] [--repeat 20] [--dataset DIR]
       [--no-browser]      (--patches 600 --repeat 3 for a smoke run)
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from s2sr.review.catalog import Catalog
from s2sr.review.server import ReviewServer

# the generator of the review tests' dataset (a test fixture: it is not in the wheel)
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from support.generated import generate_dataset


def timed(fn: Any, repeat: int) -> tuple[float, float]:
    """(median, max) of ``repeat`` calls, milliseconds."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - t))
    return statistics.median(times), max(times)


class Client:
    def __init__(self, server: ReviewServer) -> None:
        self.port = server.port
        conn = http.client.HTTPConnection("127.0.0.1", self.port)
        conn.request("GET", f"/?token={server.token}")
        response = conn.getresponse()
        response.read()
        self.cookie = str(response.getheader("set-cookie")).split(";")[0]
        self.token = server.token
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port)
        self.conn.connect()
        # no Nagle on the client: a browser's requests are not delayed by 40 ms either
        self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def get(self, path: str) -> bytes:
        self.conn.request("GET", path, headers={"Cookie": self.cookie})
        response = self.conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"{path}: {response.status} {body[:200]!r}")
        return body

    def post(self, path: str, data: dict[str, str]) -> bytes:
        self.conn.request("POST", path, body=json.dumps(data), headers={
            "Cookie": self.cookie, "X-S2SR-Token": self.token,
            "Content-Type": "application/json"})
        response = self.conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"{path}: {response.status} {body[:200]!r}")
        return body


def browser_figures(server: ReviewServer) -> dict[str, float]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        return {}
    from playwright.sync_api import sync_playwright

    images_ready = ("Array.from(document.querySelectorAll('.card img'))"
                    ".every(i => i.complete && i.naturalWidth > 0)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium)
        page = browser.new_context(bypass_csp=True, viewport={"width": 1400, "height": 1000}
                                   ).new_page()
        t = time.perf_counter()
        page.goto(server.url)
        page.wait_for_function("document.body.dataset.loaded")
        first = time.perf_counter() - t
        page.evaluate("document.querySelectorAll('.card img').forEach("
                      "i => i.loading = 'eager')")
        page.wait_for_function(images_ready, timeout=120_000)
        full = time.perf_counter() - t
        stamp = page.evaluate("document.body.dataset.loaded")
        t = time.perf_counter()
        page.select_option("select[name=sort]", "ssim")
        page.wait_for_function("s => document.body.dataset.loaded !== s", arg=stamp)
        sort = time.perf_counter() - t
        browser.close()
    return {"page: grid shown (ms)": 1000 * first,
            "page: 48 cards, 144 images decoded (ms)": 1000 * full,
            "sort change: grid redrawn (ms)": 1000 * sort}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patches", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--dataset", type=Path, default=None,
                        help="use (or create) this dataset instead of a temporary one")
    parser.add_argument("--no-browser", action="store_true")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench_review_"))
    root = args.dataset or tmp / "ds"
    figures: dict[str, Any] = {"patches": args.patches}
    try:
        if not (root / "manifest.json").exists():
            t = time.perf_counter()
            generate_dataset(root, args.patches, pairs=max(1, args.patches // 1000))
            figures["generate dataset (s)"] = time.perf_counter() - t
        t = time.perf_counter()
        Catalog(root)
        figures["open dataset (ms)"] = 1000 * (time.perf_counter() - t)
        with ReviewServer(root) as server:
            client = Client(server)
            queries = {
                "options": "/api/options",
                "first page (48)": "/api/patches?limit=48",
                "filter + sort page": "/api/patches?site=alps&status=auto-accepted&min_corr="
                                      "0.8&max_shift=0.3&sort=ssim&desc=1&limit=48",
                "deep page": f"/api/patches?offset={max(0, args.patches - 100)}&limit=48",
                "page of 200": "/api/patches?limit=200&sort=residual",
            }
            for name, path in queries.items():
                med, top = timed(lambda p=path: client.get(p), args.repeat)
                figures[f"GET {name} (ms, median/max)"] = (med, top)
            rows = json.loads(client.get("/api/patches?limit=200"))["rows"]
            ids = iter(r["patch_id"] for r in rows)
            med, top = timed(lambda: client.get(
                f"/api/image?id={next(ids)}&view=diff&mode=true&size=thumb"),
                min(args.repeat, 60))
            figures["thumbnail cold (ms, median/max)"] = (med, top)
            pid = rows[0]["patch_id"]
            med, top = timed(lambda: client.get(
                f"/api/image?id={pid}&view=diff&mode=true&size=thumb"), args.repeat)
            figures["thumbnail cached (ms, median/max)"] = (med, top)
            statuses = iter(["rejected", "accepted", "auto"] * args.repeat)
            med, top = timed(lambda: client.post(
                "/api/decide", {"id": pid, "status": next(statuses)}), args.repeat)
            figures["decision POST (ms, median/max)"] = (med, top)
            if not args.no_browser:
                figures.update(browser_figures(server))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for key, value in figures.items():
        shown = " / ".join(f"{v:.1f}" for v in value) if isinstance(value, tuple) else (
            f"{value:.1f}" if isinstance(value, float) else str(value))
        print(f"{key:<45} {shown}")


if __name__ == "__main__":
    main()
