"""The ``vmn`` command line.

Each subcommand is one ``add_<name>(subparsers)`` function that declares its
arguments and sets ``handler`` to a ``run_<name>(args) -> int`` function;
:data:`SUBCOMMANDS` lists the ``add_*`` functions. To add a subcommand, write
the pair and append its ``add_*`` function to :data:`SUBCOMMANDS`.

Run as ``vmn ...`` (console script) or ``python -m controller.cli ...``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from controller.config import ConfigError, load_model
from controller.config.model import Model

SubParsers = argparse._SubParsersAction
"""The type of ``ArgumentParser.add_subparsers()``' result (private in argparse)."""


def _count(count: int, noun: str, plural: str = "") -> str:
    return f"{count} {noun if count == 1 else plural or noun + 's'}"


def summary(model: Model) -> str:
    """One line describing a valid model, e.g. ``ok: 2 switches, 4 vms, ...``."""
    parts = (
        _count(len(model.switches), "switch", "switches"),
        _count(len(model.vms), "vm"),
        _count(len(model.networks), "network"),
        _count(len(model.acls), "acl"),
        _count(len(model.load_balancers), "load balancer"),
    )
    return "ok: " + ", ".join(parts)


def add_check(subparsers: SubParsers[argparse.ArgumentParser]) -> None:
    """Register ``vmn check FILE``."""
    parser = subparsers.add_parser(
        "check",
        help="validate a network file",
        description="Validate a network file. Prints every error (one per line, "
        "each naming its YAML path) to stderr and exits 1, or prints a summary "
        "and exits 0.",
    )
    parser.add_argument("file", metavar="FILE", help="the network YAML file")
    parser.set_defaults(handler=run_check)


def _load_or_report(path: str) -> Model | None:
    """The model of ``path``, or None after printing every error to stderr.

    Besides the file itself, the apps ``controller.apps`` names must exist.
    """
    from controller.compose import AppError, check_apps

    try:
        model = load_model(path)
        check_apps(model)
        return model
    except ConfigError as exc:
        for line in exc.errors:
            print(line, file=sys.stderr)
        return None
    except AppError as exc:
        print(exc, file=sys.stderr)
        return None


def run_check(args: argparse.Namespace) -> int:
    """Validate ``args.file``: 0 and a summary on stdout, or 1 and the errors on stderr."""
    from controller.config.overlay import warnings_of

    model = _load_or_report(args.file)
    if model is None:
        return 1
    for line in warnings_of(model.overlay):
        print(line, file=sys.stderr)
    print(summary(model))
    return 0


def add_provision(subparsers: SubParsers[argparse.ArgumentParser]) -> None:
    """Register ``vmn provision FILE [--controller T ...] [--datapath-type system|netdev] [--host H]``."""
    parser = subparsers.add_parser(
        "provision",
        help="create or update the file's OVS bridges through OVSDB",
        description="Create or update each switch's bridge (dpid, OpenFlow 1.3, fail-mode "
        "secure, controller target) and attach VM interfaces named in the file that exist. "
        "Idempotent; prints what it changed.",
    )
    parser.add_argument("file", metavar="FILE", help="the network YAML file")
    parser.add_argument(
        "--controller",
        action="append",
        metavar="TARGET",
        help="OpenFlow controller target (default tcp:127.0.0.1:6653; ssl:HOST:PORT for TLS); "
        "repeat it, or separate targets by commas, for several controller instances (HA)",
    )
    parser.add_argument(
        "--datapath-type",
        choices=("system", "netdev"),
        default="system",
        help="OVS datapath: system (kernel, default) or netdev (userspace)",
    )
    parser.add_argument("--db", default="unix:/var/run/openvswitch/db.sock", help="OVSDB remote")
    parser.add_argument(
        "--host",
        metavar="H",
        help="with hosts in the file: provision host H (its bridges, tunnel ports, patch ports of its links)",
    )
    parser.set_defaults(handler=run_provision)


def run_provision(args: argparse.Namespace) -> int:
    """Provision ``args.file``: 0 and the changes on stdout, 1 on an invalid file or OVSDB error."""
    from controller.tools.provision import Plan, ProvisionError, describe, provision

    model = _load_or_report(args.file)
    if model is None:
        return 1
    try:
        targets = tuple(args.controller or ["tcp:127.0.0.1:6653"])
        changes = provision(Plan(model, ",".join(targets), args.datapath_type, args.db, args.host))
    except ProvisionError as exc:
        print(f"vmn provision: {exc}", file=sys.stderr)
        return 1
    print(describe(changes))
    return 0


def add_trace(subparsers: SubParsers[argparse.ArgumentParser]) -> None:
    """Register ``vmn trace FILE --from VM --to IP [--tcp PORT|--udp PORT|--icmp]``."""
    parser = subparsers.add_parser(
        "trace",
        help="show what the flow tables would do with a packet",
        description="Compute the flows the controller would install for FILE (every switch "
        "connected, declared links up, every VM learned), send one packet from VM to IP "
        "through them, then its reply, and print the verdict, the path and the ACL rules "
        "that decided. Exits 0 when the packet is delivered, 1 when it is not, 2 on bad input.",
    )
    parser.add_argument("file", metavar="FILE", help="the network YAML file")
    parser.add_argument(
        "--from",
        dest="src",
        required=True,
        metavar="VM",
        help="sending VM, or an uplink's name: a packet from outside (from --source) in through it",
    )
    parser.add_argument(
        "--source",
        default=None,
        metavar="IP",
        help="with --from UPLINK: the outside sender's address (default 198.51.100.1)",
    )
    parser.add_argument(
        "--to",
        dest="dst",
        required=True,
        metavar="IP",
        help="destination IPv4 or IPv6 address (IPv6 leaves from the VM's ipv6)",
    )
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument("--tcp", type=int, metavar="PORT", help="a TCP packet to PORT")
    kind.add_argument("--udp", type=int, metavar="PORT", help="a UDP packet to PORT")
    kind.add_argument("--icmp", action="store_true", help="an ICMP (ICMPv6) echo request (the default)")
    parser.set_defaults(handler=run_trace)


def run_trace(args: argparse.Namespace) -> int:
    """Trace one packet: 0 delivered, 1 not delivered, 2 invalid file or arguments."""
    from controller.tools.trace import Proto, build_fabric, trace

    model = _load_or_report(args.file)
    if model is None:
        return 2
    proto: Proto = "tcp" if args.tcp is not None else ("udp" if args.udp is not None else "icmp")
    port: int | None = args.tcp if args.tcp is not None else args.udp
    if port is not None and not 0 <= port <= 65535:
        print(f"vmn trace: port {port} is not in 0-65535", file=sys.stderr)
        return 2
    try:
        fabric = build_fabric(model)
        if args.source is not None:
            result = trace(fabric, args.src, args.dst, proto, port, args.source)
        else:
            result = trace(fabric, args.src, args.dst, proto, port)
    except ValueError as exc:
        print(f"vmn trace: {exc}", file=sys.stderr)
        return 2
    print(result.render())
    return 0 if result.forward.delivered else 1


def add_flows(subparsers: SubParsers[argparse.ArgumentParser]) -> None:
    """Register ``vmn flows FILE [--switch S]``."""
    parser = subparsers.add_parser(
        "flows",
        help="print the flows VMN wants on each switch of a network file",
        description="Compute the flows and groups the controller would install for FILE (every "
        "switch connected, declared links up, before any host is learned) and print them per "
        "switch in ovs-ofctl syntax, as GET /api/v1/flows?format=text does for the live state. "
        "Exits 1 on an invalid file, 2 on an unknown switch.",
    )
    parser.add_argument("file", metavar="FILE", help="the network YAML file")
    parser.add_argument("--switch", metavar="S", help="only this switch (name or dpid)")
    parser.set_defaults(handler=run_flows)


def run_flows(args: argparse.Namespace) -> int:
    """Print the wanted flows: 0, 1 on an invalid file, 2 on an unknown ``--switch``."""
    from controller.api.ofctl import flow_lines, group_lines, switch_text
    from controller.tools.fakefabric import FakeFabric

    model = _load_or_report(args.file)
    if model is None:
        return 1
    switches = list(model.switches)
    if args.switch is not None:
        switches = [s for s in switches if args.switch in (s.name, str(s.dpid), hex(s.dpid), f"{s.dpid:016x}")]
        if not switches:
            known = ", ".join(s.name for s in model.switches)
            print(f"vmn flows: unknown switch {args.switch!r} (switches: {known})", file=sys.stderr)
            return 2
    core = FakeFabric.from_model(model).core
    for switch in switches:
        rules, groups = core.flows.rules(switch.dpid), core.groups.get(switch.dpid, {}).values()
        sys.stdout.write(switch_text(switch.name, switch.dpid, flow_lines(rules), group_lines(groups)))
    return 0


def add_plan(subparsers: SubParsers[argparse.ArgumentParser]) -> None:
    """Register ``vmn plan FILE [--url URL]``."""
    parser = subparsers.add_parser(
        "plan",
        help="show what a network file would change on the running controller's switches",
        description="Send FILE to the running controller's API (POST /api/v1/plan) and print, "
        "per switch, the flows it would remove (-) and add (+); nothing is applied. Exits 0, "
        "1 when the file is invalid (every error by path on stderr), 2 when the API cannot be "
        "reached or refuses.",
    )
    parser.add_argument("file", metavar="FILE", help="the network YAML file")
    parser.add_argument("--url", help="the API's address (default: $VMN_API_URL or http://127.0.0.1:9304)")
    parser.set_defaults(handler=run_plan)


def run_plan(args: argparse.Namespace) -> int:
    """Print the running controller's plan for ``args.file``: 0, 1 invalid file, 2 API error."""
    from controller.api.client import ApiError, default_url, post_plan
    from controller.api.ofctl import plan_text

    try:
        with open(args.file, "rb") as stream:
            text = stream.read()
    except OSError as exc:
        print(f"vmn plan: {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    try:
        answer = post_plan(args.url or default_url(), text)
    except ApiError as exc:
        for line in exc.errors:
            print(line if exc.status == 422 else f"vmn plan: {line}", file=sys.stderr)
        return 1 if exc.status == 422 else 2
    switches = answer.get("switches", [])
    sys.stdout.write(plan_text((s["name"], s["dpid"], s["removed"], s["added"]) for s in switches))
    return 0


def add_migrate(subparsers: SubParsers[argparse.ArgumentParser]) -> None:
    """Register ``vmn migrate VM --to SWITCH:PORT [--url URL]``."""
    parser = subparsers.add_parser(
        "migrate",
        help="pre-install a VM at its destination port before a live migration",
        description="Ask the running controller (POST /api/v1/migrate, token from $VMN_API_TOKEN) to admit "
        "VM at SWITCH:PORT as well as where it is: the destination's rules are in place before the VM "
        "moves, and its first frame there (RARP/GARP) moves it on every switch at once. Declare the VM "
        "at its new place in the file afterwards. Exits 0, 1 when refused, 2 when the API cannot be reached.",
    )
    parser.add_argument("vm", metavar="VM", help="the VM (as the network file names it)")
    parser.add_argument("--to", required=True, metavar="SWITCH:PORT", help="destination switch and port")
    parser.add_argument("--url", help="the API's address (default: $VMN_API_URL or http://127.0.0.1:9304)")
    parser.set_defaults(handler=run_migrate)


def run_migrate(args: argparse.Namespace) -> int:
    """Pre-install ``args.vm`` at ``args.to``: 0, 1 refused, 2 API unreachable."""
    import os

    from controller.api.auth import TOKEN_ENV
    from controller.api.client import ApiError, default_url, post_migrate

    try:
        post_migrate(args.url or default_url(), args.vm, args.to, os.environ.get(TOKEN_ENV, ""))
    except ApiError as exc:
        for line in exc.errors:
            print(f"vmn migrate: {line}", file=sys.stderr)
        return 2 if exc.status == 0 else 1
    print(f"{args.vm}: destination {args.to} pre-installed")
    return 0


TOPO_SIZES = {
    "ring": "N",
    "linear": "N",
    "leaf-spine": "SPINES LEAVES",
    "tree": "DEPTH FANOUT (or DEPTH and one fanout per level)",
    "single": "VMS",
}


def add_topo(subparsers: SubParsers[argparse.ArgumentParser]) -> None:
    """Register ``vmn topo KIND SIZE... [--subnet CIDR] [--mac-prefix P] [--dpid-base N]``."""
    parser = subparsers.add_parser(
        "topo",
        help="print a built network file (ring, linear, leaf-spine, tree, single)",
        description="Print the network file a builder of controller.tools.topo makes, with "
        "networks tenant-a (VLAN 100) and tenant-b (VLAN 200). Sizes: "
        + "; ".join(f"{kind}: {sizes}" for kind, sizes in TOPO_SIZES.items())
        + ". Exits 2 on bad sizes.",
    )
    parser.add_argument("kind", choices=tuple(TOPO_SIZES), help="the topology")
    parser.add_argument("sizes", type=int, nargs="+", metavar="SIZE", help="its sizes")
    parser.add_argument("--subnet", metavar="CIDR", help="give VMs addresses in this IPv4 subnet")
    parser.add_argument("--mac-prefix", metavar="P", help="give VMs MACs P:<switch>:<port> (P: 4 octets)")
    parser.add_argument(
        "--dpid-base",
        type=lambda text: int(text, 0),
        default=0,
        metavar="N",
        help="dpid of switch i is N + i (default 0)",
    )
    parser.set_defaults(handler=run_topo)


def run_topo(args: argparse.Namespace) -> int:
    """Print the built file: 0, or 2 and the reason on stderr when the sizes are wrong."""
    from controller.tools import topo

    kind: str = args.kind
    sizes: list[int] = args.sizes
    base: int = args.dpid_base
    subnet: str | None = args.subnet
    macs: str | None = args.mac_prefix
    counts = {"ring": (1, 1), "linear": (1, 1), "leaf-spine": (2, 2), "tree": (2, len(sizes)), "single": (1, 1)}
    low, high = counts[kind]
    try:
        if not low <= len(sizes) <= high:
            raise ValueError(f"{kind} takes {TOPO_SIZES[kind]}, got {len(sizes)} sizes")
        if kind in ("ring", "linear"):
            build = topo.ring if kind == "ring" else topo.linear
            net = build(sizes[0], dpid_base=base, subnet=subnet, mac_prefix=macs)
        elif kind == "leaf-spine":
            net = topo.leaf_spine(sizes[0], sizes[1], dpid_base=base, subnet=subnet, mac_prefix=macs)
        elif kind == "tree":
            fanout = sizes[1] if len(sizes) == 2 else sizes[1:]
            net = topo.tree(sizes[0], fanout, dpid_base=base, subnet=subnet, mac_prefix=macs)
        else:
            net = topo.single(sizes[0], dpid_base=base, subnet=subnet, mac_prefix=macs)
    except ValueError as exc:
        print(f"vmn topo: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(topo.to_yaml(net))
    return 0


SUBCOMMANDS: tuple[Callable[[SubParsers[argparse.ArgumentParser]], None], ...] = (
    add_check,
    add_provision,
    add_trace,
    add_flows,
    add_plan,
    add_migrate,
    add_topo,
)
"""The ``add_*`` functions, in the order ``vmn --help`` lists the subcommands."""


def build_parser() -> argparse.ArgumentParser:
    """The ``vmn`` argument parser with every subcommand in :data:`SUBCOMMANDS`."""
    parser = argparse.ArgumentParser(
        prog="vmn",
        description="VMN: an SDN controller for virtual machine networks on Open vSwitch.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in SUBCOMMANDS:
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``vmn`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status.

    Usage errors exit with status 2 via argparse's ``SystemExit``.
    """
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
