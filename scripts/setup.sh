#!/usr/bin/env bash
# Idempotent set-up on a fresh machine: system ffmpeg, a virtualenv in .venv, torch first
# (so deepspeed/ray never resolve a CUDA torch on a CPU box), DeepSpeed without build isolation,
# then this package with its test extras. Re-running is cheap: a stamp file records what was
# installed and the work is skipped when nothing changed. System packages (ffmpeg, PostgreSQL for
# the backup test) are installed only when missing.
#
# Environment:
#   TSI_VENV             where the virtualenv goes (default: <repo>/.venv)
#   TSI_PYTHON           interpreter to create it with (default: python3.11, else python3)
#   TSI_TORCH_SPEC       torch requirement (default: torch==2.13.0, the CPU wheel on this kind of machine)
#   TSI_TORCH_INDEX_URL  extra index for torch, e.g. PyTorch's CPU or cu12x wheel index on a
#                        machine with internet (leave unset to take what pip finds)
#   TSI_SKIP_APT=1       never call apt-get (then ffmpeg/ffprobe must already be on PATH)
#   TSI_LOCK=1           install the exact versions CI tested (infra/constraints.txt, written by
#                        scripts/lock.sh) instead of resolving the newest that pyproject allows
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${TSI_VENV:-$ROOT/.venv}"
PY="${TSI_PYTHON:-$(command -v python3.11 || command -v python3)}"
TORCH_SPEC="${TSI_TORCH_SPEC:-torch==2.13.0}"

log() { printf '[setup] %s\n' "$*" >&2; }

ensure_ffmpeg() {
  if command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null; then return; fi
  if [[ "${TSI_SKIP_APT:-0}" != 1 ]] && command -v apt-get >/dev/null && [[ "$(id -u)" == 0 ]]; then
    log "installing ffmpeg/ffprobe with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg >/dev/null
  fi
  if ! command -v ffmpeg >/dev/null || ! command -v ffprobe >/dev/null; then
    log "ERROR: the 'ffmpeg' and 'ffprobe' binaries are required and could not be installed here."
    log "       Install them with your OS package manager (Debian/Ubuntu: apt-get install ffmpeg; macOS: brew install ffmpeg)."
    exit 1
  fi
}

# PostgreSQL server binaries for tests/integration/test_postgres_backup.py (MLflow's backup and restore against
# a real database). Debian's package; the test starts its own instance on 127.0.0.1. Optional: the
# test skips without it outside CI.
ensure_postgres() {
  if compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null; then return; fi
  if [[ "${TSI_SKIP_APT:-0}" != 1 ]] && command -v apt-get >/dev/null && [[ "$(id -u)" == 0 ]]; then
    log "installing postgresql with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
  else
    log "WARNING: PostgreSQL is not installed and cannot be installed here: tests/integration/test_postgres_backup.py will skip (it fails under CI)"
  fi
}

LOCK_FILE="$ROOT/infra/constraints.txt"
stamp_of() {
  cat "$ROOT/pyproject.toml" "$ROOT/scripts/setup.sh" | sha256sum | cut -c1-16
  echo "$TORCH_SPEC ${TSI_TORCH_INDEX_URL:-} lock=${TSI_LOCK:-0}"
  if [[ "${TSI_LOCK:-0}" == 1 ]]; then sha256sum "$LOCK_FILE" | cut -c1-16; fi
}

ensure_ffmpeg
ensure_postgres
STAMP_FILE="$VENV/.tsi-setup-stamp"
if [[ -f "$STAMP_FILE" ]] && [[ "$(cat "$STAMP_FILE")" == "$(stamp_of)" ]]; then
  exit 0
fi

[[ -x "$VENV/bin/python" ]] || { log "creating $VENV with $PY"; "$PY" -m venv "$VENV"; }
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
"${PIP[@]}" install -U pip wheel setuptools ninja

torch_args=("$TORCH_SPEC")
[[ -n "${TSI_TORCH_INDEX_URL:-}" ]] && torch_args+=(--extra-index-url "$TSI_TORCH_INDEX_URL")
log "installing $TORCH_SPEC"
"${PIP[@]}" install "${torch_args[@]}"
# Pin exactly the torch we got so no later resolver swaps it for another build.
CONSTRAINTS="$VENV/tsi-constraints.txt"
"$VENV/bin/python" -c 'import torch; print("torch==" + torch.__version__)' > "$CONSTRAINTS"
if [[ "${TSI_LOCK:-0}" == 1 ]]; then
  log "pinning every other package to $LOCK_FILE"
  grep -v -E '^(#|torch==)' "$LOCK_FILE" >> "$CONSTRAINTS"
fi

# No DeepSpeed op is compiled: training passes a torch.optim optimizer, and the CPU backend's
# shared-memory all-reduce (inference only) is switched off by pipelines/train/engine.py.
log "installing deepspeed (no build isolation, no ops built)"
DS_BUILD_OPS=0 "${PIP[@]}" install -c "$CONSTRAINTS" --no-build-isolation deepspeed

log "installing the package and its test extras"
"${PIP[@]}" install -c "$CONSTRAINTS" -e "$ROOT[test]"

stamp_of > "$STAMP_FILE"
log "ready: $VENV"
