#!/usr/bin/env bash
# Bootstraps the project, then runs the OpenAI-compatible server on 127.0.0.1:8000.
# Without --model it builds a tiny random-weight llama (gibberish replies, but every
# layer runs); pass a real GGUF and any `allama serve` flag:
#   bash scripts/serve.sh [--model PATH.gguf] [--n_parallel 8] [--port 8000] ...
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
# shellcheck disable=SC1091
source .venv/bin/activate
args=("$@")
if [[ " $* " != *" --model "* && " $* " != *" --config "* ]]; then
    model=.cache/serve-tiny.gguf
    if [ ! -f "$model" ]; then
        mkdir -p .cache
        python -c "from allama.testing.model_builder import LLAMA_PRESETS, build_llama; build_llama('$model', LLAMA_PRESETS['tiny'])"
    fi
    echo "no --model given: serving a tiny random-weight llama ($model)" >&2
    args=(--model "$model" --model_alias tiny "${args[@]}")
fi
exec allama serve --host 127.0.0.1 --port 8000 "${args[@]}"
