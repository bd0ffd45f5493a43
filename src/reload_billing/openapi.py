"""The OpenAPI document, completed: what every ``/v1/tp`` answer looks like.

The routes read their bodies and queries by hand (so that no amount ever passes
through a float), which leaves FastAPI's generated document without query
parameters, answer shapes, error answers or credentials. :func:`install` fills
them in from the tables below, so that clients (and the schema-driven tests) see
every answer the server gives, error envelopes included. A ``/v1/tp`` operation
added later gets the error answers and client credentials automatically.
"""

from __future__ import annotations

from collections.abc import Callable
from copy import deepcopy
from typing import Any

from fastapi import FastAPI

Schema = dict[str, Any]

NULL = {"type": "null"}


def _nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, NULL]}


MONEY: Schema = {"type": "number", "description": "USD, exact to one nano-dollar"}
TIMESTAMP: Schema = {"type": "string", "format": "date-time"}
TEXT: Schema = {"type": "string"}


def _object(required: dict[str, Schema], optional: dict[str, Schema] | None = None) -> Schema:
    return {
        "type": "object",
        "properties": {**required, **(optional or {})},
        "required": list(required),
    }


COMPONENTS: dict[str, Schema] = {
    "Error": _object(
        {
            "status": {"type": "string", "enum": ["error"]},
            "message": TEXT,
            "error": _object({"code": TEXT, "message": TEXT}, {"param": _nullable(TEXT)}),
        },
        {"data": {}},
    ),
    "PaymentFailed": {
        "allOf": [
            {"$ref": "#/components/schemas/Error"},
            _object({"data": {"$ref": "#/components/schemas/UsageRecord"}}),
        ]
    },
    "User": _object({"id": TEXT, "firstName": TEXT, "lastName": TEXT, "email": TEXT}),
    "Organization": _object({"id": TEXT, "name": TEXT, "displayName": TEXT}),
    "Transaction": _object(
        {
            "id": TEXT,
            "type": {"type": "string", "enum": ["usage", "refund", "adjustment"]},
            "status": TEXT,
            "amount": MONEY,
            "platformFee": MONEY,
            "netAmount": MONEY,
            "description": _nullable(TEXT),
            "idempotencyKey": _nullable(TEXT),
            "createdAt": TIMESTAMP,
        }
    ),
    "UsageRecord": _object(
        {
            "id": TEXT,
            "userId": TEXT,
            "organizationId": TEXT,
            "aiAgentId": TEXT,
            "description": TEXT,
            "shortDescription": _nullable(TEXT),
            "usageType": _nullable(TEXT),
            "totalCost": MONEY,
            "costBeforeTax": _nullable(MONEY),
            "taxRate": _nullable({"type": "number"}),
            "taxAmount": _nullable(MONEY),
            "llmModel": _nullable(TEXT),
            "llmProvider": _nullable(TEXT),
            "inputTokens": _nullable({"type": "integer"}),
            "outputTokens": _nullable({"type": "integer"}),
            "totalTokens": _nullable({"type": "integer"}),
            "processingTimeMs": _nullable({"type": "number"}),
            "modelParameters": _nullable({"type": "object"}),
            "internalTokensOrCredits": _nullable({"type": "number"}),
            "chargeUser": {"type": "boolean"},
            "idempotencyKey": _nullable(TEXT),
            "metadata": _nullable({"type": "object", "additionalProperties": TEXT}),
            "usageDate": TIMESTAMP,
            "status": {"type": "string", "enum": ["completed", "failed", "pending", "cancelled"]},
            "charged": {"type": "boolean"},
            "chargedAmount": MONEY,
            "refundedAmount": MONEY,
            "platformFee": MONEY,
            "failureReason": _nullable(TEXT),
            "transactions": {
                "type": "array",
                "items": {"$ref": "#/components/schemas/Transaction"},
            },
            "createdAt": TIMESTAMP,
            "updatedAt": TIMESTAMP,
        }
    ),
    "Pagination": _object(
        {
            "page": {"type": "integer", "minimum": 1},
            "limit": {"type": "integer", "minimum": 1, "maximum": 100},
            "total": {"type": "integer", "minimum": 0},
            "totalPages": {"type": "integer", "minimum": 0},
        }
    ),
    "AccessToken": _object(
        {
            "access_token": TEXT,
            "token_type": {"type": "string", "enum": ["Bearer"]},
            "expires_in": {"type": "integer"},
            "scope": TEXT,
            "permissions": {"type": "array", "items": TEXT},
            "environment": TEXT,
            "organization": {"$ref": "#/components/schemas/Organization"},
            "user": {"$ref": "#/components/schemas/User"},
            "billingAccountId": TEXT,
        },
        {"aiAgentIds": _nullable({"type": "array", "items": TEXT})},
    ),
    "Identity": _object(
        {
            "user": {"$ref": "#/components/schemas/User"},
            "organization": {"$ref": "#/components/schemas/Organization"},
            "permissions": {"type": "array", "items": TEXT},
            "billingAccountId": TEXT,
        },
        {"aiAgentIds": _nullable({"type": "array", "items": TEXT})},
    ),
    "ChargePreview": _object(
        {
            "canCharge": {"type": "boolean"},
            "amount": MONEY,
            "balance": MONEY,
            "reason": _nullable(TEXT),
        },
        {"limit": _nullable(TEXT)},
    ),
    "Revocation": _object({"revoked": {"type": "boolean"}, "tokenId": TEXT, "status": TEXT}),
    "Introspection": _object(
        {
            "status": {
                "type": "string",
                "enum": ["active", "revoked", "disconnected", "not_found", "expired"],
            },
            "active": {"type": "boolean"},
        }
    ),
}


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _success(data: Schema, **extra: Schema) -> Schema:
    return _object({"status": {"type": "string", "enum": ["success"]}, "data": data, **extra})


def _json(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_RECORD = _success(_ref("UsageRecord"))
# (method, path) -> the success answers, and who may call.
Security = list[dict[str, list[str]]]
CLIENT: Security = [{"clientCredentials": []}]
CLIENT_AND_TOKEN: Security = [{"clientCredentials": [], "accessToken": []}]
CLIENT_MAYBE_TOKEN: Security = [
    {"clientCredentials": [], "accessToken": []},
    {"clientCredentials": []},
]
KNOWN: dict[tuple[str, str], tuple[dict[str, Schema], Security]] = {
    ("post", "/v1/tp/usage"): (
        {
            "201": _json(_RECORD, "The usage record (replayed with Idempotent-Replayed: true)"),
            "402": _json(_ref("PaymentFailed"), "Recorded, but the charge failed"),
        },
        CLIENT_AND_TOKEN,
    ),
    ("post", "/v1/tp/preview-charge"): (
        {"200": _json(_success(_ref("ChargePreview")), "Whether the charge would succeed")},
        CLIENT_AND_TOKEN,
    ),
    ("get", "/v1/tp/usage-reports"): (
        {
            "200": _json(
                _success(
                    {"type": "array", "items": _ref("UsageRecord")}, pagination=_ref("Pagination")
                ),
                "One page of usage records",
            )
        },
        CLIENT_MAYBE_TOKEN,
    ),
    ("get", "/v1/tp/usage-reports/{record_id}"): (
        {"200": _json(_RECORD, "The usage record with all its transactions")},
        CLIENT_MAYBE_TOKEN,
    ),
    ("post", "/v1/tp/usage-reports/{record_id}/refund"): (
        {"201": _json(_success(_ref("Transaction")), "The refund transaction")},
        CLIENT_MAYBE_TOKEN,
    ),
    ("post", "/v1/tp/token"): (
        {"200": _json(_success(_ref("AccessToken")), "An access token")},
        # Client credentials may come in the body instead of the Basic header.
        [{"clientCredentials": []}, {}],
    ),
    ("get", "/v1/tp/reports/usage"): (
        {
            "200": {
                "description": "Usage grouped and summed (JSON, or CSV with format=csv)",
                "content": {
                    "application/json": {
                        "schema": _success(
                            {"type": "array", "items": {"type": "object"}},
                            totals={"type": "object"},
                        )
                    },
                    "text/csv": {"schema": {"type": "string"}},
                },
            }
        },
        CLIENT_MAYBE_TOKEN,
    ),
    ("get", "/v1/tp/user"): (
        {"200": _json(_success(_ref("Identity")), "The user behind the access token")},
        CLIENT_AND_TOKEN,
    ),
    ("post", "/v1/tp/revoke-token"): (
        {"200": _json(_success(_ref("Revocation")), "The token is revoked")},
        CLIENT,
    ),
    ("post", "/v1/tp/introspect-token"): (
        {"200": _json(_success(_ref("Introspection")), "The token's state")},
        CLIENT,
    ),
}

ERRORS = {
    "400": "Bad input; error.param names the field",
    "401": "Missing or wrong credentials, or a dead access token",
    "403": "The access token lacks a permission or the agent",
    "404": "No such thing for this caller",
    "409": "Idempotency key reused or in use",
    "413": "Body too large",
    "429": "Too many requests; wait Retry-After seconds",
    "431": "Request headers too large",
    "503": "The database stayed busy through every retry; wait Retry-After seconds",
}

IDEMPOTENCY_HEADER: Schema = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
}


def _query(name: str, schema: Schema) -> Schema:
    return {"name": name, "in": "query", "required": False, "schema": schema}


_DATE = {"type": "string", "format": "date-time"}
USAGE_REPORT_FILTERS = [
    _query("page", {"type": "integer", "minimum": 1, "maximum": 10_000_000}),
    _query("limit", {"type": "integer", "minimum": 1, "maximum": 100}),
    _query("userId", TEXT),
    _query("userEmail", TEXT),
    _query("startDate", _DATE),
    _query("endDate", _DATE),
    _query("hasCharges", {"type": "string", "enum": ["true", "false"]}),
    _query("minAmount", {"type": "number", "minimum": 0, "maximum": 1_000_000_000}),
    _query("maxAmount", {"type": "number", "minimum": 0, "maximum": 1_000_000_000}),
    _query("status", {"type": "string", "enum": ["completed", "failed", "pending", "cancelled"]}),
    _query("aiAgentId", TEXT),
    _query("transactionType", {"type": "string", "enum": ["usage", "refund", "adjustment"]}),
    _query("idempotencyKey", TEXT),
    _query("usageType", TEXT),
    _query("sortBy", {"type": "string", "enum": ["createdAt", "usageDate", "amount", "totalCost"]}),
    _query("sortOrder", {"type": "string", "enum": ["asc", "desc"]}),
]
ANALYTICS_QUERY = [
    _query("groupBy", TEXT),
    _query("startDate", TEXT),
    _query("endDate", TEXT),
    _query("aiAgentId", TEXT),
    _query("userId", TEXT),
    _query("status", {"type": "string", "enum": ["completed", "failed", "pending", "cancelled"]}),
    _query("format", {"type": "string", "enum": ["json", "csv"]}),
]
EXTRA_PARAMETERS = {
    ("get", "/v1/tp/usage-reports"): USAGE_REPORT_FILTERS,
    ("get", "/v1/tp/reports/usage"): ANALYTICS_QUERY,
    ("post", "/v1/tp/usage"): [IDEMPOTENCY_HEADER],
    ("post", "/v1/tp/usage-reports/{record_id}/refund"): [IDEMPOTENCY_HEADER],
}


def _generated(response: Schema | None) -> bool:
    """Missing, or FastAPI's placeholder (any JSON): a route that documents its own
    answers keeps them."""
    if response is None:
        return True
    content = response.get("content", {})
    return set(content) <= {"application/json"} and all(
        not media.get("schema") for media in content.values()
    )


def complete(document: dict[str, Any]) -> dict[str, Any]:
    """Add credentials, answers and parameters to a FastAPI-generated document."""
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for name, schema in COMPONENTS.items():
        schemas.setdefault(name, deepcopy(schema))
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    components.setdefault("securitySchemes", {}).update(
        {
            "clientCredentials": {
                "type": "http",
                "scheme": "basic",
                "description": "Authorization: Basic base64(clientId:clientSecret)",
            },
            "accessToken": {
                "type": "apiKey",
                "in": "header",
                "name": "X-Access-Token",
                "description": "A user's access token (from POST /v1/tp/token)",
            },
        }
    )
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)  # bad input is 400, in the error envelope
            if not path.startswith("/v1/tp/"):
                continue
            known = KNOWN.get((method, path))
            if known is not None:
                answers, security = known
                if all(_generated(responses.get(status)) for status in ("200", "201")):
                    for status in ("200", "201"):
                        responses.pop(status, None)
                    for status, answer in answers.items():
                        responses.setdefault(status, deepcopy(answer))
                operation.setdefault("security", deepcopy(security))
            else:
                operation.setdefault("security", deepcopy(CLIENT_MAYBE_TOKEN))
            for status, description in ERRORS.items():
                responses.setdefault(status, _json(_ref("Error"), description))
            for status in ("429", "503"):
                responses[status]["headers"] = {
                    "Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}
                }
            parameters = operation.setdefault("parameters", [])
            present = {(p.get("in"), p.get("name")) for p in parameters}
            for parameter in EXTRA_PARAMETERS.get((method, path), []):
                if (parameter["in"], parameter["name"]) not in present:
                    parameters.append(deepcopy(parameter))
            if not parameters:
                operation.pop("parameters")
    return document


def install(app: FastAPI) -> None:
    """Serve the completed document at /openapi.json (built once, on first use)."""
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
