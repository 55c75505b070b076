#!/usr/bin/env bash
# Idempotent set-up for VMN development and CI (Debian 12, run as root).
#
#  1. apt-get install the system packages that are missing (noninteractive);
#  2. start Open vSwitch with ovs-ctl unless `ovs-vsctl show` already works;
#  3. create .venv (python3 on PATH, must be >= 3.11) if it is missing;
#  4. `pip install -e '.[test,ha]'` into it, skipped when setup.cfg and
#     pyproject.toml have not changed since the last successful install.
#
# Safe to run repeatedly and from any directory; a second run is a quick no-op.
# Exits non-zero with a message naming the step that failed.
set -euo pipefail

die() {
    echo "setup.sh: ERROR: $*" >&2
    exit 1
}
log() {
    echo "setup.sh: $*"
}

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)" \
    || die "cannot locate the repository root"
cd "$REPO_ROOT"

[[ "$(id -u)" -eq 0 ]] || die "must run as root (needs apt-get, OVS and network namespaces)"

# ---------------------------------------------------------------- packages --
APT_PACKAGES=(
    openvswitch-switch mininet python3-yaml iperf3 ethtool iproute2
    iputils-ping tcpdump netcat-openbsd python3-venv
    chromium chromium-driver   # headless browser for the web view's tests (tests/ovs/test_api_ovs.py)
    udhcpc                     # busybox DHCP client for the DHCP tests (tests/ovs/test_router_ovs.py)
    redis-server               # coordination service the HA tests start on their own port (tests/ovs/test_ha_ovs.py)
    iputils-arping             # ARP probes from the outside of an uplink (tests/ovs/test_uplink_ovs.py)
)

is_installed() {
    [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" == "install ok installed" ]]
}

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    is_installed "$pkg" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    log "installing system packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q || die "apt-get update failed"
    apt-get install -y -q --no-install-recommends "${missing[@]}" \
        || die "apt-get install failed for: ${missing[*]}"
    if [[ " ${missing[*]} " == *" redis-server "* ]]; then
        # The tests start their own redis-server on a free port; do not leave
        # Debian's system service running on 6379 when this run installed it.
        systemctl disable --now redis-server >/dev/null 2>&1 \
            || service redis-server stop >/dev/null 2>&1 || true
    fi
fi

# ------------------------------------------------------------ Open vSwitch --
OVS_CTL=/usr/share/openvswitch/scripts/ovs-ctl
if ! ovs-vsctl --timeout=5 show >/dev/null 2>&1; then
    log "starting Open vSwitch"
    [[ -x "$OVS_CTL" ]] || die "$OVS_CTL not found (is openvswitch-switch installed?)"
    # ovs-ctl warns about ulimit and the missing kernel module here; harmless,
    # bridges use datapath_type=netdev.
    "$OVS_CTL" start --system-id=random || die "ovs-ctl start failed"
    ovs-vsctl --timeout=5 show >/dev/null \
        || die "Open vSwitch started but 'ovs-vsctl show' still fails"
fi

# -------------------------------------------------------------- virtualenv --
VENV="$REPO_ROOT/.venv"
VENV_PY="$VENV/bin/python"
PY_CHECK='import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'

if [[ ! -x "$VENV_PY" ]]; then
    command -v python3 >/dev/null || die "python3 not found on PATH"
    python3 -c "$PY_CHECK" \
        || die "python3 on PATH is $(python3 -V 2>&1); VMN needs >= 3.11"
    log "creating $VENV with $(command -v python3) ($(python3 -V 2>&1))"
    python3 -m venv "$VENV" || die "python3 -m venv failed"
fi
"$VENV_PY" -c "$PY_CHECK" \
    || die "$VENV uses $("$VENV_PY" -V 2>&1); VMN needs >= 3.11 (remove .venv and re-run)"

# The editable install maps the top-level packages that existed when it ran;
# check (from outside the tree, without importing them) that both resolve here.
packages_resolve() {
    (cd / && "$VENV_PY" - "$REPO_ROOT" <<'PY'
import importlib.util, os, sys
root = sys.argv[1]
for name in ("controller", "apps"):
    spec = importlib.util.find_spec(name)
    origin = (spec.origin or "") if spec else ""
    if not origin.startswith(os.path.join(root, name) + os.sep):
        sys.exit(f"{name} resolves to {origin or 'nothing'}")
PY
    )
}

# Reinstall only when the packaging metadata changed, the console scripts are
# missing or the packages do not resolve to this tree.
STAMP="$VENV/.vmn-install-stamp"
want_stamp="$(cat setup.cfg pyproject.toml 2>/dev/null | sha256sum | cut -d' ' -f1)"
have_stamp="$(cat "$STAMP" 2>/dev/null || true)"
if [[ "$want_stamp" != "$have_stamp" || ! -x "$VENV/bin/osken-manager" ]] \
    || ! packages_resolve >/dev/null 2>&1; then
    log "installing the project into $VENV (pip install -e '.[test,ha]')"
    rm -f "$STAMP"
    "$VENV_PY" -m pip install -q --disable-pip-version-check -e '.[test,ha]' \
        || die "pip install -e '.[test,ha]' failed"
    packages_resolve || die "after pip install, controller/apps are not importable from $VENV"
    echo "$want_stamp" >"$STAMP"
fi

log "ok"
