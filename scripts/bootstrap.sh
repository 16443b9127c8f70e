#!/usr/bin/env bash
# Prepares a development environment from a clean clone: a virtual environment
# in .venv, the pinned llama.cpp tree, and an editable build of allama in
# build/dev. Idempotent: a second run only rebuilds what changed.
#
#   bash scripts/bootstrap.sh            # then: source .venv/bin/activate
#
# CMAKE_ARGS passes through to llama.cpp (e.g. CMAKE_ARGS="-DGGML_CUDA=on").
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
# shellcheck disable=SC1091
source .venv/bin/activate
python -m pip install --quiet --upgrade pip
python -m pip install --quiet "scikit-build-core>=0.10" "nanobind>=2.4" cmake ninja

python vendor/fetch_llama_cpp.py

# ccache keys on paths: make them relative to the checkout so that another
# clone (or the wheel's build folder) reuses the cache.
export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=true

python -m pip install --quiet --no-build-isolation \
    -Cbuild-dir=build/dev \
    -Ceditable.rebuild="${ALLAMA_EDITABLE_REBUILD:-true}" \
    -Ceditable.verbose=false \
    -e ".[${ALLAMA_EXTRAS:-test}]"
# The gguf package that matches the pinned llama.cpp (test models are built with it).
python -m pip install --quiet ./vendor/llama.cpp/gguf-py
