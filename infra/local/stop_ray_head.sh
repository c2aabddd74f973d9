#!/usr/bin/env bash
# Stop the Ray head started by infra/local/start_ray_head.sh, and only that one: `ray stop` would
# kill every Ray process on the machine (other heads, other users' `ray.init()` clusters).
#
#   infra/local/stop_ray_head.sh [--temp-dir /tmp/ray-tsi] [--timeout 30]
#
# SIGTERM to the `ray start --block` process (it stops its raylet, GCS, dashboard and workers),
# then SIGKILL to whatever of that head is left after --timeout seconds. Without a pid file
# (a head started by hand with `ray start --temp-dir DIR`) it stops the processes whose command
# line names DIR's session folders. Finally removes DIR/ray_current_cluster, which otherwise
# points the next `ray.init()` using DIR at a dead cluster.
set -euo pipefail

temp_dir="${RAY_HEAD_TEMP_DIR:-/tmp/ray-tsi}"
timeout=30
while [[ $# -gt 0 ]]; do
  case "$1" in
    --temp-dir) temp_dir="$2"; shift 2 ;;
    --timeout) timeout="$2"; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [[ ! -d "$temp_dir" ]]; then
  echo "no Ray temp dir $temp_dir: nothing to stop"; exit 0
fi
temp_dir="$(cd "$temp_dir" && pwd)"
pid_file="$temp_dir/head.pid"

descendants() {  # all descendants of the given pids (Ray workers live in their own groups)
  local table frontier="$*" found=() next p c
  table="$(ps -eo pid=,ppid=)"
  while [[ -n "$frontier" ]]; do
    next=""
    for p in $frontier; do
      for c in $(awk -v p="$p" '$2 == p {print $1}' <<<"$table"); do
        found+=("$c"); next+=" $c"
      done
    done
    frontier="$next"
  done
  echo "${found[@]:-}"
}
alive() { local p n=0; for p in "$@"; do kill -0 "$p" 2>/dev/null && n=$((n + 1)); done; echo $n; }
wait_gone() {  # wait_gone SECONDS PID...
  local deadline=$(( SECONDS + $1 )); shift
  while (( $(alive "$@") > 0 && SECONDS < deadline )); do sleep 0.5; done
}

roots=(); term=()
head_pid="$(cat "$pid_file" 2>/dev/null || true)"
if [[ "$head_pid" =~ ^[0-9]+$ ]]; then
  # setsid made `ray start` a session leader: the session holds the head's processes, also those
  # orphaned when it crashed (Linux does not reuse a pid while it names a live session).
  while read -r p; do roots+=("$p"); done \
    < <(ps -eo pid=,sid= | awk -v s="$head_pid" '$2 == s {print $1}')
  if ps -o args= -p "$head_pid" 2>/dev/null | grep -q "ray start --head"; then
    term=("$head_pid")  # it stops its children in order
  else
    term=(${roots[@]+"${roots[@]}"})
  fi
fi
if [[ ${#roots[@]} -eq 0 ]]; then
  # No pid file (a head started by hand with --temp-dir DIR): its processes carry DIR/session_*
  # in their arguments; the Ray client server names only the GCS address (DIR/ray_current_cluster).
  gcs="$(cat "$temp_dir/ray_current_cluster" 2>/dev/null || true)"
  while read -r p; do [[ -n "$p" && "$p" != "$$" ]] && roots+=("$p"); done < <(
    pgrep -f -- "$temp_dir/session_" || true
    [[ -n "$gcs" ]] && { pgrep -f -- "address=$gcs( |$)" || true; }
  )
  term=(${roots[@]+"${roots[@]}"})
fi
if [[ ${#roots[@]} -eq 0 ]]; then
  echo "no running Ray head for $temp_dir"
else
  # shellcheck disable=SC2207
  procs=($(printf '%s\n' "${roots[@]}" $(descendants "${roots[@]}") | sort -un))
  echo "stopping Ray head of $temp_dir (${#procs[@]} processes)"
  kill -TERM "${term[@]}" 2>/dev/null || true
  wait_gone "$timeout" "${procs[@]}"
  left=()
  for p in "${procs[@]}"; do kill -0 "$p" 2>/dev/null && left+=("$p"); done
  if [[ ${#left[@]} -gt 0 ]]; then
    echo "SIGKILL to ${#left[@]} processes still alive after ${timeout}s" >&2
    kill -KILL "${left[@]}" 2>/dev/null || true
    wait_gone 5 "${left[@]}"
  fi
fi
rm -f "$pid_file" "$temp_dir/ray_current_cluster"
echo "stopped; logs kept under $temp_dir"
