#!/usr/bin/env bash
# Set up (only the first time, or after pyproject.toml / scripts/setup.sh change) and open
# JupyterLab on the quickstart notebook with the offline demo model.
# Extra arguments go to `interp-widgets demo` (e.g. --port 8890 --no-browser).
set -euo pipefail
cd "$(dirname "$0")/.."
stamp=.venv/.iw-setup
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ ! -x .venv/bin/interp-widgets ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  bash scripts/setup.sh
  echo "$want" > "$stamp"
fi
exec .venv/bin/interp-widgets demo --dir notebooks-local "$@"
