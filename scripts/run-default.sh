#!/usr/bin/env bash
# The "main job": set up, start the VMN controller on a network file, build
# that network in Mininet and check the reachability matrix: every case that
# `vmn trace` expects (same network, routed, isolated, ACL-denied, VIP),
# expected against observed (mininet_scripts/README.md, "The check").
#
# Usage: bash scripts/run-default.sh [NETWORK_FILE]
#   NETWORK_FILE          defaults to topologies/default.yaml
#   VMN_CONTROLLER_PORT   OpenFlow listen port (env), default 6653
#
# Exits with the status of mininet_scripts/vmn_mininet.py --check. On failure
# it prints the tail of the controller log and keeps the log file; on success
# the log is removed.
set -euo pipefail

die() {
    echo "run-default.sh: ERROR: $*" >&2
    exit 1
}
log() {
    echo "run-default.sh: $*"
}

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)" \
    || die "cannot locate the repository root"

NETWORK_FILE="${1:-topologies/default.yaml}"
# Resolve a relative path against the caller's cwd first, then the repo root.
if [[ "$NETWORK_FILE" != /* && -f "$NETWORK_FILE" ]]; then
    NETWORK_FILE="$(pwd)/$NETWORK_FILE"
fi
cd "$REPO_ROOT"
[[ -f "$NETWORK_FILE" ]] || die "network file not found: $NETWORK_FILE"
PORT="${VMN_CONTROLLER_PORT:-6653}"
[[ "$PORT" =~ ^[0-9]+$ ]] || die "VMN_CONTROLLER_PORT must be a port number, got '$PORT'"

bash scripts/setup.sh || die "set-up failed"

CONTROLLER_LOG="$(mktemp /tmp/vmn-controller.XXXXXX.log)"
CONTROLLER_PID=""

stop_controller() {
    [[ -n "$CONTROLLER_PID" ]] || return 0
    if kill -0 "$CONTROLLER_PID" 2>/dev/null; then
        kill -TERM "$CONTROLLER_PID" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$CONTROLLER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$CONTROLLER_PID" 2>/dev/null || true
    fi
    wait "$CONTROLLER_PID" 2>/dev/null || true
    CONTROLLER_PID=""
}
trap stop_controller EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log "controller on port $PORT, network $NETWORK_FILE, log $CONTROLLER_LOG"
VMN_CONFIG="$NETWORK_FILE" .venv/bin/osken-manager controller.app \
    --ofp-tcp-listen-port "$PORT" >"$CONTROLLER_LOG" 2>&1 &
CONTROLLER_PID=$!

# Wait (bounded) until the controller listens, failing early if it died.
listening() {
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null
}
for _ in $(seq 200); do
    listening && break
    if ! kill -0 "$CONTROLLER_PID" 2>/dev/null; then
        tail -n 50 "$CONTROLLER_LOG" >&2 || true
        die "controller exited before listening on port $PORT"
    fi
    sleep 0.1
done
if ! listening; then
    tail -n 50 "$CONTROLLER_LOG" >&2 || true
    die "controller not listening on port $PORT after 20 s"
fi

set +e
/usr/bin/python3 mininet_scripts/vmn_mininet.py "$NETWORK_FILE" --check \
    --controller-port "$PORT"
status=$?
set -e

if [[ $status -ne 0 ]]; then
    echo "run-default.sh: check FAILED (exit $status); controller log tail ($CONTROLLER_LOG):" >&2
    tail -n 80 "$CONTROLLER_LOG" >&2 || true
else
    stop_controller
    rm -f "$CONTROLLER_LOG"
fi
exit "$status"
