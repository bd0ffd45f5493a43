from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from decimal import Decimal
from importlib import metadata

SERVER_SIDE = {"fastapi", "starlette", "sqlalchemy", "alembic", "uvicorn", "psycopg", "orjson"}


def test_the_sdk_imports_only_stdlib_httpx_and_pydantic() -> None:
    code = (
        "import sys, reload_billing.client, reload_billing.client.integrations, "
        "reload_billing.client.oauth\n"
        "print(sorted({m.split('.')[0] for m in sys.modules}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    loaded = set(eval(out))  # a printed list of module names
    # (httpx itself loads rich when it is installed, for its command line)
    assert not loaded & (SERVER_SIDE | {"genai_prices", "typer"})
    assert not any(name.startswith("reload_billing.") for name in loaded)


def test_pricing_loads_no_server_code() -> None:
    code = (
        "import sys, reload_billing.pricing as p\n"
        "p.provider_cost('gpt-4o', 'openai', 1, 1)\n"
        "print(sorted(m for m in sys.modules if m.startswith('reload_billing') "
        f"or m.split('.')[0] in {sorted(SERVER_SIDE)!r}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert eval(out) == [
        "reload_billing",
        "reload_billing.pricing",
        "reload_billing.pricing.provider",
        "reload_billing.pricing.rules",
    ]


def _requirement_name(line: str) -> str:
    return re.split(r"[\s\[<>=!~;]", line, maxsplit=1)[0].lower().replace("_", "-")


def test_the_client_extra_installs_without_the_server() -> None:
    """`pip install 'reload-billing[client]'` brings the SDK, prices and the
    developer's commands, and none of the server's packages."""
    installed = []
    for line in metadata.requires("reload-billing") or []:
        marker = line.partition(";")[2]
        if not marker or re.search(r"""extra\s*==\s*["']client["']""", marker):
            installed.append(_requirement_name(line))
    assert sorted(installed) == ["genai-prices", "httpx", "pydantic", "rich", "typer"]


# The server's packages made unimportable, as in an install without them.
WITHOUT_SERVER = (
    "import sys\n"
    f"for name in {sorted(SERVER_SIDE | {'pydantic_settings', 'jinja2', 'argon2'})!r}:\n"
    "    sys.modules[name] = None\n"
    "from reload_billing.console import main\n"
    "main()\n"
)


def test_the_reload_command_without_the_server_offers_the_developer_commands() -> None:
    shown = subprocess.run(
        [sys.executable, "-c", WITHOUT_SERVER, "--help"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert shown.returncode == 0, shown.stderr
    commands = re.findall(r"^  (\S+)  ", shown.stdout.partition("Commands:")[2], re.M)
    assert commands == ["preview-charge", "usage"]
    assert "pip install 'reload-billing[server]'" in " ".join(shown.stdout.split())


def test_the_developer_commands_report_usage_without_the_server_installed(
    live_server, tenant
) -> None:
    env = {
        **os.environ,
        "RELOAD_API_URL": live_server.url,
        "RELOAD_CLIENT_ID": tenant.client_id,
        "RELOAD_CLIENT_SECRET": tenant.client_secret,
        "RELOAD_ACCESS_TOKEN": tenant.access_token,
    }
    args = ["usage", "report", "--agent", tenant.agent_id, "--description", "Wrote a haiku"]
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_SERVER, *args, "--cost", "0.25", "--charge", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    record = json.loads(done.stdout, parse_float=Decimal)["data"]
    assert (record["status"], record["chargedAmount"]) == ("completed", Decimal("0.25"))
