#!/usr/bin/env bash
# Rebuild the JS bundle from js/ (npm ci && npm run build) and fail if it differs from the
# committed interp_widgets/static/, so the bundle shipped in the wheel is always the source's.
set -euo pipefail
cd "$(dirname "$0")/.."
(cd js && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build)
status=0
if ! git diff --exit-code --stat HEAD -- interp_widgets/static; then
  status=1
fi
untracked=$(git ls-files --others --exclude-standard -- interp_widgets/static)
if [ -n "$untracked" ]; then
  echo "not committed: $untracked"
  status=1
fi
if [ "$status" != 0 ]; then
  echo "interp_widgets/static differs from a fresh build of js/:" \
       "run 'cd js && npm run build' and commit interp_widgets/static." >&2
fi
exit "$status"
