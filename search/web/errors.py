"""Every error the API answers, in one shape: `{"error": {"code", "message"}}` with its status.

Our typed errors (indexer.errors) each carry their status and code; the framework's HTTP errors,
bad requests and anything unexpected are answered the same way (never a stack trace to the
client). Routes raise the typed errors, never HTTPException."""

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from indexer import errors
from search.web.schemas import ErrorBody

log = logging.getLogger("dinosearch.api")

# Our typed errors carry their own status and code (indexer/errors.py: http_status, code). These
# are the codes of the HTTP errors the framework and the guard raise themselves (an unknown URL,
# a wrong method, the streamed body cap).
HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "upload_too_large",
    415: "unsupported_media_type",
    421: "misdirected_request",
    422: "invalid_request",
}


def describe(exc: BaseException) -> tuple[int, str, str]:
    """(status, code, message) for any exception; never a stack trace to the client."""
    if isinstance(exc, errors.DinosearchError):
        return exc.http_status, exc.code, str(exc)
    if isinstance(exc, HTTPException):
        return exc.status_code, HTTP_CODES.get(exc.status_code, "error"), str(exc.detail)
    log.error("unexpected error", exc_info=exc)
    return 500, "internal", "internal server error (see the server's log)"


def error_body(exc: BaseException) -> ErrorBody:
    """The error of a background job or run, as its status reports it."""
    _, code, message = describe(exc)
    return ErrorBody(code=code, message=message)


def error_response(status: int, code: str, message: str, headers=None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status, headers=headers)


def add_error_handlers(app: FastAPI) -> None:
    """One mapping for all: typed errors, HTTP errors, bad requests and anything unexpected."""

    async def handle(request: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, StarletteHTTPException) and not isinstance(exc, HTTPException):
            exc = HTTPException(exc.status_code, exc.detail)
        status, code, message = describe(exc)
        return error_response(status, code, message, getattr(exc, "headers", None))

    async def invalid(request: Request, exc: Exception) -> JSONResponse:
        problems = exc.errors() if isinstance(exc, RequestValidationError) else []
        if any(p.get("loc", ("",))[0] == "path" for p in problems):
            return error_response(404, "not_found", "no such resource")  # /api/images/../x, etc.
        return error_response(422, "invalid_request", _validation_message(problems))

    for cls in (errors.DinosearchError, StarletteHTTPException):
        app.add_exception_handler(cls, handle)  # anything else: Guard answers 500 (describe)
    app.add_exception_handler(RequestValidationError, invalid)


def _validation_message(problems: Sequence[Any]) -> str:
    parts = [
        f"{'.'.join(str(x) for x in p.get('loc', ())[1:]) or 'request'}: {p.get('msg')}"
        for p in problems[:5]
    ]
    return "; ".join(parts)
