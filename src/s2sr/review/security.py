"""The review server's guard: who may talk to it and how.

The server binds to the loopback address only, yet any web page the user visits can make
the browser send requests to ``127.0.0.1`` (cross-site requests), and a hostile domain
can resolve itself to ``127.0.0.1`` (DNS rebinding). :class:`Guard` (ASGI middleware, in
front of every route) therefore refuses:

* a ``Host`` header that is not ``127.0.0.1:PORT`` or ``localhost:PORT`` (rebinding);
* an ``Origin`` that is not this server's, and a ``Sec-Fetch-Site`` of ``cross-site`` or
  ``same-site`` (requests started by another site);
* state-changing methods (anything but GET/HEAD) without this run's token in the
  ``X-S2SR-Token`` header, which a cross-site form cannot set;
* a declared ``Content-Length`` over the largest body any route accepts, before the
  body is read (routes that read a body also stop reading at that size).

The token (random, per run) is in the URL printed at start; opening it stores it in a
``SameSite=Strict``, ``HttpOnly`` cookie (named by port, since cookies ignore ports) and
redirects to the bare page, so the token leaves the address bar. Every API call needs
the cookie. Responses forbid framing (keyboard decisions must not be clickjacked) and
set a strict content security policy.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

TOKEN_HEADER = "x-s2sr-token"
SAFE_METHODS = ("GET", "HEAD")
SECURITY_HEADERS = [
    (b"content-security-policy",
     b"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
     b"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-resource-policy", b"same-origin"),
]


_SINGLE = ("host", "origin", "sec-fetch-site", "content-length", TOKEN_HEADER)


def new_token() -> str:
    """A fresh per-run token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def same(a: str | None, b: str) -> bool:
    """Constant-time comparison of a presented token with the run's."""
    return a is not None and secrets.compare_digest(a.encode(), b.encode())


def cookie_name(port: int) -> str:
    """The token cookie's name for a server on ``port``."""
    return f"s2sr_review_{port}"


class Guard:
    """ASGI middleware enforcing the rules in this module's docstring.

    Args:
        app: the application behind it.
        port: the port the server listens on (part of the allowed hosts and origins).
        token: this run's token.
        max_body: the largest request body (bytes) any route accepts.
    """

    def __init__(self, app: ASGIApp, port: int, token: str, max_body: int = 8192) -> None:
        self.app = app
        self.token = token
        self.max_body = max_body
        self.hosts = {f"127.0.0.1:{port}", f"localhost:{port}"}
        self.origins = {f"http://{h}" for h in self.hosts}

    def refusal(self, scope: Scope) -> tuple[int, str] | None:
        """``(status, reason)`` when the request must be refused, else ``None``."""
        headers: dict[str, str] = {}
        for key, value in scope.get("headers", []):
            name = key.decode("latin-1").lower()
            if name in headers and name in _SINGLE:  # two Hosts or Origins: ambiguous
                return 400, f"duplicate {name} header"
            headers[name] = value.decode("latin-1")
        host = headers.get("host")
        if host not in self.hosts:
            return 421, f"host {host!r} is not this server's (only {sorted(self.hosts)})"
        origin = headers.get("origin")
        if origin is not None and origin not in self.origins:
            return 403, f"cross-origin request from {origin!r} refused"
        if headers.get("sec-fetch-site") in ("cross-site", "same-site"):
            return 403, "cross-site request refused"
        if scope.get("method", "GET") not in SAFE_METHODS and not same(
                headers.get(TOKEN_HEADER), self.token):
            return 403, "missing or wrong token: reload the page from the URL s2sr printed"
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or len(length) > 12 or
                                       int(length) > self.max_body):
            return 413, f"request too large (at most {self.max_body} bytes)"
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":  # no websockets
            return
        refused = self.refusal(scope)
        if refused is not None:
            status, reason = refused
            body = f"s2sr review: {reason}\n".encode()
            # connection: close, so that the server never reads (and discards) a body
            # it refused, however long the client goes on sending
            await send({"type": "http.response.start", "status": status,
                        "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                                    (b"content-length", str(len(body)).encode()),
                                    (b"connection", b"close"), *SECURITY_HEADERS]})
            await send({"type": "http.response.body", "body": body})
            return

        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_secured)
