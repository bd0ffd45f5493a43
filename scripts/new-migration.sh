#!/usr/bin/env bash
# A new Alembic migration for what changed in the tables of the domain packages'
# models.py, numbered after the newest one:  scripts/new-migration.sh "what changed"
# Read the file it writes: autogenerate misses some changes (renames, data moves).
set -euo pipefail
cd "$(dirname "$0")/.."
message=${1:?usage: scripts/new-migration.sh "what changed"}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
.venv/bin/python - "$tmp" "$message" <<'PY'
import sys
from alembic import command
from reload_billing.migrate import alembic_config, head, upgrade
url = f"sqlite:///{sys.argv[1]}/current.db"
upgrade(url)
config = alembic_config(url)
command.revision(config, message=sys.argv[2], autogenerate=True, rev_id=f"{int(head()) + 1:04d}")
PY
new=$(ls -t src/reload_billing/migrations/versions/*.py | head -1)
sed -i '/^Create Date:/d' "$new"
.venv/bin/ruff format -q "$new" || true
echo "wrote $new"
