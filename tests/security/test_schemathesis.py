"""Hostile input, driven by the OpenAPI document.

Every ``/v1/tp`` operation of ``/openapi.json`` is fuzzed over real HTTP with valid
client credentials and access token, with data that fits the schema and data that
does not (schemathesis strategies driven by hypothesis). No answer may be a 5xx,
break the documented schema (status, content type, headers, body), accept data
the schema forbids, or be a 2xx once the credentials are taken away. Operations
added later are picked up by themselves.
"""

from __future__ import annotations

import base64
import json
import re

import httpx
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from tests.helpers import post, usage_body
from tests.reliability.audit import FIGURES

EXAMPLES = 100  # per operation and mode
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    ignored_auth,
    unsupported_method,
]


def aimed(case, agent_id, record_id):
    """Point a valid case at the tenant's real agent and record, so that fuzzing
    reaches the charge, the refund and the replay instead of stopping at 404."""
    if isinstance(case.body, dict) and "aiAgentId" in case.body:
        case.body["aiAgentId"] = agent_id
    if case.path_parameters and "record_id" in case.path_parameters:
        case.path_parameters["record_id"] = record_id
    return case


def strategy_for(operation, mode, agent_id, record_id):
    cases = operation.as_strategy(generation_mode=mode)
    if mode is not GenerationMode.POSITIVE:
        return cases
    return st.tuples(cases, st.booleans()).map(
        lambda pair: aimed(pair[0], agent_id, record_id) if pair[1] else pair[0]
    )


def credentials_for(case, headers):
    """Valid credentials replace the generated ones, except when the headers are
    the invalid part of a negative case: a dropped or broken ``Authorization`` must
    reach the server dropped or broken, or a valid request would be judged as
    invalid data the server wrongly accepted."""
    header = case.meta.components.get(ParameterLocation.HEADER) if case.meta else None
    if header is not None and header.mode.is_negative:
        return None
    return headers


def fuzz(label, cases, headers, tried, statuses):
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
    )
    @given(case=cases)
    def run(case):
        tried[label] = tried.get(label, 0) + 1
        response = case.call_and_validate(headers=credentials_for(case, headers), checks=CHECKS)
        statuses[str(response.status_code)] = statuses.get(str(response.status_code), 0) + 1

    run()


def test_every_operation_survives_fuzzing(backend, live_server, tenant):
    schema = schemathesis.openapi.from_url(live_server.url + "/openapi.json")
    operations = [
        result.ok()
        for result in schema.get_all_operations()
        if result.ok().path.startswith("/v1/tp/")
    ]
    assert len(operations) >= 9
    basic = base64.b64encode(f"{tenant.client_id}:{tenant.client_secret}".encode()).decode()
    headers = {"Authorization": f"Basic {basic}", "X-Access-Token": tenant.access_token}
    with tenant.client(live_server.url) as client:
        record = post(client, "/v1/tp/usage", usage_body(tenant.agent_id, "0.5"))
    assert record.status_code == 201
    record_id = record.json()["data"]["id"]
    tried: dict[str, int] = {}
    statuses: dict[str, int] = {}
    failures: list[str] = []
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            cases = strategy_for(operation, mode, tenant.agent_id, record_id)
            try:
                fuzz(operation.label, cases, headers, tried, statuses)
            except (Exception, BaseExceptionGroup) as failure:  # collect all, report together
                failures.append(f"{operation.label} ({mode}): {failure}")
    FIGURES.mkdir(parents=True, exist_ok=True)
    (FIGURES / f"schemathesis-{backend}.json").write_text(
        json.dumps(
            {"operations": len(operations), "inputs": sum(tried.values()), "statuses": statuses},
            indent=2,
            sort_keys=True,
        )
    )
    assert not failures, "\n\n".join(failures)


def test_no_operation_answers_2xx_without_valid_credentials(live_server, tenant):
    """Every /v1/tp operation, with no credentials, wrong ones, or a token alone: 401."""
    document = httpx.get(live_server.url + "/openapi.json").json()
    basic = base64.b64encode(f"{tenant.client_id}:wrong-secret".encode()).decode()
    attempts = [
        {},
        {"Authorization": f"Basic {basic}", "X-Access-Token": tenant.access_token},
        {"Authorization": "Bearer " + tenant.access_token},
        {"X-Access-Token": tenant.access_token},
    ]
    checked = 0
    for path, operations in document["paths"].items():
        if not path.startswith("/v1/tp/"):
            continue
        url = re.sub(r"{\w+}", "use_00000000", path)
        for method in operations:
            for headers in attempts:
                response = httpx.request(
                    method,
                    live_server.url + url,
                    headers={**headers, "Content-Type": "application/json"},
                    content=b"{}",
                )
                checked += 1
                if path == "/v1/tp/token":  # credentials travel in the body there
                    assert response.status_code in (400, 401), (method, path, response.text)
                else:
                    assert response.status_code == 401, (method, path, headers, response.text)
    assert checked >= 36
