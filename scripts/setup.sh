#!/usr/bin/env bash
# Set up a virtual environment in .venv with interp-widgets installed (editable).
#   bash scripts/setup.sh          # runtime and JupyterLab: enough for the demo
#   bash scripts/setup.sh --test   # plus test tools, Debian's chromium, the JS toolchain and
#                                  # SAELens in .venv-saelens, Delphi in .venv-delphi,
#                                  # circuit-tracer in .venv-circuit-tracer
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
  # ray: the distributed scan's tests (tests/test_units_ray.py) run on a local cluster
  .venv/bin/python -m pip install -q -e ".[test,ray]"
  if [ ! -x /usr/bin/chromium ]; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
  fi
  (cd js && npm ci --no-audit --no-fund --loglevel=error)
  # SAELens in its own virtualenv (it pins transformer-lens < 4): the file-format test checks
  # that it reads what we save, and benchmarks/bench_sae.py races its trainer
  if [ ! -x .venv-saelens/bin/python ]; then
    "$PY" -m venv .venv-saelens
  fi
  .venv-saelens/bin/python -m pip install -q "torch==2.13.0" "sae-lens==6.54.0"
  # Delphi in its own virtualenv: the latent-cache test checks that its loader reads what we
  # write. eai-delphi requires vLLM, bitsandbytes and sparsify, which only its LLM clients and
  # SAE loaders use (not its cache and loader), so it goes in without them, beside what
  # delphi.latents imports
  if [ ! -x .venv-delphi/bin/python ]; then
    "$PY" -m venv .venv-delphi
  fi
  .venv-delphi/bin/python -m pip install -q "torch==2.13.0" transformers safetensors numpy \
    jaxtyping "asyncer>=0.0.8" simple_parsing blobfile orjson faiss-cpu sentence-transformers \
    datasets
  .venv-delphi/bin/python -m pip install -q --no-deps "eai-delphi==0.1.3"
  # circuit-tracer in its own virtualenv (it pins transformers 4.57 and TransformerLens 3's
  # HookedTransformer): tests/test_circuit_tracer_peer.py compares its attribution graphs with
  # ours and benchmarks/bench_graph.py races it
  if [ ! -x .venv-circuit-tracer/bin/python ]; then
    "$PY" -m venv .venv-circuit-tracer
  fi
  .venv-circuit-tracer/bin/python -m pip install -q "torch==2.13.0"
  .venv-circuit-tracer/bin/python -m pip install -q "circuit-tracer==0.5.0" \
    "transformer-lens==3.2.1" "transformers==4.57.3"
else
  .venv/bin/python -m pip install -q -e ".[demo]"
fi
