"""Exceptions raised by the SDK.

    ReloadError                        anything the SDK raises on purpose
    ├── APIConnectionError             no answer: connection refused or dropped
    │   └── APITimeoutError            no answer in time
    └── APIError                       the server answered with an error
        ├── InvalidRequestError        400, 404, 413, 422: fix the request
        │   └── NotFoundError          404
        ├── AuthenticationError        401: client credentials or access token
        ├── PaymentRequiredError       402: the charge failed; ``.record`` was kept
        ├── PermissionDeniedError      403: permission or agent not granted
        ├── IdempotencyConflictError   409
        ├── RateLimitError             429; ``.retry_after`` in seconds
        └── APIStatusError             5xx and any other unexpected status

Every error carries ``status_code``, ``code`` (the ``error.code`` of the answer),
``message``, ``param``, ``request_id`` (the ``X-Request-Id`` header) and ``body``
(the decoded JSON answer, or ``None``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .models import UsageRecord


class ReloadError(Exception):
    """Base class of every error the SDK raises."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        code: str | None = None,
        param: str | None = None,
        request_id: str | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.code = code
        self.param = param
        self.request_id = request_id
        self.body = body
        self.headers: dict[str, str] = dict(headers or {})

    def __str__(self) -> str:
        parts = [self.message]
        if self.code:
            parts.append(f"code={self.code}")
        if self.param:
            parts.append(f"param={self.param}")
        if self.status_code is not None:
            parts.append(f"status={self.status_code}")
        if self.request_id:
            parts.append(f"request_id={self.request_id}")
        return parts[0] if len(parts) == 1 else f"{parts[0]} ({', '.join(parts[1:])})"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(message={self.message!r}, status_code={self.status_code!r}, "
            f"code={self.code!r}, request_id={self.request_id!r})"
        )


class APIConnectionError(ReloadError):
    """The request got no answer: the connection failed or was dropped."""


class APITimeoutError(APIConnectionError):
    """The request got no answer within the timeout."""


class APIError(ReloadError):
    """The server answered with an error status."""


class InvalidRequestError(APIError):
    """The request is wrong (400, 404, 413, 422); ``param`` names the field at fault."""


class NotFoundError(InvalidRequestError):
    """No such object (404)."""


class AuthenticationError(APIError):
    """Wrong or missing client credentials, or a revoked/expired access token (401)."""


class PermissionDeniedError(APIError):
    """The access token lacks a permission or is not allowed for this agent (403)."""


class PaymentRequiredError(APIError):
    """A charge failed (402): the usage was recorded with ``status: failed``.

    ``record`` is that usage record and ``reason`` its ``failureReason``
    (``insufficient_balance``, ``spending_limit_exceeded``). Reporting the same usage
    again with ``record.idempotency_key`` once the user has topped up charges it once.
    """

    def __init__(self, message: str, *, record: UsageRecord | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.record = record
        self.reason: str | None = record.failure_reason if record is not None else self.code


class IdempotencyConflictError(APIError):
    """The idempotency key was used with another request, or is in use right now (409)."""


class RateLimitError(APIError):
    """Too many requests (429); ``retry_after`` is how long the server asks to wait."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class APIStatusError(APIError):
    """The server failed (5xx) or answered with a status the SDK does not expect."""


__all__ = [
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "IdempotencyConflictError",
    "InvalidRequestError",
    "NotFoundError",
    "PaymentRequiredError",
    "PermissionDeniedError",
    "RateLimitError",
    "ReloadError",
]
