#!/usr/bin/env bash
# Set up a virtual environment in .venv with interp-widgets installed (editable).
#   bash scripts/setup.sh          # runtime only: enough for the demo
#   bash scripts/setup.sh --test   # plus test tools, Debian's chromium and the JS toolchain
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# torch first, pinned: this version's CPU build is the one the package registries serve quickly;
# an unpinned torch may pull a multi-GB CUDA build.
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.13.0"
if [ "${1:-}" = "--test" ]; then
  .venv/bin/python -m pip install -q -e ".[test]"
  if [ ! -x /usr/bin/chromium ]; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
  fi
  (cd js && npm ci --no-audit --no-fund --loglevel=error)
else
  .venv/bin/python -m pip install -q -e .
fi
