#!/usr/bin/env bash
# Set up everything (Python packages, Debian's chromium, the JS toolchain) and run every test:
# lint, the JS bundle check and unit tests, Python unit tests, browser tests, notebooks.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
export PATH="$PWD/.venv/bin:$PATH"
echo "== lint"
ruff check .
echo "== JS: bundle is reproducible, typecheck, unit tests"
bash scripts/check_bundle.sh
(cd js && npm run --silent typecheck && npm test --silent)
echo "== Python: unit, browser (e2e) and notebook tests"
python -m pytest -q -p no:cacheprovider tests notebooks --nbval-lax --durations=15 "$@"
