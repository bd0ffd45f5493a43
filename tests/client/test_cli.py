from __future__ import annotations

import json
from collections.abc import Callable

import typer
from typer.testing import CliRunner

from reload_billing.client.cli import register

from .loopback import Loopback, Reply, failure


def app() -> typer.Typer:
    main = typer.Typer()
    register(main)
    return main


def test_register_adds_the_developer_commands() -> None:
    result = CliRunner().invoke(app(), ["--help"])
    assert result.exit_code == 0
    assert "usage" in result.output and "preview-charge" in result.output
    result = CliRunner().invoke(app(), ["usage", "--help"])
    assert "report" in result.output and "list" in result.output


def test_report_without_a_token_is_one_json_error() -> None:
    env = {"RELOAD_CLIENT_ID": "c", "RELOAD_CLIENT_SECRET": "s", "RELOAD_ACCESS_TOKEN": ""}
    args = ["usage", "report", "--agent", "a", "--description", "d", "--cost", "1", "--json"]
    result = CliRunner().invoke(app(), args, env=env)
    assert result.exit_code == 1
    answer = json.loads(result.output)
    assert answer["status"] == "error" and "access token" in answer["error"]["message"]


def test_missing_credentials_are_reported() -> None:
    env = {"RELOAD_CLIENT_ID": "", "RELOAD_CLIENT_SECRET": "", "RELOAD_ACCESS_TOKEN": "t"}
    args = ["preview-charge", "--agent", "a", "--amount", "1", "--description", "d", "--json"]
    result = CliRunner().invoke(app(), args, env=env)
    assert result.exit_code == 1
    assert json.loads(result.output)["error"]["code"] == "missing_credentials"


def test_server_errors_keep_their_code_and_param(loopback: Callable[..., Loopback]) -> None:
    server = loopback(
        [Reply(400, failure("invalid_request", "totalCost is not a number", param="totalCost"))]
    )
    env = {
        "RELOAD_CLIENT_ID": "c",
        "RELOAD_CLIENT_SECRET": "s",
        "RELOAD_API_URL": server.url,
        "RELOAD_ACCESS_TOKEN": "t",
    }
    args = ["usage", "report", "--agent", "a", "--description", "d", "--cost", "1", "--json"]
    result = CliRunner().invoke(app(), args, env=env)
    assert result.exit_code == 1
    assert json.loads(result.output)["error"] == {
        "code": "invalid_request",
        "message": "totalCost is not a number",
        "param": "totalCost",
    }
    bad_cost = ["usage", "report", "--agent", "a", "--description", "d", "--cost", "abc", "--json"]
    result = CliRunner().invoke(app(), bad_cost, env=env)
    assert result.exit_code == 1 and "not a number" in json.loads(result.output)["message"]
    assert len(server.received) == 1  # the bad amount never left the machine
