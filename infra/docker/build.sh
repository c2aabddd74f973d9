#!/usr/bin/env bash
# Build both platform images, print their digests for infra/k8s/values.yaml, scan them.
#
#   infra/docker/build.sh [--push REGISTRY] [--dry-run]
#
# Uses docker, else podman (one whose daemon answers); without either it says so and exits 0.
# Scans each image with trivy when installed (HIGH/CRITICAL fail the build), else says so.
# --dry-run prints the commands instead of running them.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VERSION="$(python3 -c 'import tomllib; print(tomllib.load(open("'"$ROOT"'/pyproject.toml","rb"))["project"]["version"])' 2>/dev/null || echo 0.1.0)"
CUDA=cu128      # the GPU build: rayproject/ray:*-cu128, torch cu128 wheels (driver >= 570)
registry="" dry=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --push) registry="$2"; shift 2 ;;
    --dry-run) dry=1; shift ;;
    *) echo "usage: $0 [--push REGISTRY] [--dry-run]" >&2; exit 2 ;;
  esac
done
engine=""
for candidate in docker podman; do  # a client without a reachable daemon does not count
  if command -v "$candidate" >/dev/null && "$candidate" info >/dev/null 2>&1; then
    engine="$candidate"; break
  fi
done
if [[ -z "$engine" && $dry == 0 ]]; then
  echo "build.sh: no working docker or podman here: skipping the image build and scan"; exit 0
fi
engine="${engine:-docker}"
run() { if (( dry )); then printf '+ %s\n' "$*"; else "$@"; fi; }

declare -A ARGS=(
  [cpu]=""
  [$CUDA]="--build-arg RAY_VARIANT=$CUDA --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/$CUDA --build-arg DS_ACCELERATOR=cuda"
)
for variant in cpu "$CUDA"; do
  tag="${registry:+$registry/}tsi-platform:$VERSION-$variant"
  # shellcheck disable=SC2086
  run "$engine" build -f "$ROOT/infra/docker/Dockerfile" -t "$tag" ${ARGS[$variant]} "$ROOT"
  if command -v trivy >/dev/null || (( dry )); then
    run trivy image --exit-code 1 --severity HIGH,CRITICAL --ignore-unfixed "$tag"
  else
    echo "build.sh: trivy not installed: $tag not scanned"
  fi
  if [[ -n "$registry" ]]; then
    run "$engine" push "$tag"
    if (( ! dry )); then
      echo "image_digests.$variant: $("$engine" image inspect --format '{{index .RepoDigests 0}}' "$tag" | sed 's/.*@//')"
    fi
  fi
done
