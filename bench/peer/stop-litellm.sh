#!/usr/bin/env bash
# Stop a proxy started by run-litellm.sh:  bench/peer/stop-litellm.sh PORT
# SIGTERM to its process group (parent + uvicorn workers), wait up to 15 s
# (uvicorn's graceful shutdown takes ~3-5 s with 2 workers), then SIGKILL.
set -euo pipefail
PORT=${1:?usage: $0 PORT}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PIDFILE=${LITELLM_PIDFILE:-$ROOT/target/bench-litellm-$PORT.pid}
[[ -s $PIDFILE ]] || { echo "no $PIDFILE" >&2; exit 1; }
PID=$(cat "$PIDFILE")
kill -TERM -- -"$PID" 2>/dev/null || true
for _ in $(seq 1 60); do
  kill -0 -- -"$PID" 2>/dev/null || { rm -f "$PIDFILE"; exit 0; }
  sleep 0.25
done
echo "litellm (pgid $PID) still up after 15 s: SIGKILL" >&2
kill -KILL -- -"$PID" 2>/dev/null || true
rm -f "$PIDFILE"
