# Sourced by demo.sh and test.sh: set up (idempotent) and export the runtime environment.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
export RAY_USAGE_STATS_ENABLED=0 MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true
# DeepSpeed's CPU accelerator only where no CUDA device exists: a GPU workstation trains on its GPU
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  export DS_ACCELERATOR="${DS_ACCELERATOR:-cpu}"
fi
export TORCH_EXTENSIONS_DIR="${TORCH_EXTENSIONS_DIR:-$ROOT/.torch_extensions}"
PYTHON="${TSI_VENV:-$ROOT/.venv}/bin/python"
# The venv's tools first, as an activated venv would have them: torch JIT-builds DeepSpeed's CPU
# op with whichever `ninja` is on PATH, and two ninja versions (Debian's 1.11, the venv's 1.13)
# hash build commands differently, so each would rebuild the op (~50-95 s) after the other.
export PATH="$(dirname "$PYTHON"):$PATH"
cd "$ROOT"
