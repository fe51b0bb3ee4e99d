"""The guard in front of every request: the Host check (DNS rebinding) when there is no token,
the bearer token (header, the page's cookie, or `/?token=` once) when there is, and a cap on
the request body (chunked uploads included)."""

import secrets
from urllib.parse import parse_qs

from fastapi import HTTPException
from fastapi.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from search.web.errors import describe, error_response

TOKEN_COOKIE = "dinosearch_token"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")  # Host headers accepted without a token


def token_matches(given: str, token: str) -> bool:
    """Compare in constant time (no timing hints about the token)."""
    return secrets.compare_digest(given.encode(), token.encode())


class Guard:
    """ASGI middleware: Host check (no token), bearer token (if set) and a request size cap.

    Pure ASGI so it covers everything, /docs and static files included, before any body is read.
    """

    def __init__(
        self, app: ASGIApp, token: str | None, allowed_hosts: tuple[str, ...], max_body_bytes: int
    ):
        self.app, self.token, self.max_body_bytes = app, token, max_body_bytes
        self.allowed_hosts = set(allowed_hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        refusal = self._refusal(scope, headers)
        if refusal is not None:
            return await refusal(scope, receive, send)
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, _capped(receive, self.max_body_bytes), tracking_send)
        except Exception as exc:  # answered here, not re-raised: the connection stays usable
            if started:
                raise
            status, code, message = describe(exc)
            await error_response(status, code, message)(scope, receive, send)

    def _refusal(self, scope: Scope, headers: dict[str, str]) -> Response | None:
        if self.token is None and _host_name(headers.get("host", "")) not in self.allowed_hosts:
            # DNS rebinding: a web page on another origin may point its name at 127.0.0.1
            return error_response(
                421, "misdirected_request", "unexpected Host header; use http://127.0.0.1:PORT/"
            )
        if self.token is not None and not self._authorised(scope, headers, self.token):
            return error_response(
                401,
                "unauthorized",
                "missing or wrong token: send 'Authorization: Bearer <token>' "
                "or open /?token=<token> once",
                {"WWW-Authenticate": "Bearer"},
            )
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_body_bytes:
            return error_response(
                413,
                "upload_too_large",
                f"request body over {self.max_body_bytes // (1024 * 1024)} MB",
            )
        return None

    def _authorised(self, scope: Scope, headers: dict[str, str], token: str) -> bool:
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            return token_matches(auth[7:].strip(), token)
        cookie = _cookie(headers.get("cookie", ""), TOKEN_COOKIE)
        if cookie is not None:
            return token_matches(cookie, token)
        # the page's first load, /?token=..., sets the cookie (checked again in _page)
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        given = query.get("token", [""])[0]
        return scope["path"] == "/" and token_matches(given, token)


def _capped(receive: Receive, limit: int) -> Receive:
    """Count body bytes as they arrive (chunked uploads have no Content-Length) and stop early."""
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:  # an HTTPException, not a typed error: FastAPI passes only that
                # through its body parsing (anything else becomes a 400 "error parsing the body")
                raise HTTPException(413, f"request body over {limit // (1024 * 1024)} MB")
        return message

    return wrapped


def _host_name(host: str) -> str:
    if host.startswith("["):  # [::1]:8000
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _cookie(header: str, name: str) -> str | None:
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None
