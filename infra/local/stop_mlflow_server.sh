#!/usr/bin/env bash
# Stop the MLflow server started by infra/local/start_mlflow_server.sh (its whole session:
# the gunicorn/uvicorn master and workers), and nothing else.
#
#   infra/local/stop_mlflow_server.sh [--dir /tmp/mlflow-tsi] [--timeout 20]
set -euo pipefail

dir="${MLFLOW_SERVER_DIR:-/tmp/mlflow-tsi}"
timeout=20
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dir) dir="$2"; shift 2 ;;
    --timeout) timeout="$2"; shift 2 ;;
    -h|--help) sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
done
pid_file="$dir/server.pid"
pid="$(cat "$pid_file" 2>/dev/null || true)"
if ! [[ "$pid" =~ ^[0-9]+$ ]]; then
  echo "no MLflow server pid file in $dir: nothing to stop"; exit 0
fi
# setsid made the server a session leader: its session is exactly its processes
procs=($(ps -eo pid=,sid= | awk -v s="$pid" '$2 == s {print $1}'))
if [[ ${#procs[@]} -eq 0 ]]; then
  echo "MLflow server of $dir is not running"; rm -f "$pid_file"; exit 0
fi
kill -TERM "${procs[@]}" 2>/dev/null || true
deadline=$(( SECONDS + timeout ))
while (( SECONDS < deadline )); do
  left=(); for p in "${procs[@]}"; do kill -0 "$p" 2>/dev/null && left+=("$p"); done
  [[ ${#left[@]} -eq 0 ]] && break
  sleep 0.3
done
left=(); for p in "${procs[@]}"; do kill -0 "$p" 2>/dev/null && left+=("$p"); done
if [[ ${#left[@]} -gt 0 ]]; then kill -KILL "${left[@]}" 2>/dev/null || true; fi
rm -f "$pid_file"
echo "stopped the MLflow server of $dir (${#procs[@]} processes); data kept in $dir"
