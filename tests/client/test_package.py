from __future__ import annotations

import subprocess
import sys

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
