"""Hostile input at the edges: sizes, depths, lengths, characters, headers, rates.

Every one of these gets a clear 4xx JSON error (naming the field where there is
one), never a 500, a hang or a partial write.
"""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from reload_billing.testing import live
from tests.helpers import post, usage_body


def assert_error(response, status, code=None, param=None):
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["status"] == "error" and body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code, body
    if param is not None:
        assert body["error"].get("param") == param, body


def test_a_body_over_the_limit_is_413_with_or_without_content_length(live_server, tenant):
    limit = live_server.settings.max_body_bytes
    big = b'{"description": "' + b"x" * (limit + 10) + b'"}'
    with tenant.client(live_server.url) as client:
        declared = client.post(
            "/v1/tp/usage", content=big, headers={"Content-Type": "application/json"}
        )

        def chunks():
            for start in range(0, len(big), 65536):
                yield big[start : start + 65536]

        streamed = client.post(
            "/v1/tp/usage", content=chunks(), headers={"Content-Type": "application/json"}
        )
    assert "content-length" not in {k.lower() for k in streamed.request.headers}
    assert_error(declared, 413, "payload_too_large")
    assert_error(streamed, 413, "payload_too_large")


@pytest.mark.parametrize("depth", [33, 1000, 100_000])
def test_deeply_nested_json_is_400(live_server, tenant, depth):
    nested = "[" * depth + "]" * depth
    raw = '{"aiAgentId": "a", "description": "d", "totalCost": 1, "modelParameters": {"x": %s}}'
    with tenant.client(live_server.url) as client:
        response = client.post(
            "/v1/tp/usage",
            content=(raw % nested).encode(),
            headers={"Content-Type": "application/json"},
        )
    assert_error(response, 400, "invalid_json")


@pytest.mark.parametrize(
    ("field", "value", "param"),
    [
        ("description", "d" * 2001, "description"),
        ("aiAgentId", "a" * 65, "aiAgentId"),
        ("idempotencyKey", "k" * 256, "idempotencyKey"),
        ("shortDescription", "s" * 201, "shortDescription"),
        ("usageType", "u" * 65, "usageType"),
        ("llmModel", "m" * 201, "llmModel"),
        ("llmProvider", "p" * 201, "llmProvider"),
        ("metadata", {f"k{i}": "v" for i in range(51)}, "metadata"),
        ("metadata", {"k": "v" * 501}, "metadata"),
        ("metadata", {"k" * 41: "v"}, "metadata"),
        ("modelParameters", {"blob": "x" * 9000}, "modelParameters"),
        ("totalCost", "1" + "0" * 5000, "totalCost"),
    ],
)
def test_overlong_values_are_400_naming_the_field(live_server, db, tenant, field, value, param):
    with tenant.client(live_server.url) as client:
        response = post(client, "/v1/tp/usage", usage_body(tenant.agent_id, "1", **{field: value}))
        listed = client.get("/v1/tp/usage-reports").json()["pagination"]["total"]
    assert_error(response, 400, param=param)
    assert listed == 0


def test_an_overlong_idempotency_key_header_is_400(live_server, tenant):
    with tenant.client(live_server.url) as client:
        response = post(
            client,
            "/v1/tp/usage",
            usage_body(tenant.agent_id),
            headers={"Idempotency-Key": "k" * 256},
        )
    assert_error(response, 400, param="idempotencyKey")


def test_an_integer_too_long_to_parse_is_400(live_server, tenant):
    raw = f'{{"aiAgentId": "{tenant.agent_id}", "description": "d", "totalCost": {"9" * 5000}}}'
    with tenant.client(live_server.url) as client:
        response = client.post(
            "/v1/tp/usage", content=raw.encode(), headers={"Content-Type": "application/json"}
        )
    assert_error(response, 400)


@pytest.mark.parametrize(
    ("escaped", "param"),
    [
        ('"description": "before\\u0000after"', "description"),
        ('"description": "lone \\ud800 surrogate"', "description"),
        ('"description": "d", "metadata": {"k": "\\u0000"}', "metadata.k"),
        ('"description": "d", "idempotencyKey": "key\\u0000"', "idempotencyKey"),
    ],
)
def test_nul_and_lone_surrogates_in_json_are_400(live_server, tenant, escaped, param):
    raw = f'{{"aiAgentId": "{tenant.agent_id}", "totalCost": 1, {escaped}}}'
    with tenant.client(live_server.url) as client:
        response = client.post(
            "/v1/tp/usage", content=raw.encode(), headers={"Content-Type": "application/json"}
        )
        listed = client.get("/v1/tp/usage-reports").json()["pagination"]["total"]
    assert_error(response, 400, param=param)
    assert listed == 0


@pytest.mark.parametrize(
    ("path", "param"),
    [
        ("/v1/tp/usage-reports?userId=a%00b", "userId"),
        ("/v1/tp/usage-reports?usageType=%00", "usageType"),
        ("/v1/tp/usage-reports/use_%00", "path"),
        ("/v1/tp/reports/usage?userId=%00", "userId"),
    ],
)
def test_nul_in_path_or_query_is_400(live_server, tenant, path, param):
    with tenant.client(live_server.url) as client:
        response = client.get(path)
    assert_error(response, 400, param=param)


def test_nul_in_basic_credentials_is_401(live_server, tenant):
    with httpx.Client(base_url=live_server.url, auth=("cli_\x00", "secret")) as client:
        response = post(client, "/v1/tp/usage", usage_body(tenant.agent_id))
    assert_error(response, 401, "invalid_credentials")


@pytest.mark.parametrize(
    ("raw_field", "status", "param"),
    [
        ('"modelParameters": {"temperature": 0.7, "tiny": 1e-400, "big": 1e300}', 201, None),
        ('"modelParameters": {"temperature": 1e400}', 400, "modelParameters"),
        ('"modelParameters": {"seed": 123456789012345678901234567890}', 400, "modelParameters"),
        ('"taxRate": 1e-50', 400, "taxRate"),
        ('"processingTimeMs": 1e-400', 201, None),
    ],
)
def test_extreme_numbers_are_stored_or_refused_never_500(
    live_server, tenant, raw_field, status, param
):
    raw = f'{{"aiAgentId": "{tenant.agent_id}", "description": "d", "totalCost": 0, {raw_field}}}'
    with tenant.client(live_server.url) as client:
        response = client.post(
            "/v1/tp/usage", content=raw.encode(), headers={"Content-Type": "application/json"}
        )
    if status == 201:
        assert response.status_code == 201, response.text
    else:
        assert_error(response, status, param=param)


def test_huge_amount_filters_are_400_not_an_overflow(live_server, tenant):
    with tenant.client(live_server.url) as client:
        response = client.get("/v1/tp/usage-reports", params={"minAmount": "1e300"})
    assert_error(response, 400, param="minAmount")


@pytest.mark.parametrize("size", [40_000, 100_000, 1_000_000])
def test_oversized_headers_are_431_at_once(live_server, tenant, size):
    started = time.monotonic()
    with tenant.client(live_server.url) as client:
        response = client.get("/v1/tp/user", headers={"X-Padding": "a" * size})
    assert_error(response, 431, "headers_too_large")
    assert time.monotonic() - started < 5


def test_too_many_headers_are_431(live_server, tenant):
    with tenant.client(live_server.url) as client:
        response = client.get("/v1/tp/user", headers=[(f"X-H{i}", "v") for i in range(150)])
    assert_error(response, 431, "headers_too_large")


def test_a_malformed_header_line_is_refused_by_the_http_parser(live_server):
    host, port = live_server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"GET /v1/tp/user HTTP/1.1\r\nHost: x\r\nIdempotency-Key: a\x00b\r\n\r\n")
        answer = sock.recv(1000)
    assert answer.startswith(b"HTTP/1.1 400")


@pytest.fixture
def limited_server(settings):
    server = live.start(
        settings.model_copy(update={"rate_limit_per_second": 0.5, "rate_limit_burst": 5})
    )
    try:
        yield server
    finally:
        server.stop()


def test_rate_limit_per_client_answers_429_with_retry_after(limited_server, make_tenant):
    first, second = make_tenant(), make_tenant()
    with first.client(limited_server.url) as client:
        statuses = [client.get("/v1/tp/user").status_code for _ in range(10)]
        limited = client.get("/v1/tp/user")
        report = post(client, "/v1/tp/usage", usage_body(first.agent_id))
    assert statuses[:5] == [200] * 5 and 429 in statuses[5:]
    assert_error(limited, 429, "rate_limited")
    assert int(limited.headers["retry-after"]) >= 1
    assert report.status_code == 429  # the hot path is limited too, before any work
    # Another client has its own allowance; a wrong secret for the first client's id
    # spends none of it either.
    with second.client(limited_server.url) as client:
        assert client.get("/v1/tp/user").status_code == 200
    with httpx.Client(base_url=limited_server.url, auth=(second.client_id, "wrong")) as intruder:
        assert {intruder.get("/v1/tp/user").status_code for _ in range(10)} <= {401, 429}
    with second.client(limited_server.url) as client:
        assert client.get("/v1/tp/user").status_code == 200
    # The bucket refills: after Retry-After the first client is served again.
    time.sleep(float(limited.headers["retry-after"]))
    with first.client(limited_server.url) as client:
        assert client.get("/v1/tp/user").status_code == 200


def test_rate_limit_is_read_from_the_environment_and_zero_turns_it_off(monkeypatch, settings):
    monkeypatch.setenv("RELOAD_RATE_LIMIT_PER_SECOND", "0")
    monkeypatch.setenv("RELOAD_DATABASE_URL", settings.database_url)
    from reload_billing.config import Settings

    unlimited = Settings(secret_key="x")
    assert unlimited.rate_limit_per_second == 0
    assert Settings.model_fields["rate_limit_per_second"].default >= 5000
    server = live.start(unlimited)
    try:
        with httpx.Client(base_url=server.url) as client:
            statuses = {client.get("/v1/tp/user").status_code for _ in range(50)}
    finally:
        server.stop()
    assert statuses == {401}
