"""Datasets built for the review tests through the real degrade path, their manifest and
decisions read without s2sr, and raw requests to a running review server (the fixtures are
in tests/review/conftest.py)."""

from __future__ import annotations

import http.client
import json
from pathlib import Path
from typing import Any

import numpy as np

from s2sr.data import DegradeOptions, degrade_scene
from s2sr.review.server import ReviewServer
from support.rasters import texture, write_geotiff


def manifest_rows(dataset: Path) -> list[dict[str, Any]]:
    """The patch rows of ``manifest.json``, read without s2sr."""
    return json.loads((dataset / "manifest.json").read_text())["patches"]


def degrade_into(root: Path, dataset: Path, k: int, site: str, split: str) -> None:
    """Add the Wald pairs of synthetic scene ``k`` to ``dataset`` (the real build path)."""
    dn = np.rint(texture((96, 96), seed=40 + k) * 10000).astype(np.uint16)
    scene = write_geotiff(root / f"scene{k}.tif", dn)
    degrade_scene(scene, dataset, DegradeOptions(patch=12, split=split, site=site))


def rebuild(dataset: Path) -> None:
    """Build the ``built`` fixture's pair of site north again from its scene (the same
    pair id: its rows and arrays are replaced)."""
    pairs = json.loads((dataset / "manifest.json").read_text())["pairs"]
    scene = next(info["lr_scene"] for info in pairs.values() if info["site"] == "north")
    degrade_scene(Path(scene), dataset, DegradeOptions(patch=12, split="train", site="north"))


def raw(server: ReviewServer, method: str, path: str, headers: dict[str, str] | None = None,
        body: bytes | None = None) -> tuple[int, bytes]:
    """One request over a real socket, the path sent exactly as given."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
    for k, v in {"Host": f"127.0.0.1:{server.port}", **(headers or {})}.items():
        conn.putheader(k, v)
    if body is not None:
        conn.putheader("Content-Length", str(len(body)))
    conn.endheaders(body)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, data


def login(server: ReviewServer) -> dict[str, str]:
    """Open the printed URL: the cookie it sets, as request headers."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request("GET", f"/?token={server.token}")
    response = conn.getresponse()
    assert response.status == 303 and response.getheader("location") == "/"
    cookie = response.getheader("set-cookie")
    assert cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    conn.close()
    return {"Cookie": cookie.split(";")[0]}


def decisions(dataset: Path) -> dict[str, dict[str, str]]:
    """The manual decisions file of a dataset, read without s2sr (empty if none)."""
    path = dataset / "decisions.json"
    return json.loads(path.read_text()) if path.exists() else {}
