#!/usr/bin/env bash
# Set up (idempotent) and run the test suite; extra arguments go to pytest.
#   bash scripts/test.sh           everything (what CI runs)
#   bash scripts/test.sh --fast    tests/unit only: no Ray, no MLflow server, no ffmpeg (~1 min)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
if [[ "${1:-}" == "--fast" ]]; then
  shift
  exec "$PYTHON" -m pytest tests/unit "$@"
fi
exec "$PYTHON" -m pytest "$@"
