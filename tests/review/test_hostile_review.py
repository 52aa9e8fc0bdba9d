"""Hostile requests against the review server (issue 19), over real sockets: path
traversal, DNS rebinding, foreign origins, wrong tokens, many idle connections, huge and
endless bodies, deeply nested JSON, notes a dataset cannot keep, and a dataset an older
s2sr broke with such a note."""

from __future__ import annotations

import http.client
import json
import os
import re
import resource
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from s2sr.data import PairStore
from s2sr.review.app import MAX_BODY
from s2sr.review.security import cookie_name
from s2sr.review.server import ReviewServer
from support.review import decisions, login, raw

JSON = {"Content-Type": "application/json"}


def _headers(server: ReviewServer) -> dict[str, str]:
    """What the page sends with a decision: cookie, token header, JSON."""
    return {**login(server), "X-S2SR-Token": server.token, **JSON}


def _first_id(dataset: Path) -> str:
    return PairStore(dataset).rows()[0]["patch_id"]


# --- security (held; kept by these tests) ----------------------------------------------------

TRAVERSALS = [
    "/static/../app.py", "/static/%2e%2e/app.py", "/static/%2E%2E/app.py",
    "/static/..%2fapp.py", "/static/..%2Fapp.py", "/static/..%5capp.py", "/static/..\\app.py",
    "/static/%252e%252e/app.py", "/static/.%2e/app.py", "/static/%c0%ae%c0%ae/app.py",
    "/static/%2e%2e%2f%2e%2e%2fdata/store.py", "/static//etc/passwd",
    "/static/../../../../../../etc/passwd", "/static/%00../app.py", "/static/review.js%00.py",
    "/%2e%2e/decisions.json", "/static/....//app.py", "/static/..;/app.py",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_traversal_encodings_are_refused(server: ReviewServer, path: str) -> None:
    status, body = raw(server, "GET", path, login(server))
    assert status in (400, 404), (path, status)
    assert b"import" not in body and b"root:" not in body and b"patch_id" not in body


HOSTS = ["evil.example", "127.0.0.1", "localhost", "LOCALHOST:{port}x", "127.0.0.1.:{port}",
         "localhost.:{port}", "127.1:{port}", "0.0.0.0:{port}", "[::1]:{port}",
         "127.0.0.1:{port}.evil.example", "evil.example:{port}", "127.0.0.1:{other}",
         "127.0.0.1:{port}@evil.example", "127.0.0.1:{port} evil", ""]


@pytest.mark.parametrize("host", HOSTS)
def test_host_rebinding_variants_are_refused(server: ReviewServer, host: str) -> None:
    value = host.format(port=server.port, other=server.port + 1)
    status, _ = raw(server, "GET", "/api/options", {**login(server), "Host": value})
    assert status in (400, 421), (value, status)


def test_a_second_host_header_is_refused(server: ReviewServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.putrequest("GET", "/api/options", skip_host=True)
    conn.putheader("Host", f"127.0.0.1:{server.port}")
    conn.putheader("Host", "evil.example")
    conn.putheader("Cookie", login(server)["Cookie"])
    conn.endheaders()
    assert conn.getresponse().status in (400, 421)
    conn.close()


ORIGINS = ["null", "http://evil.example", "https://127.0.0.1:{port}",
           "http://127.0.0.1:{other}", "http://127.0.0.1:{port}.evil.example",
           "http://localhost:{port}@evil.example", "file://", "http://127.0.0.1"]


@pytest.mark.parametrize("origin", ORIGINS)
def test_null_and_foreign_origins_are_refused(server: ReviewServer, generated: Path,
                                              origin: str) -> None:
    value = origin.format(port=server.port, other=server.port + 1)
    headers = _headers(server)
    assert raw(server, "GET", "/api/options", {**headers, "Origin": value})[0] == 403
    body = json.dumps({"id": _first_id(generated), "status": "rejected"}).encode()
    assert raw(server, "POST", "/api/decide", {**headers, "Origin": value}, body)[0] == 403
    assert decisions(generated) == {}


@pytest.mark.parametrize("site", ["cross-site", "same-site"])
def test_cross_site_fetches_are_refused(server: ReviewServer, generated: Path,
                                        site: str) -> None:
    headers = {**_headers(server), "Sec-Fetch-Site": site}
    assert raw(server, "GET", "/api/patches", headers)[0] == 403
    assert raw(server, "GET", f"/api/image?id={_first_id(generated)}", headers)[0] == 403
    body = json.dumps({"id": _first_id(generated), "status": "rejected"}).encode()
    assert raw(server, "POST", "/api/decide", headers, body)[0] == 403
    assert decisions(generated) == {}


def test_wrong_tokens_are_refused(server: ReviewServer, generated: Path) -> None:
    good = _headers(server)
    name = cookie_name(server.port)
    body = json.dumps({"id": _first_id(generated), "status": "rejected"}).encode()
    for cookie in ("", "x", server.token[:-1], server.token + "x", server.token.upper()):
        headers = {**good, "Cookie": f"{name}={cookie}"}
        assert raw(server, "GET", "/api/options", headers)[0] == 403, cookie
        assert raw(server, "POST", "/api/decide", headers, body)[0] == 403, cookie
    for header in ("", server.token[:-1], server.token + "x", "x" * len(server.token)):
        assert raw(server, "POST", "/api/decide", {**good, "X-S2SR-Token": header},
                   body)[0] == 403, header
    # another port's cookie, and the token in the query string of an API call
    other = {**good, "Cookie": f"{cookie_name(server.port + 1)}={server.token}"}
    assert raw(server, "GET", "/api/options", other)[0] == 403
    assert raw(server, "GET", f"/api/options?token={server.token}")[0] == 403
    assert raw(server, "GET", "/?token=" + server.token[:-1])[0] == 403
    assert decisions(generated) == {}


@pytest.fixture
def process_server(generated: Path) -> Iterator[tuple[int, str]]:
    """``s2sr review`` in its own process (its own file descriptors): (port, cookie)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the child inherits it
    proc = subprocess.Popen([sys.executable, "-m", "s2sr.cli.main", "review", str(generated),
                             "--no-browser"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "BROWSER": "false"})
    try:
        found = None
        for _ in range(5):
            line = proc.stdout.readline() if proc.stdout else ""
            found = re.search(r"http://127\.0\.0\.1:(\d+)/\?token=([\w-]+)", line) or found
            if found:
                break
        assert found, "no URL printed"
        port, token = int(found.group(1)), found.group(2)
        yield port, f"{cookie_name(port)}={token}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_answers_while_many_idle_connections_are_open(process_server: tuple[int, str]
                                                      ) -> None:
    port, cookie = process_server
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    n = min(1500, hard - 200)
    idle = []
    try:
        for _ in range(n):  # connected, never a byte sent (slowloris-like)
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=30))
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("GET", "/api/patches?limit=2", headers={"Cookie": cookie})
        response = conn.getresponse()
        assert response.status == 200 and len(json.loads(response.read())["rows"]) == 2
        conn.close()
    finally:
        for s in idle:
            s.close()
    assert n >= 500  # enough to mean something


# --- reliability: bodies, nesting, notes ------------------------------------------------------

def _start_post(server: ReviewServer, headers: dict[str, str]) -> socket.socket:
    """A POST to /api/decide with ``headers``, the body not yet sent."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    lines = ["POST /api/decide HTTP/1.1", f"Host: 127.0.0.1:{server.port}",
             *(f"{k}: {v}" for k, v in headers.items())]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    return sock


def _status(sock: socket.socket) -> int:
    """The status of the answer on ``sock`` (waits for it; the socket times out)."""
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return int(data.split(b" ", 2)[1])


def test_a_huge_declared_body_is_refused_before_it_is_read(server: ReviewServer,
                                                           generated: Path) -> None:
    # 1.5 GB declared; only the first kilobyte ever comes: the answer must not wait for
    # the rest (before: the server read on until the client gave up)
    sock = _start_post(server, {**_headers(server), "Content-Length": str(1_500_000_000)})
    sock.sendall(b'{"id": "' + b"x" * 1000)
    assert _status(sock) == 413
    sock.close()
    assert decisions(generated) == {}
    assert raw(server, "GET", "/api/options", login(server))[0] == 200


def test_an_endless_chunked_body_is_cut_off(server: ReviewServer, generated: Path) -> None:
    sock = _start_post(server, {**_headers(server), "Transfer-Encoding": "chunked"})
    chunk = b"x" * 4096
    sent, closed = 0, False
    try:  # a few times the limit, and no end
        for _ in range(4 * MAX_BODY // len(chunk)):
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    except OSError:  # a slow client: the server answered and closed before all was sent
        closed = True
    # answered without the end of the body (before: it waited for it, for ever); the
    # answer was sent before the close, so it is read even after a reset
    assert _status(sock) == 413
    sock.settimeout(5)
    try:  # and the connection is closed: the server reads no further
        while not closed and sent < 256 * 2**20:
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sent += len(chunk)
    except OSError:
        closed = True
    finally:
        sock.close()
    assert closed and sent < 64 * 2**20, "the server kept reading an endless body"
    assert decisions(generated) == {}
    assert raw(server, "GET", "/api/options", login(server))[0] == 200


def test_a_small_chunked_body_is_accepted(server: ReviewServer, generated: Path) -> None:
    pid = _first_id(generated)
    body = json.dumps({"id": pid, "status": "rejected", "note": "chunked"}).encode()
    sock = _start_post(server, {**_headers(server), "Transfer-Encoding": "chunked"})
    for part in (body[:10], body[10:]):
        sock.sendall(b"%x\r\n%s\r\n" % (len(part), part))
    sock.sendall(b"0\r\n\r\n")
    assert _status(sock) == 200
    sock.close()
    assert decisions(generated)[pid]["note"] == "chunked"


@pytest.mark.parametrize("body", [
    b"[" * 4000 + b"]" * 4000,
    b'{"id": ' + b"[" * 3000 + b"]" * 3000 + b', "status": "rejected"}',
    b'{"id": {"a": {"b": []}}, "status": "rejected"}',
    b'{"id": "x", "status": "rejected", "note": ' + b'{"a":' * 1000 + b"1" + b"}" * 1000 + b"}",
])
def test_deeply_nested_json_is_a_bad_request(server: ReviewServer, generated: Path,
                                             body: bytes) -> None:
    status, reply = raw(server, "POST", "/api/decide", _headers(server), body)
    assert status == 400 and b"nested" in reply, reply[:200]
    assert decisions(generated) == {}


def test_nesting_inside_strings_is_not_counted(server: ReviewServer, generated: Path) -> None:
    pid = _first_id(generated)
    body = json.dumps({"id": pid, "status": "rejected", "note": "[[[{{{ ]]] \\\" {"}).encode()
    assert raw(server, "POST", "/api/decide", _headers(server), body)[0] == 200
    assert decisions(generated)[pid]["note"] == "[[[{{{ ]]] \\\" {"


@pytest.mark.parametrize("note", ['"\\ud800"', '"caf\\udce9"', '"two\\nlines"', '"nul\\u0000"',
                                  '"\\u202eexe"', '"' + "x" * 501 + '"', "5", "null"])
def test_notes_a_dataset_cannot_keep_are_refused(server: ReviewServer, generated: Path,
                                                 note: str) -> None:
    pid = _first_id(generated)
    body = f'{{"id": "{pid}", "status": "rejected", "note": {note}}}'.encode()
    status, reply = raw(server, "POST", "/api/decide", _headers(server), body)
    assert status == 400 and b"note" in reply, reply
    assert decisions(generated) == {}
    # and the page keeps working
    assert raw(server, "GET", "/api/patches?limit=5", login(server))[0] == 200
    ok = json.dumps({"id": pid, "status": "accepted", "note": "fine"}).encode()
    assert raw(server, "POST", "/api/decide", _headers(server), ok)[0] == 200


def test_a_dataset_broken_by_an_older_version_is_served(generated: Path) -> None:
    pid = _first_id(generated)
    (generated / "decisions.json").write_text(json.dumps(
        {pid: {"status": "rejected", "note": "caf\udce9\nbad", "time": "t"}}))
    with ReviewServer(generated) as server:
        cookie = login(server)
        status, body = raw(server, "GET", "/api/patches?status=rejected", cookie)
        assert status == 200
        rows = json.loads(body)["rows"]
        assert [(r["patch_id"], r["note"]) for r in rows] == [(pid, "caf\\xe9 bad")]
        assert raw(server, "GET", "/api/options", cookie)[0] == 200
        other = PairStore(generated).rows()[1]["patch_id"]
        ok = json.dumps({"id": other, "status": "accepted"}).encode()
        assert raw(server, "POST", "/api/decide", _headers(server), ok)[0] == 200
    assert decisions(generated)[pid]["note"] == "caf\\xe9 bad"
    (generated / "manifest.csv").read_text(encoding="utf-8")
