"""One exception tree, one JSON error shape.

    ReloadError                      any failure answered with a JSON error
    ├── InvalidRequest (400)         bad input; ``param`` names the field
    │   └── InvalidGrant (400)       OAuth code exchange refused
    ├── Unauthorized (401)           missing/wrong credentials, dead token
    ├── PaymentRequired (402)        a charge failed; carries the usage record
    ├── Forbidden (403)              permission or agent not granted
    ├── NotFound (404)
    ├── Conflict (409)               idempotency key reused or in use
    ├── PayloadTooLarge (413)
    ├── RateLimited (429)
    └── ServiceUnavailable (503)

Every answer has the shape ``{"status": "error", "message", "error": {"code",
"message", "param"?}}`` (and ``data`` for a failed charge).
"""

from __future__ import annotations

from typing import Any


class ReloadError(Exception):
    status_code = 500
    code = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        data: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.param = param
        self.data = data
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.param is not None:
            error["param"] = self.param
        body: dict[str, Any] = {"status": "error", "message": self.message, "error": error}
        if self.data is not None:
            body["data"] = self.data
        return body


class InvalidRequest(ReloadError):
    status_code = 400
    code = "invalid_request"


class InvalidGrant(InvalidRequest):
    code = "invalid_grant"


class Unauthorized(ReloadError):
    status_code = 401
    code = "unauthorized"


class PaymentRequired(ReloadError):
    status_code = 402
    code = "payment_failed"


class Forbidden(ReloadError):
    status_code = 403
    code = "forbidden"


class NotFound(ReloadError):
    status_code = 404
    code = "not_found"


class Conflict(ReloadError):
    status_code = 409
    code = "conflict"


class PayloadTooLarge(ReloadError):
    status_code = 413
    code = "payload_too_large"


class RateLimited(ReloadError):
    status_code = 429
    code = "rate_limited"


class ServiceUnavailable(ReloadError):
    status_code = 503
    code = "service_unavailable"
