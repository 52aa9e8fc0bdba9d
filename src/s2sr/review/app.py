"""The review web application (Starlette): the page, its static files and a JSON API.

Routes (all behind :class:`~s2sr.review.security.Guard`):

========================  =========================================================
``GET /?token=T``         stores the token in a cookie and redirects to ``/``
``GET /``                 the page (needs the cookie)
``GET /static/...``       the page's script and style, from the package folder only
``GET /api/options``      values of each filter, statistics and automatic thresholds
``GET /api/patches``      one page: filters, sort, offset/limit; counts and histograms
``GET /api/patch?id=``    one patch's manifest row, its pair and its decision
``GET /api/image?id=``    a PNG: ``view`` lr|hr|diff, ``mode`` true|nir, ``size``
``GET /api/version``      ``{version}``: changes when the dataset changes on disk (the
                          page polls it, to show decisions made elsewhere)
``POST /api/decide``      JSON ``{id, status: accepted|rejected|auto, note}``
========================  =========================================================

Patch ids are looked up in the manifest (an unknown id is 404, it never reaches the file
system); decisions go through :meth:`s2sr.data.store.PairStore.decide`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from s2sr.core.constants import PATCH_STATS
from s2sr.core.errors import S2SRError, UsageError
from s2sr.data.manifest import MAX_NOTE, check_text
from s2sr.review.catalog import CATEGORIES, Catalog, Query
from s2sr.review.security import TOKEN_HEADER, Guard, cookie_name, same
from s2sr.review.thumbs import Thumbnails

STATIC = Path(__file__).resolve().parent / "static"
#: Largest decision request body (bytes): an id, a status and a 500-character note.
MAX_BODY = 8192
#: Deepest JSON nesting a decision request may have (it is one flat object).
MAX_DEPTH = 2


class ReviewApp:
    """The routes over one dataset.

    Args:
        catalog: the dataset.
        thumbs: its image renderer.
        token: this run's token.
        port: the server's port (names the cookie).
    """

    def __init__(self, catalog: Catalog, thumbs: Thumbnails, token: str, port: int) -> None:
        self.catalog = catalog
        self.thumbs = thumbs
        self.token = token
        self.cookie = cookie_name(port)

    def authorised(self, request: Request) -> bool:
        return same(request.cookies.get(self.cookie), self.token)

    async def index(self, request: Request) -> Response:
        presented = request.query_params.get("token")
        if presented is not None:
            if not same(presented, self.token):
                return _refuse(403, "wrong token: open the URL that s2sr review printed")
            response = RedirectResponse("/", status_code=303)
            response.set_cookie(self.cookie, self.token, httponly=True, samesite="strict",
                                path="/")
            return response
        if not self.authorised(request):
            return _refuse(403, "no token: open the URL that s2sr review printed (it "
                                "holds this run's token)")
        page = (STATIC / "index.html").read_text().replace("{{TOKEN}}", self.token)
        return Response(page, media_type="text/html; charset=utf-8",
                        headers={"cache-control": "no-store"})

    async def options(self, request: Request) -> Response:
        if not self.authorised(request):
            return _refuse(403, "no token")
        return _json(await run_in_threadpool(self.catalog.options))

    async def patches(self, request: Request) -> Response:
        if not self.authorised(request):
            return _refuse(403, "no token")
        try:
            query = parse_query(request.query_params.multi_items())
        except UsageError as err:
            return _refuse(400, str(err))
        return _json(await run_in_threadpool(self.catalog.page, query))

    async def patch(self, request: Request) -> Response:
        if not self.authorised(request):
            return _refuse(403, "no token")
        pid = request.query_params.get("id", "")
        try:
            row = await run_in_threadpool(self.catalog.row, pid)
        except KeyError:
            return _refuse(404, "no such patch in the manifest")
        pair = {k: v for k, v in self.catalog.pair(row["pair_id"]).items()
                if k not in ("lr_array", "hr_array")}
        return _json({"row": row, "pair": pair})

    async def version(self, request: Request) -> Response:
        if not self.authorised(request):
            return _refuse(403, "no token")
        return _json({"version": self.catalog.version()})

    async def image(self, request: Request) -> Response:
        if not self.authorised(request):
            return _refuse(403, "no token")
        q = request.query_params
        try:
            data = await run_in_threadpool(self.thumbs.image, q.get("id", ""),
                                           q.get("view", "hr"), q.get("mode", "true"),
                                           q.get("size", "thumb"))
        except KeyError:
            return _refuse(404, "no such patch in the manifest")
        except UsageError as err:
            return _refuse(400, str(err))
        return Response(data, media_type="image/png",
                        headers={"cache-control": "private, max-age=3600"})

    async def decide(self, request: Request) -> Response:
        # the Guard already required the token header for this POST; the cookie too
        if not self.authorised(request) or not same(request.headers.get(TOKEN_HEADER),
                                                    self.token):
            return _refuse(403, "no token")
        if request.headers.get("content-type", "").split(";")[0].strip() != \
                "application/json":
            return _refuse(415, "send JSON (content-type application/json)")
        body = await read_body(request, MAX_BODY)
        if body is None:  # and close the connection: the rest of the body is never read
            return _refuse(413, f"request too large (at most {MAX_BODY} bytes)",
                           {"connection": "close"})
        if json_depth(body) > MAX_DEPTH:
            return _refuse(400, f"the JSON is nested more than {MAX_DEPTH} deep: send "
                                "{id, status, note}")
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            return _refuse(400, "the body is not JSON")
        if not isinstance(data, dict) or not isinstance(data.get("id"), str) or \
                data.get("status") not in ("accepted", "rejected", "auto") or \
                not isinstance(data.get("note", ""), str):
            return _refuse(400, "send {id: PATCH_ID, status: accepted|rejected|auto, "
                                "note: text}")
        note = data.get("note", "")
        try:
            check_text(note, "the note", MAX_NOTE)
            row = await run_in_threadpool(self.catalog.decide, data["id"], data["status"],
                                          note)
        except KeyError:
            return _refuse(404, "no such patch in the manifest")
        except UsageError as err:
            return _refuse(400, str(err))
        except S2SRError as err:
            return _refuse(409, str(err))
        return _json({"row": row, "version": self.catalog.version()})


async def read_body(request: Request, limit: int) -> bytes | None:
    """The request's body, or ``None`` when it is longer than ``limit`` bytes.

    A declared ``Content-Length`` over the limit is refused before anything is read;
    otherwise (chunked bodies too) reading stops as soon as the limit is passed, so a
    huge body never reaches memory.
    """
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or len(declared) > 12 or
                                     int(declared) > limit):
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def json_depth(body: bytes) -> int:
    """The deepest nesting of arrays and objects in a JSON text (strings skipped), found
    without parsing it: :func:`json.loads` recurses once per level."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


def parse_query(items: list[tuple[str, str]]) -> Query:
    """A :class:`Query` from URL parameters: ``site=a&site=b``, ``min_corr=0.5``,
    ``max_shift=1``, ``sort=corr``, ``desc=1``, ``offset=0``, ``limit=48``."""
    equals: dict[str, set[str]] = {}
    ranges: dict[str, list[float | None]] = {}
    sort, desc, offset, limit = "", False, 0, 48
    for key, value in items:
        if key in CATEGORIES:
            if value != "":
                equals.setdefault(key, set()).add(value)
        elif key[:4] in ("min_", "max_") and key[4:] in PATCH_STATS:
            if value == "":
                continue
            number = _number(key, value)
            ranges.setdefault(key[4:], [None, None])[key[:4] == "max_"] = number
        elif key == "sort":
            sort = value
        elif key == "desc":
            desc = value in ("1", "true")
        elif key in ("offset", "limit"):
            n = _number(key, value)
            if n != int(n):
                raise UsageError(f"{key} must be a whole number")
            offset, limit = (int(n), limit) if key == "offset" else (offset, int(n))
        else:
            raise UsageError(f"unknown parameter {key[:40]!r}")
    return Query(equals=equals, ranges={k: (v[0], v[1]) for k, v in ranges.items()},
                 sort=sort, descending=desc, offset=offset, limit=limit)


def _number(key: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise UsageError(f"{key}={value[:20]!r} is not a number") from None
    if not math.isfinite(number):
        raise UsageError(f"{key} must be finite")
    return number


class _AsciiJSON(JSONResponse):
    """JSON in ASCII (``\\uXXXX`` escapes): text that cannot be encoded as UTF-8 (a
    label written by an older s2sr) never turns an answer into a 500."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False,
                          separators=(",", ":")).encode("ascii")


def _json(data: Any) -> Response:
    return _AsciiJSON(data, headers={"cache-control": "no-store"})


def _refuse(status: int, reason: str, headers: dict[str, str] | None = None) -> Response:
    return PlainTextResponse(f"s2sr review: {reason}\n", status_code=status, headers=headers)


def create_app(catalog: Catalog, thumbs: Thumbnails, token: str, port: int) -> Guard:
    """The ASGI application for one dataset, guarded (see :mod:`s2sr.review.security`)."""
    routes = ReviewApp(catalog, thumbs, token, port)
    app = Starlette(routes=[
        Route("/", routes.index, methods=["GET"]),
        Route("/api/options", routes.options, methods=["GET"]),
        Route("/api/patches", routes.patches, methods=["GET"]),
        Route("/api/patch", routes.patch, methods=["GET"]),
        Route("/api/image", routes.image, methods=["GET"]),
        Route("/api/version", routes.version, methods=["GET"]),
        Route("/api/decide", routes.decide, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC, follow_symlink=False),
              name="static"),
    ])
    return Guard(app, port, token, max_body=MAX_BODY)
