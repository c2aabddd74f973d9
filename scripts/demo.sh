#!/usr/bin/env bash
# Set up (idempotent) and run the main job end to end on embedded defaults. Extra arguments go to
# `python -m jobs.demo` (e.g. `--output DIR`, `key=value` overrides).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
export RAY_USAGE_STATS_ENABLED=0 MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true DS_ACCELERATOR=cpu
export TORCH_EXTENSIONS_DIR="${TORCH_EXTENSIONS_DIR:-$ROOT/.torch_extensions}"
cd "$ROOT"
exec "${TSI_VENV:-$ROOT/.venv}/bin/python" -m jobs.demo "$@"
