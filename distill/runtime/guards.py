"""What stands between the network and the model in `distill serve`: OpenAI-shaped errors, the API key, a body limit."""

from __future__ import annotations

import hmac

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from distill.errors import DistillError


class ApiError(Exception):
    """A request the service refuses, answered as `{"error": {...}}` with `status`."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error") -> None:  # fmt: skip
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind

    def response(self) -> JSONResponse:
        error = {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}
        return JSONResponse({"error": error}, status_code=self.status)


class BodyLimit:
    """ASGI middleware: refuse a request whose declared Content-Length is over `max_bytes` with a 413."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            length = dict(scope["headers"]).get(b"content-length", b"0")
            if not length.isdigit() or int(length) > self.max_bytes:
                error = ApiError(413, f"the request body is over {self.max_bytes} bytes", code="body_too_large")
                await error.response()(scope, receive, send)
                return
        await self.app(scope, receive, send)


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


def check_api_key(key: str | None) -> None:
    """Refuse a key no client could send in a header: empty, or with spaces or characters outside printable ASCII."""
    if key is not None and not (key and key.isascii() and key.isprintable() and " " not in key):
        raise DistillError("the API key (--api-key or DISTILL_API_KEY) must be printable ASCII without spaces, "
                           "and not empty")  # fmt: skip
