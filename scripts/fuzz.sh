#!/usr/bin/env bash
# The long fuzzing run: the suite's tests/fuzz with many more random cases (default 20,000
# each) and fresh randomness. Extra arguments go to pytest (e.g. -k gguf).
#
#   bash scripts/fuzz.sh                 # ALLAMA_FUZZ_EXAMPLES=5000 bash scripts/fuzz.sh for a shorter one
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC1091
source .venv/bin/activate
export ALLAMA_FUZZ_EXAMPLES="${ALLAMA_FUZZ_EXAMPLES:-20000}"
export ALLAMA_FUZZ_SEED="${ALLAMA_FUZZ_SEED:-$RANDOM$RANDOM}"
echo "fuzzing with ALLAMA_FUZZ_SEED=$ALLAMA_FUZZ_SEED (set it to replay a failure)"
exec python -m pytest -q tests/fuzz "$@"
