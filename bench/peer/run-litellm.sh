#!/usr/bin/env bash
# Start the LiteLLM proxy (peer gateway) on 127.0.0.1:PORT, offline, and wait
# until it answers /health/liveliness (at most LITELLM_READY_TIMEOUT s, 90).
#
#   bench/peer/run-litellm.sh PORT NGINX_PORT UPSTREAM_PORT
#
# The same aliases keel gets in the harness (bench/src/servers.rs):
#   bench        -> http://127.0.0.1:NGINX_PORT/v1 (the fixed completion)
#   bench-stream -> http://127.0.0.1:UPSTREAM_PORT/sse/v1 (the SSE upstream)
#   bench-flaky  -> http://127.0.0.1:UPSTREAM_PORT/flaky/v1, falling back to
#                   the nginx upstream on error
# Clients send "Authorization: Bearer $LITELLM_MASTER_KEY" (default sk-bench).
#
# On success prints the proxy's PID (leader of its own process group) and
# exits 0; it keeps running in the background. The PID is also written to
# $LITELLM_PIDFILE. Stop it with `kill -- -PID` (
# shutdown takes ~3-5 s; keel-bench does it). On timeout or early exit: kills the proxy,
# prints the log tail, exits 1.
#
# Knobs (env):
#   LITELLM_VENV          venv with requirements.txt installed (target/bench-venv)
#   LITELLM_WORKERS       uvicorn worker processes (2, see below)
#   LITELLM_LOGFILE       proxy stdout/stderr (target/bench-litellm-PORT.log)
#   LITELLM_PIDFILE       (target/bench-litellm-PORT.pid)
#   LITELLM_READY_TIMEOUT seconds to wait for liveliness (90)
#   LITELLM_EXTRA_ARGS    more `litellm` CLI flags, word-split (e.g. --run_granian)
#   LITELLM_LOG           log level (CRITICAL; ERROR shows upstream failures)
#
# Workers (default 2): LiteLLM's production docs recommend the default
# server, uvicorn (+ uvloop), one worker per pod, scaling out with more pods;
# on one 2-core box the nearest is 2 uvicorn workers, one per core. Measured
# here (2 cores, Python load generator and upstream on the same box, 1000
# requests, req/s at 1/8/32 concurrent): uvicorn 1 worker 130/169/121;
# uvicorn 2 workers 154/265/275; granian 2 workers 120/205/243; gunicorn 2
# workers 148/248/228.
# So: uvicorn, 2 workers. Cost: ~0.9 GB RSS idle (parent + 2 workers) vs
# ~0.3 GB for 1 worker, and startup ~10 s vs ~5 s.
set -euo pipefail

if [[ $# -ne 3 ]]; then
  echo "usage: $0 PORT NGINX_PORT UPSTREAM_PORT" >&2
  exit 2
fi
PORT=$1 NGINX_PORT=$2 UPSTREAM_PORT=$3

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
VENV=${LITELLM_VENV:-$ROOT/target/bench-venv}
WORKERS=${LITELLM_WORKERS:-2}
LOGFILE=${LITELLM_LOGFILE:-$ROOT/target/bench-litellm-$PORT.log}
PIDFILE=${LITELLM_PIDFILE:-$ROOT/target/bench-litellm-$PORT.pid}
READY_TIMEOUT=${LITELLM_READY_TIMEOUT:-90}

if [[ ! -x $VENV/bin/litellm ]]; then
  echo "no $VENV/bin/litellm; install with:" >&2
  echo "  python3 -m venv $VENV && $VENV/bin/pip install -r $HERE/requirements.txt" >&2
  exit 2
fi

# --- environment: everything LiteLLM reads that matters offline -------------
# Read by litellm.yaml (os.environ/NAME):
export BENCH_JSON_API_BASE="http://127.0.0.1:$NGINX_PORT/v1"
export BENCH_SSE_API_BASE="http://127.0.0.1:$UPSTREAM_PORT/sse/v1"
export BENCH_FLAKY_API_BASE="http://127.0.0.1:$UPSTREAM_PORT/flaky/v1"
export LITELLM_MASTER_KEY=${LITELLM_MASTER_KEY:-sk-bench}
# Use the cost map bundled in the wheel. Without it every process (each
# worker too) GETs model_prices_and_context_window.json from
# raw.githubusercontent.com at import: 3 tries with back-off in a thread,
# warnings in the log, DNS traffic off the box.
export LITELLM_LOCAL_MODEL_COST_MAP=True
# PRODUCTION: do not load a .env file from the current directory (a stray
# one could change the config); DEV is the default.
export LITELLM_MODE=PRODUCTION
# Log level for LiteLLM's loggers and uvicorn. CRITICAL = the minimum: no
# per-request access log, and no ~100-line traceback per failed upstream call
# (what ERROR prints, which costs CPU in the fault scenario). ERROR to debug.
export LITELLM_LOG=${LITELLM_LOG:-CRITICAL}
# No ASCII-art feedback banner at startup.
export LITELLM_DONT_SHOW_FEEDBACK_BOX=True
# The Admin UI is not benchmarked; don't serve it.
export DISABLE_ADMIN_UI=True
# Hugging Face hub: never reach out (tokenizers for non-OpenAI models), no telemetry.
export HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1
# Don't route 127.0.0.1 through any proxy that the environment sets.
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost
unset HTTP_PROXY HTTPS_PROXY ALL_PROXY http_proxy https_proxy all_proxy
# No DB / Redis / secret manager / config bucket even if the caller's env has them.
unset DATABASE_URL DIRECT_URL DATABASE_URL_READ_REPLICA REDIS_HOST REDIS_URL REDIS_PORT \
      LITELLM_CONFIG_BUCKET_NAME LITELLM_CONFIG_BUCKET_TYPE USE_AWS_KMS LITELLM_LICENSE \
      PYROSCOPE_SERVER_ADDRESS PROMETHEUS_MULTIPROC_DIR
# Provider keys the caller may have: irrelevant here, keep them out.
unset OPENAI_API_KEY ANTHROPIC_API_KEY OPENAI_BASE_URL OPENAI_API_BASE

mkdir -p "$(dirname "$LOGFILE")" "$(dirname "$PIDFILE")"
cd "$HERE"   # no .env / config lookups from the caller's directory

start=$(date +%s.%N)
# setsid: own process group, so `kill -- -PID` also stops uvicorn's workers.
setsid "$VENV/bin/litellm" \
  --config "$HERE/litellm.yaml" \
  --host 127.0.0.1 --port "$PORT" \
  --num_workers "$WORKERS" ${LITELLM_EXTRA_ARGS:-} \
  >"$LOGFILE" 2>&1 </dev/null &
PID=$!
echo "$PID" >"$PIDFILE"

deadline=$(( $(date +%s) + READY_TIMEOUT ))
while (( $(date +%s) < deadline )); do
  if ! kill -0 "$PID" 2>/dev/null; then
    echo "litellm exited during startup; log $LOGFILE:" >&2
    tail -n 40 "$LOGFILE" >&2
    exit 1
  fi
  if curl -sf -m 2 -o /dev/null "http://127.0.0.1:$PORT/health/liveliness"; then
    ready=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN{printf "%.1f", e-s}')
    echo "litellm ready on 127.0.0.1:$PORT in ${ready}s (pid $PID, workers $WORKERS, log $LOGFILE)" >&2
    echo "$PID"
    exit 0
  fi
  sleep 0.25
done
echo "litellm not live after ${READY_TIMEOUT}s; log $LOGFILE:" >&2
tail -n 40 "$LOGFILE" >&2
kill -- -"$PID" 2>/dev/null || true
exit 1
