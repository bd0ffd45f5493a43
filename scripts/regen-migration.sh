#!/usr/bin/env bash
# Until the first release, the schema is one initial migration generated from the
# tables in the domain packages' models.py. After changing a table, run this.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
rm -f src/reload_billing/migrations/versions/0001_initial_schema.py
.venv/bin/python - "$tmp" <<'PY'
import sys
from alembic import command
from reload_billing.migrate import alembic_config
config = alembic_config(f"sqlite:///{sys.argv[1]}/empty.db")
command.revision(config, message="initial schema", autogenerate=True, rev_id="0001")
PY
sed -i '/^Create Date:/d' src/reload_billing/migrations/versions/0001_initial_schema.py
.venv/bin/ruff format -q src/reload_billing/migrations/versions/0001_initial_schema.py || true
rm -rf "$tmp"
echo "regenerated src/reload_billing/migrations/versions/0001_initial_schema.py"
