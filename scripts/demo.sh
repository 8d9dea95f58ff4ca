#!/usr/bin/env bash
# Set up (if needed) and open JupyterLab on the quickstart notebook with the offline demo model.
# Extra arguments go to `interp-widgets demo` (e.g. --port 8890 --no-browser).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/interp-widgets demo --dir notebooks-local "$@"
