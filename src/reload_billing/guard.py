"""Checks on the request line and headers, before routing.

- Headers are bounded (total size and count): uvicorn's default HTTP parser reads
  headers of any size, so larger ones are answered here with 431.
- Paths and query strings may not hold NUL: PostgreSQL text cannot store it (SQLite
  can), so such a value would otherwise reach the database as an error instead of
  being refused as bad input. JSON bodies are checked where they are parsed
  (``jsonbody.parse_object``).
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Receive, Scope, Send

from . import jsonbody
from .errors import InvalidRequest, ReloadError

MAX_HEADERS = 100


class HeadersTooLarge(ReloadError):
    status_code = 431
    code = "headers_too_large"


def nul_param(scope: Scope) -> str | None:
    """The name of the first path or query part holding NUL, or None."""
    if "\x00" in scope.get("path", ""):
        return "path"
    query: bytes = scope.get("query_string", b"")
    if b"%00" in query or b"\x00" in query:
        for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
            if "\x00" in name or "\x00" in value:
                return name.replace("\x00", "") or "query"
    return None


def check(scope: Scope, max_header_bytes: int) -> ReloadError | None:
    headers = scope["headers"]
    if len(headers) > MAX_HEADERS:
        return HeadersTooLarge(f"a request may carry at most {MAX_HEADERS} headers")
    if sum(len(name) + len(value) for name, value in headers) > max_header_bytes:
        return HeadersTooLarge(f"the request headers are larger than {max_header_bytes} bytes")
    param = nul_param(scope)
    if param is not None:
        return InvalidRequest(f"{param} holds a NUL character", param=param)
    return None


class InputGuard:
    def __init__(self, app: ASGIApp, *, max_header_bytes: int) -> None:
        self.app = app
        self.max_header_bytes = max_header_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        error = check(scope, self.max_header_bytes) if scope["type"] == "http" else None
        if error is None:
            await self.app(scope, receive, send)
            return
        body = jsonbody.dumps(error.body())
        await send(
            {
                "type": "http.response.start",
                "status": error.status_code,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
