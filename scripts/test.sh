#!/usr/bin/env bash
# Runs the whole test suite from a clean clone: bootstrap, then pytest.
# Extra arguments go to pytest (e.g. bash scripts/test.sh -k sampler).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -n "${ALLAMA_BOOTSTRAPPED:-}" ] || bash scripts/bootstrap.sh
# shellcheck disable=SC1091
source .venv/bin/activate

status=0
python -m pytest -q -ra "$@" || status=$?
if [ "$status" -eq 5 ]; then
    echo "pytest collected no tests: that is a failure, not a pass" >&2
    exit 1
fi
exit "$status"
