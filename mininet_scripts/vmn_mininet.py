#!/usr/bin/python3
"""Build a Mininet network from a VMN network file, and optionally check it.

Run with Debian's Python (Mininet is installed for it), as root::

    /usr/bin/python3 mininet_scripts/vmn_mininet.py topologies/default.yaml --check

One userspace OVS bridge per switch (OpenFlow 1.3, fail mode secure, the
file's dpid), the declared links on the declared ports, one host per VM at
its declared port (default route via its network's gateway, when it has
one), all pointed at a remote controller. ``--check`` asks ``vmn trace``
what every VM should reach (``python -m controller.tools.expect`` in the
project's venv, or ``--expect`` JSON), starts the load balancers' backends,
waits for every switch to connect, pings every pair of VMs with an ip and
connects to every TCP VIP, prints the matrix and exits 1 when it differs
from the expectation. Otherwise the Mininet CLI runs (or ``--hold`` sleeps).
The network is always stopped.

Exit codes: 0 fine, 1 check failed, 2 bad file or options.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from subprocess import DEVNULL
from typing import NamedTuple

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from mininet.cli import CLI
from mininet.log import setLogLevel
from mininet.net import Mininet
from mininet.node import OVSSwitch, RemoteController
from mininet.topo import Topo

from controller.config.model import Model, PortRef, Vm
from mininet_scripts import reachability

IFNAME_MAX = 15
"""Linux interface names (bridges included) have at most 15 characters."""
PREFIX_MAX = 8
HOST_INTF = "eth0"
"""Name of each VM's interface inside its namespace."""
ROUND_MIN_SECONDS = 1.0
"""Probe rounds are paced to at least this, so fast failures do not spin."""
TCP_PROBE_SECONDS = 2
"""A TCP probe (connect, HTTP GET, first line of the answer) gives up after this."""
TRACE_PYTHON = REPO_ROOT / ".venv" / "bin" / "python"
"""The interpreter that can run ``vmn trace`` (``VMN_PYTHON`` overrides it)."""


class PortPlan(NamedTuple):
    """Where one declared port lands: OpenFlow port number and switch-side interface."""

    number: int
    intf: str


PortKey = tuple[str, PortRef]
"""(switch name from the file, declared port)."""


# --- naming and port planning (pure) ---------------------------------------


def switch_node(bridge: str, prefix: str) -> str:
    """Mininet node name of a switch, which is also its OVS bridge name."""
    return prefix + bridge


def dpid_hex(dpid: int) -> str:
    """A dpid as the 16 hex digits Mininet and OVS want."""
    return format(dpid, "016x")


def port_intf_name(node: str, port: int, prefix: str) -> str:
    """The switch-side interface for numbered port ``port``: ``s1-eth10`` when it fits.

    Falls back to ``s1-10`` and then to the prefix plus a digest, so that the
    name stays within :data:`IFNAME_MAX` and still starts with the prefix.
    """
    for name in (f"{node}-eth{port}", f"{node}-{port}"):
        if len(name) <= IFNAME_MAX:
            return name
    digest = hashlib.sha1(f"{node}:{port}".encode()).hexdigest()
    return (prefix + "p" + digest)[:IFNAME_MAX]


def declared_ports(model: Model) -> list[PortKey]:
    """Every (switch, port) the file plugs something into: link ends, then VMs."""
    ends = [(end.switch, end.port) for link in model.links for end in (link.a, link.b)]
    return ends + [(vm.switch, vm.port) for vm in model.vms]


def plan_ports(model: Model, prefix: str) -> dict[PortKey, PortPlan]:
    """OpenFlow number and interface name for every declared port.

    Numbered ports keep their number. Named ports (``vnet3``) keep their
    name as the interface name (the controller resolves it) and get numbers
    above the switch's highest declared number, in name order, so they never
    collide with numbered ones.
    """
    keys = declared_ports(model)
    plan: dict[PortKey, PortPlan] = {}
    for switch in model.switches:
        node = switch_node(switch.bridge, prefix)
        numbers = sorted({port for name, port in keys if name == switch.name and isinstance(port, int)})
        names = sorted({port for name, port in keys if name == switch.name and isinstance(port, str)})
        for number in numbers:
            plan[(switch.name, number)] = PortPlan(number, port_intf_name(node, number, prefix))
        start = max(numbers, default=0) + 1
        for offset, name in enumerate(names):
            plan[(switch.name, name)] = PortPlan(start + offset, name)
    return plan


def plan_errors(model: Model, prefix: str) -> list[str]:
    """What stops this model from being built in Mininet with ``prefix`` (empty when fine)."""
    errors: list[str] = []
    if len(prefix) > PREFIX_MAX:
        errors.append(f"--prefix: at most {PREFIX_MAX} characters, got {prefix!r}")
    nodes = {switch_node(s.bridge, prefix) for s in model.switches}
    for switch in model.switches:
        node = switch_node(switch.bridge, prefix)
        if len(node) > IFNAME_MAX:
            errors.append(f"switches.{switch.name}: bridge name {node!r} is longer than {IFNAME_MAX} characters")
    for vm in model.vms:
        if vm.name in nodes:
            errors.append(f"vms.{vm.name}: same name as a bridge; Mininet needs distinct node names")
    keys = declared_ports(model)
    for key in sorted({k for k in keys if keys.count(k) > 1}, key=str):
        errors.append(f"switches.{key[0]}: port {key[1]!r} is used more than once")
    intfs = [p.intf for p in plan_ports(model, prefix).values()]
    for intf in sorted({i for i in intfs if len(i) > IFNAME_MAX or intfs.count(i) > 1 or i in nodes}):
        errors.append(f"interface name {intf!r} is too long or not unique")
    return errors


def default_route(model: Model, vm: Vm) -> str | None:
    """``via GATEWAY`` when the VM's network has a gateway inside the VM's subnet, else None (no default route)."""
    gateway = model.network_by_name[vm.network].gateway
    if vm.ip is None or gateway is None or gateway.ip not in vm.ip.network:
        return None
    return f"via {gateway.ip}"


# --- topology ----------------------------------------------------------------


class VmnTopo(Topo):
    """The Mininet topology of a network file (Mininet's ``Topo`` calls :meth:`build`)."""

    def build(self, model: Model, prefix: str = "") -> None:
        ports = plan_ports(model, prefix)
        nodes = {s.name: switch_node(s.bridge, prefix) for s in model.switches}
        for switch in model.switches:
            self.addSwitch(nodes[switch.name], dpid=dpid_hex(switch.dpid))
        for link in model.links:
            first, second = ports[(link.a.switch, link.a.port)], ports[(link.b.switch, link.b.port)]
            self.addLink(
                nodes[link.a.switch],
                nodes[link.b.switch],
                port1=first.number,
                port2=second.number,
                intfName1=first.intf,
                intfName2=second.intf,
            )
        for vm in model.vms:
            port = ports[(vm.switch, vm.port)]
            self.addHost(vm.name, ip=str(vm.ip) if vm.ip else None, mac=vm.mac, defaultRoute=default_route(model, vm))
            self.addLink(
                nodes[vm.switch],
                vm.name,
                port1=port.number,
                port2=0,
                intfName1=port.intf,
                intfName2=HOST_INTF,
            )


def make_network(model: Model, args: argparse.Namespace) -> Mininet:
    """An unbuilt Mininet for ``model``: build it inside the try that stops it."""
    switch = partial(OVSSwitch, datapath="user", protocols="OpenFlow13", failMode=args.fail_mode)
    controller = partial(RemoteController, ip=args.controller_ip, port=args.controller_port)
    topo = VmnTopo(model=model, prefix=args.prefix)
    return Mininet(topo=topo, switch=switch, controller=controller, build=False, autoSetMacs=False)


def disable_tx_offload(net: Mininet) -> None:
    """TCP through a userspace datapath needs TX checksum offload off on the VM ends."""
    for host in net.hosts:
        for intf in host.intfList():
            if intf.name != "lo":
                host.cmd(f"ethtool -K {intf.name} tx off")


# --- check -------------------------------------------------------------------


def wait_connected(net: Mininet, timeout: float, poll: float = 0.5) -> list[str]:
    """Poll until every switch is connected to its controller or ``timeout`` passes.

    Returns:
        The names of the switches still not connected (empty on success).
    """
    deadline = time.monotonic() + timeout
    remaining = list(net.switches)
    while True:
        remaining = [s for s in remaining if not s.connected()]
        if not remaining or time.monotonic() >= deadline:
            return sorted(s.name for s in remaining)
        time.sleep(poll)


TCP_PROBE = 'exec 3<>"/dev/tcp/$0/$1" && printf "GET / HTTP/1.0\\r\\n\\r\\n" >&3 && head -n1 <&3 | grep -q " 200 "'
"""Connect to ``$0:$1``, send an HTTP GET and expect a 200 status line back (through NAT both ways)."""


def probe_command(case: reachability.Case) -> list[str]:
    """The command a VM runs to probe ``case``: one ping, or one HTTP GET over TCP."""
    if case.proto == "tcp":
        return ["timeout", str(TCP_PROBE_SECONDS), "bash", "-c", TCP_PROBE, case.ip, str(case.port)]
    return ["ping", "-c1", "-W1", case.ip]


def probe_round(
    net: Mininet, plan: reachability.Plan, pairs: Sequence[reachability.Pair]
) -> dict[reachability.Pair, bool]:
    """Probe every pair once, all at once; True where an answer came back."""
    started = time.monotonic()
    procs = {
        (src, dst): net[src].popen(probe_command(plan[(src, dst)]), stdout=DEVNULL, stderr=DEVNULL)
        for src, dst in pairs
    }
    results = {pair: proc.wait() == 0 for pair, proc in procs.items()}
    time.sleep(max(0.0, ROUND_MIN_SECONDS - (time.monotonic() - started)))
    return results


@contextmanager
def listeners(net: Mininet, servers: Sequence[reachability.Listener]) -> Iterator[None]:
    """Run an HTTP server in each listed VM on its port (the balancers' backends); stop them on the way out."""
    root = tempfile.mkdtemp(prefix="vmn-backend-")
    Path(root, "index.html").write_text("vmn backend\n")
    procs = []
    try:
        for vm, _proto, port in servers:
            cmd = [sys.executable, "-m", "http.server", str(port), "--directory", root]
            procs.append(net[vm].popen(cmd, stdout=DEVNULL, stderr=DEVNULL))
        yield
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(root, ignore_errors=True)


def run_check(net: Mininet, plan: reachability.Plan, timeout: float) -> int:
    """Wait for the controller, probe every case, print the matrix; 0 if as expected, else 1."""
    missing = wait_connected(net, timeout)
    if missing:
        print(
            f"switches not connected to the controller after {timeout:g}s: {', '.join(missing)}",
            flush=True,
        )
        return 1
    expected = reachability.reaches(plan)
    schedule = reachability.Schedule(deadline=time.monotonic() + timeout)
    probe = partial(probe_round, net, plan)
    measured = reachability.measure(expected, probe, time.monotonic, schedule)
    print(reachability.LEGEND)
    print(reachability.format_matrix(plan, measured))
    print(reachability.summary(plan, measured))
    print("why (one case of each kind, from vmn trace):")
    print(reachability.examples(plan), flush=True)
    return 1 if reachability.mismatches(expected, measured) else 0


def trace_python() -> Path | None:
    """The interpreter for ``controller.tools.expect``: ``$VMN_PYTHON``, else the repository's venv, else None."""
    chosen = os.environ.get("VMN_PYTHON")
    path = Path(chosen) if chosen else TRACE_PYTHON
    return path if path.exists() else None


def expectations(
    path: str, expect: str | None
) -> tuple[dict[reachability.Pair, reachability.Case], tuple[reachability.Listener, ...]] | str:
    """The plan of the check: from ``expect`` (JSON), else computed by ``vmn trace``; an error text on failure."""
    if expect is not None:
        try:
            return reachability.plan_from_json(Path(expect).read_text())
        except (OSError, ValueError) as exc:
            return f"--expect {expect}: {exc}"
    python = trace_python()
    if python is None:
        return f"no interpreter for vmn trace ({TRACE_PYTHON} missing; set VMN_PYTHON or pass --expect)"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *filter(None, [env.get("PYTHONPATH")])])
    done = subprocess.run(
        [str(python), "-m", "controller.tools.expect", path],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        return f"controller.tools.expect exited {done.returncode}: {done.stderr.strip()}"
    try:
        return reachability.plan_from_json(done.stdout)
    except ValueError as exc:
        return str(exc)


# --- main ----------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", help="network file (YAML)")
    parser.add_argument("--controller-ip", default="127.0.0.1")
    parser.add_argument("--controller-port", type=int, default=6653)
    parser.add_argument("--prefix", default="", help="prepended to every bridge name (unique names for tests)")
    parser.add_argument(
        "--check",
        action="store_true",
        help="ping all pairs, compare with the file, exit 1 on difference",
    )
    parser.add_argument(
        "--expect",
        metavar="JSON",
        help="with --check: the expected cases (python -m controller.tools.expect FILE); default: computed by it",
    )
    parser.add_argument(
        "--same-network",
        action="store_true",
        help="with --check: expect 'same network and subnet reaches' (ACLs, routers, VIPs ignored), no vmn trace",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="seconds to wait for switches to connect, and again for expected pings (default 60)",
    )
    parser.add_argument("--hold", type=float, metavar="SECONDS", help="without --check: sleep, then stop (no CLI)")
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "output", "warning", "error"))
    parser.add_argument("--fail-mode", default="secure", choices=("secure", "standalone"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def load(path: str) -> tuple[Model | None, list[str]]:
    """The model in ``path``, or None and the errors (each naming its YAML path)."""
    # Imported here so that this module imports without the loader (handy in tests).
    from controller.config import ConfigError, load_model

    try:
        return load_model(path), []
    except ConfigError as exc:
        return None, [str(error) for error in exc.errors]
    except OSError as exc:
        return None, [str(exc)]


def interrupt(signum: int, _frame: object) -> None:
    """Turn SIGTERM (and SIGINT, even if inherited ignored) into KeyboardInterrupt.

    The network is then stopped on the way out.
    """
    raise KeyboardInterrupt(f"signal {signum}")


class Check(NamedTuple):
    """What ``--check`` probes, and the servers it starts first."""

    plan: reachability.Plan
    servers: tuple[reachability.Listener, ...]


def run(net: Mininet, check: Check | None, args: argparse.Namespace) -> int:
    net.build()
    net.start()
    disable_tx_offload(net)
    if check is not None:
        with listeners(net, check.servers):
            return run_check(net, check.plan, args.timeout)
    if args.hold is not None:
        time.sleep(args.hold)
    else:
        CLI(net)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    model, errors = load(args.file)
    if model is not None:
        errors = plan_errors(model, args.prefix)
    if model is None or errors:
        for line in errors:
            print(line if line.startswith(args.file) else f"{args.file}: {line}", file=sys.stderr)
        return 2
    check = None
    if args.check and args.same_network:
        print("note: expected: same network and subnet reaches (ACLs, routers and VIPs ignored)", flush=True)
        check = Check(reachability.model_plan(model), ())
    elif args.check:
        found = expectations(args.file, args.expect)
        if isinstance(found, str):
            print(f"{args.file}: {found}", file=sys.stderr)
            return 2
        check = Check(*found)
    setLogLevel(args.log_level)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, interrupt)
    net = make_network(model, args)
    try:
        return run(net, check, args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)  # let the cleanup finish
        net.stop()


if __name__ == "__main__":
    sys.exit(main())
