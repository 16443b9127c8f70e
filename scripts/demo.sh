#!/usr/bin/env bash
# Bootstraps the project, then generates text. Without --model the demo builds a
# tiny random-weight llama, so the text is gibberish but the whole stack runs.
#   bash scripts/demo.sh [--model PATH.gguf] [--prompt TEXT] [-n TOKENS]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
# shellcheck disable=SC1091
source .venv/bin/activate
exec allama demo "$@"
