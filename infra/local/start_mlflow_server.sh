#!/usr/bin/env bash
# Start an MLflow tracking server on 127.0.0.1 for the cluster-mode path on one machine and for
# the tests: sqlite backend, artifacts served (proxied) by the server, so clients need no direct
# access to the artifact folder. Runs in its own session; stop it with stop_mlflow_server.sh.
#
#   infra/local/start_mlflow_server.sh [--port 5000] [--dir /tmp/mlflow-tsi] [--timeout 60]
#       [--basic-auth] [-- MLFLOW_SERVER_ARGS...]
#
# --dir holds mlflow.db, artifacts/, server.pid and server.log. --basic-auth starts MLflow's
# basic-auth app (the admin password must be in MLFLOW_AUTH_ADMIN_PASSWORD on first start; the
# Flask secret for its CSRF protection is MLFLOW_FLASK_SERVER_SECRET_KEY, else kept in DIR).
# Environment: MLFLOW_SERVER_PORT, MLFLOW_SERVER_DIR, MLFLOW_SERVER_START_TIMEOUT.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
port="${MLFLOW_SERVER_PORT:-5000}"
dir="${MLFLOW_SERVER_DIR:-/tmp/mlflow-tsi}"
timeout="${MLFLOW_SERVER_START_TIMEOUT:-60}"
auth=0
extra=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --port) port="$2"; shift 2 ;;
    --dir) dir="$2"; shift 2 ;;
    --timeout) timeout="$2"; shift 2 ;;
    --basic-auth) auth=1; shift ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --) shift; extra=("$@"); break ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [[ -z "${VIRTUAL_ENV:-}" && -x "$repo/.venv/bin/mlflow" ]]; then
  export PATH="$repo/.venv/bin:$PATH"
fi
command -v mlflow >/dev/null || { echo "mlflow not found: activate the venv first" >&2; exit 1; }

mkdir -p "$dir/artifacts"
dir="$(cd "$dir" && pwd)"
pid_file="$dir/server.pid"
log_file="$dir/server.log"
if [[ -s "$pid_file" ]] && kill -0 "$(cat "$pid_file")" 2>/dev/null; then
  echo "an MLflow server from $dir is already running (pid $(cat "$pid_file"))" >&2; exit 1
fi
export MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true
args=(server --host 127.0.0.1 --port "$port" --workers 1
      --backend-store-uri "sqlite:///$dir/mlflow.db"
      --artifacts-destination "$dir/artifacts" --serve-artifacts)
if (( auth )); then
  args+=(--app-name basic-auth)
  export MLFLOW_AUTH_CONFIG_PATH="${MLFLOW_AUTH_CONFIG_PATH:-$dir/basic_auth.ini}"
  if [[ ! -s "$MLFLOW_AUTH_CONFIG_PATH" ]]; then
    cat >"$MLFLOW_AUTH_CONFIG_PATH" <<INI
[mlflow]
default_permission = READ
database_uri = sqlite:///$dir/basic_auth.db
admin_username = admin
admin_password = ${MLFLOW_AUTH_ADMIN_PASSWORD:?set MLFLOW_AUTH_ADMIN_PASSWORD for --basic-auth}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
# one worker: caching verified credentials has no cross-worker staleness; PBKDF2 per request
# otherwise dominates a busy 2-core machine
auth_cache_ttl_seconds = 60
INI
    chmod 600 "$MLFLOW_AUTH_CONFIG_PATH"
  fi
  # the auth app's CSRF protection needs a static Flask secret: the caller's, else one kept in DIR
  if [[ -z "${MLFLOW_FLASK_SERVER_SECRET_KEY:-}" ]]; then
    secret_file="$dir/flask_secret"
    [[ -s "$secret_file" ]] || (umask 077; python -c 'import secrets; print(secrets.token_hex(32))' >"$secret_file")
    MLFLOW_FLASK_SERVER_SECRET_KEY="$(cat "$secret_file")"
    export MLFLOW_FLASK_SERVER_SECRET_KEY
  fi
fi
args+=(${extra[@]+"${extra[@]}"})

setsid nohup mlflow "${args[@]}" >"$log_file" 2>&1 </dev/null &
echo $! >"$pid_file"
pid="$(cat "$pid_file")"
url="http://127.0.0.1:$port"
deadline=$(( SECONDS + timeout ))
until python -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
    "$url/health" 2>/dev/null; do
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "mlflow server exited; last lines of $log_file:" >&2; tail -n 30 "$log_file" >&2
    rm -f "$pid_file"; exit 1
  fi
  if (( SECONDS >= deadline )); then
    echo "MLflow server not ready after ${timeout}s; see $log_file. Stopping it." >&2
    "$here/stop_mlflow_server.sh" --dir "$dir" >&2 || true
    exit 1
  fi
  sleep 0.5
done
cat <<EOT
MLflow server running (pid $pid, $url, store $dir/mlflow.db, artifacts served from $dir/artifacts).
  export MLFLOW_TRACKING_URI=$url
Stop it with: $here/stop_mlflow_server.sh --dir $dir
EOT
