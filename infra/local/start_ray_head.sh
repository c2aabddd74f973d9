#!/usr/bin/env bash
# Start a local Ray head for `ray job submit`: dashboard/job API on 127.0.0.1 only, token auth on,
# usage stats off. Runs `ray start --head --block` in its own session so that
# infra/local/stop_ray_head.sh stops exactly this head (never `ray stop`, which kills every Ray
# process of the machine, including other people's `ray.init()` clusters).
#
#   infra/local/start_ray_head.sh [--port 6379] [--dashboard-port 8265] [--client-port 10001]
#       [--num-cpus N] [--num-gpus N] [--temp-dir /tmp/ray-tsi] [--timeout 60] [-- RAY_START_ARGS...]
#
# Each option also reads an environment variable: RAY_HEAD_PORT, RAY_DASHBOARD_PORT,
# RAY_CLIENT_PORT, RAY_NUM_CPUS, RAY_NUM_GPUS, RAY_HEAD_TEMP_DIR, RAY_HEAD_START_TIMEOUT.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

port="${RAY_HEAD_PORT:-6379}"
dashboard_port="${RAY_DASHBOARD_PORT:-8265}"
client_port="${RAY_CLIENT_PORT:-10001}"
num_cpus="${RAY_NUM_CPUS:-}"
num_gpus="${RAY_NUM_GPUS:-}"
# Short on purpose: Ray's unix socket paths under it must stay below 107 characters.
temp_dir="${RAY_HEAD_TEMP_DIR:-/tmp/ray-tsi}"
timeout="${RAY_HEAD_START_TIMEOUT:-60}"
extra=()

usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --port) port="$2"; shift 2 ;;
    --dashboard-port) dashboard_port="$2"; shift 2 ;;
    --client-port) client_port="$2"; shift 2 ;;
    --num-cpus) num_cpus="$2"; shift 2 ;;
    --num-gpus) num_gpus="$2"; shift 2 ;;
    --temp-dir) temp_dir="$2"; shift 2 ;;
    --timeout) timeout="$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    --) shift; extra=("$@"); break ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
done

# The job entrypoint (`python -m jobs...`) runs with the head's PATH: put the project's venv first
# so that `python` there is the interpreter with the package and ffmpeg-python installed.
if [[ -z "${VIRTUAL_ENV:-}" && -x "$repo/.venv/bin/ray" ]]; then
  export VIRTUAL_ENV="$repo/.venv"
  export PATH="$VIRTUAL_ENV/bin:$PATH"
fi
command -v ray >/dev/null || { echo "ray not found: activate the venv first" >&2; exit 1; }

mkdir -p "$temp_dir"
temp_dir="$(cd "$temp_dir" && pwd)"
if (( ${#temp_dir} > 40 )); then
  echo "warning: --temp-dir $temp_dir is long; Ray socket paths must stay < 107 chars" >&2
fi
pid_file="$temp_dir/head.pid"
log_file="$temp_dir/head.log"
if [[ -s "$pid_file" ]] && kill -0 "$(cat "$pid_file")" 2>/dev/null; then
  echo "a Ray head from $temp_dir is already running (pid $(cat "$pid_file"));" \
       "stop it with infra/local/stop_ray_head.sh --temp-dir $temp_dir" >&2
  exit 1
fi
rm -f "$temp_dir/ray_current_cluster"  # stale after an unclean stop: would misdirect ray.init()

export RAY_USAGE_STATS_ENABLED=0 MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true
# A local head has nothing to drain on SIGTERM (Ray waits 30 s by default).
export RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="${RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S:-0}"
# Token auth (Ray >= 2.52): the head and every client (ray job submit, drivers) need the same
# token: RAY_AUTH_TOKEN, else the file RAY_AUTH_TOKEN_PATH, else ~/.ray/auth_token.
export RAY_AUTH_MODE="${RAY_AUTH_MODE:-token}"
if [[ "$RAY_AUTH_MODE" == token && -z "${RAY_AUTH_TOKEN:-}" ]]; then
  token_file="${RAY_AUTH_TOKEN_PATH:-$HOME/.ray/auth_token}"
  if [[ ! -s "$token_file" ]]; then
    if [[ -n "${RAY_AUTH_TOKEN_PATH:-}" ]]; then
      echo "RAY_AUTH_TOKEN_PATH=$token_file is missing or empty" >&2; exit 1
    fi
    ray get-auth-token --generate >/dev/null  # writes ~/.ray/auth_token (mode of the umask)
    chmod 600 "$token_file"
    echo "generated a Ray auth token in $token_file"
  fi
fi

args=(start --head --block --disable-usage-stats
      --port "$port" --ray-client-server-port "$client_port"
      --dashboard-host 127.0.0.1 --dashboard-port "$dashboard_port"
      --temp-dir "$temp_dir")
[[ -n "$num_cpus" ]] && args+=(--num-cpus "$num_cpus")
[[ -n "$num_gpus" ]] && args+=(--num-gpus "$num_gpus")
args+=(${extra[@]+"${extra[@]}"})

# setsid: own session and process group, detached from this terminal; --block keeps `ray start`
# alive as the parent of the head's processes, which it kills when it gets SIGTERM or dies.
# A job submitted without --working-dir runs in the head's cwd: the repo root, as in the image.
cd "$repo"
setsid nohup ray "${args[@]}" >"$log_file" 2>&1 </dev/null &
echo $! >"$pid_file"
pid="$(cat "$pid_file")"

dashboard="http://127.0.0.1:$dashboard_port"
deadline=$(( SECONDS + timeout ))
ready() {  # /api/gcs_healthz needs no token
  python -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
    "$dashboard/api/gcs_healthz" 2>/dev/null
}
until ready && [[ -s "$temp_dir/ray_current_cluster" ]]; do  # the file is written last
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "ray start exited; last lines of $log_file:" >&2; tail -n 30 "$log_file" >&2
    rm -f "$pid_file"; exit 1
  fi
  if (( SECONDS >= deadline )); then
    echo "Ray head not ready after ${timeout}s; see $log_file. Stopping it." >&2
    "$here/stop_ray_head.sh" --temp-dir "$temp_dir" >&2 || true
    exit 1
  fi
  sleep 1
done
gcs_address="$(cat "$temp_dir/ray_current_cluster")"
auth_note=""
if [[ "$RAY_AUTH_MODE" == token ]]; then
  auth_note=" (clients need RAY_AUTH_MODE=token and the same token)"
fi

cat <<EOF
Ray head running (pid $pid, temp dir $temp_dir, log $log_file).
  dashboard / job API: $dashboard   (127.0.0.1 only)
  GCS address:         $gcs_address
  auth mode:           $RAY_AUTH_MODE$auth_note

In the shell you submit from:
  export RAY_AUTH_MODE=$RAY_AUTH_MODE
  export RAY_API_SERVER_ADDRESS=$dashboard   # 'ray job submit/status/logs/stop' read it first
  export RAY_ADDRESS=$gcs_address   # drivers started here without 'ray job submit' (ray.init)
(An http:// RAY_ADDRESS also works for 'ray job', but makes a plain ray.init() fail.)
  ray job submit --address $dashboard --working-dir . \\
    --runtime-env-json '{"excludes": ["/.venv", "/data", "/runs", "/mlruns", "/.git"]}' \\
    -- python -m jobs.preprocess --config jobs/configs/preprocess/synthetic.yaml \\
       --annotations \$PWD/data/synthetic/annotations.csv --videos \$PWD/data/synthetic \\
       --output \$PWD/data/synthetic-shards   # absolute: the job runs in its own copy of the code
Stop it with: $here/stop_ray_head.sh --temp-dir $temp_dir
EOF
