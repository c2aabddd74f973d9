#!/usr/bin/env bash
# Set up (idempotent) and run the main job end to end on embedded defaults. Extra arguments go to
# `python -m jobs.demo` (e.g. `--config FILE`, `output=DIR`, `key.sub=value` overrides).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
exec "$PYTHON" -m jobs.demo "$@"
