"""The review server over HTTP: its refusals (traversal, foreign Host/Origin, missing token,
state-changing GETs), decisions from many clients at once, and the command line."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from s2sr.data import PairStore
from s2sr.review.app import create_app
from s2sr.review.catalog import Catalog
from s2sr.review.security import cookie_name
from s2sr.review.server import ReviewServer
from s2sr.review.thumbs import Thumbnails
from support.review import decisions, login, raw

PORT = 8123
TOKEN = "t" * 43
BASE = f"http://127.0.0.1:{PORT}"


@pytest.fixture
def client(generated: Path) -> TestClient:
    """The app in-process (Starlette's TestClient), logged in with the cookie."""
    cat = Catalog(generated)
    app = create_app(cat, Thumbnails(cat), TOKEN, PORT)
    c = TestClient(app, base_url=BASE)
    c.cookies.set(cookie_name(PORT), TOKEN)
    return c


def test_the_page_needs_the_token(server: ReviewServer) -> None:
    status, body = raw(server, "GET", "/")
    assert status == 403 and b"open the URL" in body
    assert raw(server, "GET", "/?token=wrong")[0] == 403
    assert raw(server, "GET", "/api/patches")[0] == 403
    assert raw(server, "GET", "/api/options", {"Cookie": f"{cookie_name(server.port)}=x"}
               )[0] == 403
    cookie = login(server)
    status, body = raw(server, "GET", "/", cookie)
    assert status == 200 and server.token.encode() in body and b"review.js" in body
    status, body = raw(server, "GET", "/api/patches?limit=3", cookie)
    assert status == 200 and len(json.loads(body)["rows"]) == 3


def test_foreign_host_and_origin_are_refused(server: ReviewServer) -> None:
    cookie = login(server)
    ok = raw(server, "GET", "/api/options", cookie)
    assert ok[0] == 200
    # DNS rebinding: the browser sends the attacker's host name
    for host in ("evil.example", f"evil.example:{server.port}", "127.0.0.1",
                 f"127.0.0.1:{server.port + 1}", f"localhost.evil:{server.port}"):
        status, body = raw(server, "GET", "/api/options", {**cookie, "Host": host})
        assert status == 421, host
        assert b"not this server's" in body
    for origin in ("http://evil.example", f"http://127.0.0.1:{server.port + 1}", "null",
                   f"https://127.0.0.1:{server.port}"):
        assert raw(server, "GET", "/api/options", {**cookie, "Origin": origin})[0] == 403
    assert raw(server, "GET", "/api/options",
               {**cookie, "Origin": f"http://localhost:{server.port}"})[0] == 200
    assert raw(server, "GET", "/api/options", {**cookie, "Sec-Fetch-Site": "cross-site"}
               )[0] == 403


def test_decisions_need_post_and_the_token(server: ReviewServer, generated: Path) -> None:
    cookie = login(server)
    pid = PairStore(generated).rows()[0]["patch_id"]
    body = json.dumps({"id": pid, "status": "rejected"}).encode()
    json_type = {"Content-Type": "application/json"}
    # a GET that tries to change state: not allowed, nothing recorded
    assert raw(server, "GET", f"/api/decide?id={pid}&status=rejected", cookie)[0] == 405
    assert raw(server, "GET", f"/api/patch?id={pid}&status=rejected", cookie)[0] == 200
    # POST without the header token (what a cross-site form could send), or a wrong one
    assert raw(server, "POST", "/api/decide", {**cookie, **json_type}, body)[0] == 403
    assert raw(server, "POST", "/api/decide", {**cookie, **json_type,
                                               "X-S2SR-Token": "x" * 43}, body)[0] == 403
    # the header token without the cookie, a form body, and a cross-origin POST
    token = {"X-S2SR-Token": server.token}
    assert raw(server, "POST", "/api/decide", {**token, **json_type}, body)[0] == 403
    assert raw(server, "POST", "/api/decide", {**cookie, **token, "Content-Type":
                                               "application/x-www-form-urlencoded"},
               b"id=x&status=rejected")[0] == 415
    assert raw(server, "POST", "/api/decide", {**cookie, **token, **json_type,
                                               "Origin": "http://evil.example"}, body)[0] == 403
    assert decisions(generated) == {}
    status, reply = raw(server, "POST", "/api/decide", {**cookie, **token, **json_type}, body)
    assert status == 200 and json.loads(reply)["row"]["status"] == "rejected"
    assert decisions(generated)[pid]["status"] == "rejected"


def test_paths_outside_the_package_and_unknown_patches(server: ReviewServer) -> None:
    cookie = login(server)
    assert raw(server, "GET", "/static/review.js")[0] == 200
    for path in ("/static/../app.py", "/static/%2e%2e/app.py", "/static/..%2fapp.py",
                 "/static/%2e%2e%2f%2e%2e%2fdata/store.py", "/static//etc/passwd",
                 "/static/../../../../../../etc/passwd", "/manifest.json",
                 "/arrays/", "/../decisions.json"):
        status, body = raw(server, "GET", path, cookie)
        assert status == 404, path
        assert b"import" not in body and b"root:" not in body
    for pid in ("../manifest.json", "/etc/passwd", "gen000:0:0/../../x", ""):
        for route in ("/api/image?id=", "/api/patch?id="):
            assert raw(server, "GET", route + pid, cookie)[0] == 404, (route, pid)


def test_responses_forbid_framing(client: TestClient) -> None:
    response = client.get("/api/options")
    assert response.status_code == 200
    assert response.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"


def test_pages_images_and_bad_parameters(client: TestClient) -> None:
    page = client.get("/api/patches", params=[("site", "alps"), ("site", "city"),
                                              ("min_corr", "0.9"), ("sort", "corr"),
                                              ("desc", "1"), ("limit", "5")]).json()
    assert {r["site"] for r in page["rows"]} <= {"alps", "city"} and len(page["rows"]) == 5
    corr = [r["corr"] for r in page["rows"]]
    assert corr == sorted(corr, reverse=True) and min(corr) >= 0.9
    pid = page["rows"][0]["patch_id"]
    image = client.get("/api/image", params={"id": pid, "view": "diff", "mode": "nir"})
    assert image.status_code == 200 and image.content[:8] == b"\x89PNG\r\n\x1a\n"
    for params in ({"min_corr": "abc"}, {"sort": "lr_array"}, {"limit": "100000"},
                   {"offset": "-3"}, {"path": "/etc"}, {"min_corr": "nan"}):
        assert client.get("/api/patches", params=params).status_code == 400, params
    assert client.get("/api/image", params={"id": pid, "view": "../x"}).status_code == 400


def test_two_clients_deciding_at_once_lose_nothing(server: ReviewServer,
                                                    generated: Path) -> None:
    cookie = login(server)
    ids = [r["patch_id"] for r in PairStore(generated).rows()[:24]]
    headers = {**cookie, "X-S2SR-Token": server.token, "Content-Type": "application/json"}
    failures: list[int] = []

    def tab(part: list[str], status: str) -> None:
        for pid in part:
            code, _ = raw(server, "POST", "/api/decide", headers,
                          json.dumps({"id": pid, "status": status}).encode())
            if code != 200:
                failures.append(code)

    tabs = [threading.Thread(target=tab, args=(ids[k::2], s))
            for k, s in enumerate(("rejected", "accepted"))]
    # and a third writer at the same time: the command line, another process
    shell = subprocess.Popen([sys.executable, "-m", "s2sr.cli.main", "pairs", "decide",
                              str(generated), ids[-1], "rejected", "--note", "shell"])
    for t in tabs:
        t.start()
    for t in tabs:
        t.join()
    assert shell.wait(timeout=120) == 0
    assert failures == []
    saved = decisions(generated)
    assert {pid for pid in ids[:-1]} <= set(saved)
    assert all(saved[pid]["status"] == ("rejected", "accepted")[k % 2]
               for k, pid in enumerate(ids[:-1]))
    assert ids[-1] in saved


def test_command_line_prints_the_url_and_stops_on_ctrl_c(generated: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "s2sr.cli.main", "review", str(generated), "--no-browser"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "BROWSER": "false"})
    try:
        url = ""
        for _ in range(5):
            line = proc.stdout.readline() if proc.stdout else ""
            found = re.search(r"http://127\.0\.0\.1:(\d+)/\?token=([\w-]+)", line)
            if found:
                url = found.group(0)
                break
        assert url, "no URL printed"
        port = int(url.split(":")[2].split("/")[0])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", url.split(str(port), 1)[1])
        assert conn.getresponse().status == 303
        conn.close()
        # bound to the loopback address only
        out = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True,
                             text=True)
        if out.returncode == 0:  # the local address column: loopback, not 0.0.0.0 or *
            assert [line.split()[3] for line in out.stdout.splitlines()] == \
                [f"127.0.0.1:{port}"]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        assert "stopped" in (proc.stderr.read() if proc.stderr else "")
    finally:
        if proc.poll() is None:
            proc.kill()


def test_command_line_refuses_a_taken_port(generated: Path) -> None:
    with ReviewServer(generated) as srv:
        out = subprocess.run([sys.executable, "-m", "s2sr.cli.main", "review", str(generated),
                              "--no-browser", "--port", str(srv.port)],
                             capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert f"cannot listen on 127.0.0.1:{srv.port}" in out.stderr
