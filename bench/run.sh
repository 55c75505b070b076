#!/usr/bin/env bash
# Run the VMN benchmarks: `bash bench/run.sh [--quick] [other bench.run options]`.
#
# Full mode first makes sure the Faucet peer's own venv exists
# (bench/.faucet-venv, `pip install faucet`: it pins os-ken 3.x and eventlet,
# so it must stay out of .venv); if that fails the Faucet cell says why.
# --quick runs every benchmark at tiny sizes (harness check, < 60 s, no Faucet).
# Prints the markdown table; writes bench/results.md (full, between the
# bench:begin/end markers) or bench/results-quick.md (quick).
# Needs root, a running Open vSwitch and .venv (scripts/setup.sh).
set -euo pipefail

die() {
    echo "bench/run.sh: ERROR: $*" >&2
    exit 1
}

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)" || die "cannot find the repo root"
cd "$REPO_ROOT"
[[ "$(id -u)" -eq 0 ]] || die "must run as root (creates OVS bridges and namespaces)"
[[ -x .venv/bin/python ]] || die ".venv missing: run scripts/setup.sh"
ovs-vsctl --timeout=5 show >/dev/null 2>&1 || die "Open vSwitch is not running: run scripts/setup.sh"

need_faucet=1
for arg in "$@"; do
    if [[ "$arg" == "--quick" || "$arg" == "--no-faucet" || "$arg" == "--only" ]]; then
        need_faucet=0  # --only: bench.run creates the venv itself if host_learning is asked for
    fi
done
if [[ $need_faucet -eq 1 && ! -x bench/.faucet-venv/bin/osken-manager ]]; then
    echo "bench/run.sh: creating bench/.faucet-venv (pip install faucet)" >&2
    { python3 -m venv bench/.faucet-venv \
        && bench/.faucet-venv/bin/pip install -q --disable-pip-version-check faucet; } \
        || echo "bench/run.sh: WARNING: Faucet install failed; its cells will say n/a" >&2
fi

exec .venv/bin/python -m bench.run "$@"
