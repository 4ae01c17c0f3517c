"""What stands between the network and the model in `distill serve`: OpenAI-shaped errors, the API key, bounds on
what a request may send (headers, body, encoding, texts), and a JSON answer for a request cut off by shutdown."""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from distill.errors import DistillError

MAX_HEADER_BYTES = 16 * 1024  # all of a request's header names and values together


class ApiError(Exception):
    """A request the service refuses, answered as `{"error": {...}}` with `status`."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error") -> None:  # fmt: skip
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind

    def response(self, *, close: bool = False) -> JSONResponse:
        """The error as JSON; with `close`, the connection is closed after it (a body was left unread)."""
        error = {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}
        headers = {"connection": "close"} if close else None
        return JSONResponse({"error": error}, status_code=self.status, headers=headers)


def shutting_down() -> ApiError:
    return ApiError(503, "the server is shutting down", kind="server_error")


class BodyLimit:
    """ASGI middleware: bound what a request sends before the app reads any of it.

    Headers over `max_header_bytes` in all get a 431; a compressed body (a Content-Encoding other than
    identity) a 415; a declared Content-Length over `max_bytes` a 413 before a byte of the body is read;
    a body that grows past `max_bytes` as it arrives, chunked or not, a 413 at that byte, the rest unread
    and the connection closed. The body is read here and handed to the app whole, so no request holds
    more than `max_bytes` of it in memory.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, max_header_bytes: int = MAX_HEADER_BYTES) -> None:
        self.app, self.max_bytes, self.max_header_bytes = app, max_bytes, max_header_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._refuse_headers(scope["headers"])
        if refusal is not None:
            await refusal.response(close=True)(scope, receive, send)
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":  # the client went away before it sent its body
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._too_large().response(close=True)(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body, replayed = b"".join(chunks), False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    def _refuse_headers(self, headers: Sequence[tuple[bytes, bytes]]) -> ApiError | None:
        size = sum(len(name) + len(value) for name, value in headers)
        if size > self.max_header_bytes:
            return ApiError(431, f"the request's headers take {size} bytes; this server takes at most "
                            f"{self.max_header_bytes}", code="headers_too_large")  # fmt: skip
        fields = dict(headers)
        encoding = fields.get(b"content-encoding", b"identity").strip().lower()
        if encoding not in (b"", b"identity"):
            return ApiError(415, f"compressed request bodies are not accepted (Content-Encoding: "
                            f"{encoding.decode('latin-1')}); send the JSON as it is",
                            code="unsupported_encoding")  # fmt: skip
        length = fields.get(b"content-length")
        if length is not None and not length.strip().isdigit():
            return ApiError(400, "the Content-Length header is not a number", code="invalid_content_length")
        if length is not None and int(length) > self.max_bytes:
            return self._too_large()
        return None

    def _too_large(self) -> ApiError:
        return ApiError(413, f"the request body is over {self.max_bytes} bytes", code="body_too_large")


class BearerAuth:
    """ASGI middleware: a 401 to every request but `GET /health` that lacks `Authorization: Bearer <key>`.

    It answers before the body is read or any route runs, so a caller without the key costs no parsing
    and no model call.
    """

    def __init__(self, app: ASGIApp, key: str) -> None:
        self.app, self.key = app, key.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (scope["method"], scope["path"]) != ("GET", "/health"):
            scheme, _, token = dict(scope["headers"]).get(b"authorization", b"").partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(token.strip(), self.key):
                response = ApiError(401, "this server needs an API key: send the header 'Authorization: Bearer "
                                    "<key>' with a valid key", code="invalid_api_key").response()  # fmt: skip
                response.headers["WWW-Authenticate"] = "Bearer"
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class AnswerCancelled:
    """ASGI middleware: a request cancelled before its answer began gets a 503 in the error shape.

    uvicorn cancels the requests still running when a shutdown outlasts its graceful timeout; without
    this each would get uvicorn's plain-text 500 and leave a traceback in the log.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_and_note(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        except asyncio.CancelledError:
            if started:
                raise
            # NOTE: the cancellation is answered, not passed on: uvicorn only wants the request to end
            await shutting_down().response(close=True)(scope, receive, send)


def check_api_key(key: str | None) -> None:
    """Refuse a key no client could send in a header: empty, or with spaces or characters outside printable ASCII."""
    if key is not None and not (key and key.isascii() and key.isprintable() and " " not in key):
        raise DistillError("the API key (--api-key or DISTILL_API_KEY) must be printable ASCII without spaces, "
                           "and not empty")  # fmt: skip


def check_texts(texts: Sequence[str], *, single: bool, max_batch: int, max_text_chars: int) -> None:
    """Refuse, before any work, a request with too many texts (413), a text too long (413) or one that is not
    Unicode text (400: a lone surrogate, which JSON's \\ud800 escapes can carry)."""
    if len(texts) > max_batch:
        raise ApiError(413, f"input has {len(texts)} texts; this server takes at most {max_batch} per request",
                       param="input", code="too_many_inputs")  # fmt: skip
    for i, text in enumerate(texts):
        where = "input" if single else f"input[{i}]"
        if len(text) > max_text_chars:
            raise ApiError(413, f"{where} has {len(text)} characters; this server takes at most {max_text_chars}",
                           param="input", code="text_too_long")  # fmt: skip
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:
            raise ApiError(400, f"{where} is not valid Unicode text: a lone surrogate (U+{ord(text[e.start]):04X}) "
                           f"at character {e.start}", param="input", code="invalid_text") from e  # fmt: skip


def add_error_handlers(app: FastAPI) -> None:
    """Every error, ours, FastAPI's and Starlette's, in OpenAI's `{"error": {...}}` shape."""

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_error(exc.errors()).response()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return ApiError(exc.status_code, str(exc.detail), code=f"http_{exc.status_code}").response()

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        # NOTE: Starlette re-raises the exception after this response, so the server logs its traceback.
        return ApiError(500, "internal server error", kind="server_error").response()


def validation_error(errors: Sequence[Any]) -> ApiError:
    """One readable 400 for FastAPI's list of validation errors."""
    first = errors[0] if errors else {}
    loc = [str(part) for part in first.get("loc", ())[1:]]  # drop the leading "body"
    if first.get("type") == "json_invalid":
        return ApiError(400, f"the request body is not valid JSON ({first.get('ctx', {}).get('error', 'parse error')})",
                        code="invalid_json")  # fmt: skip
    if not loc:
        return ApiError(400, 'the request body must be a JSON object such as {"input": ["a text"]}',
                        code="invalid_body")  # fmt: skip
    if loc[0] == "input" and first.get("type") == "missing":
        return ApiError(400, "'input' is required: a string or a list of strings", param="input", code="missing_input")
    if loc[0] == "input":
        return ApiError(400, "'input' must be a string or a list of strings", param="input", code="invalid_input")
    return ApiError(400, f"'{'.'.join(loc)}': {first.get('msg', 'invalid value')}", param=loc[0],
                    code="invalid_value")  # fmt: skip
