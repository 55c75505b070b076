"""What a network file says every VM should reach: the expectations of the Mininet check, from ``vmn trace``.

For every ordered pair of VMs with an IPv4 ``ip`` it traces an ICMP echo
(and its reply) through the flows the controller would install
(:mod:`controller.tools.trace`), and for every TCP load balancer a
connection to ``vip:port`` from every VM that is not one of its backends.
Each case gets a kind, the label the check prints:

- ``l2``: same network, delivered both ways;
- ``routed``: another network, delivered both ways (through a router);
- ``denied``: not delivered, and an ACL rule (or conntrack) said no;
- ``isolated``: not delivered, and no ACL was involved (no router joins
  the networks, no route, or the sender has no route to the address);
- ``vip``: a connection to a load balancer's VIP (delivered or not).

A Mininet VM sends only to addresses in its own subnet or, when its
network has a gateway in that subnet, through it (its default route);
a case the sender (or, for the reply, the receiver) has no route for is
``isolated`` whatever the flows would do.

Run ``python -m controller.tools.expect FILE`` for the JSON that
``mininet_scripts/vmn_mininet.py --check`` reads (``{"cases": [...],
"listeners": [...]}``; see :func:`plan`). Exit 0, or 2 on an invalid file.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from ipaddress import IPv4Address

from controller.config.model import LoadBalancer, Model, Vm
from controller.tools.trace import Fabric, TraceResult, backend_vm, build_fabric, trace


@dataclass(frozen=True)
class Case:
    """One probe of the check: from a VM to an address, what it should see, and why.

    ``target`` is the receiving VM's name, or ``vip:NAME`` for a load balancer.
    """

    src: str
    target: str
    ip: str
    proto: str
    port: int | None
    kind: str
    reach: bool
    why: tuple[str, ...]


@dataclass(frozen=True)
class Listener:
    """A server the check starts in a VM before probing (a load balancer's backend)."""

    vm: str
    proto: str
    port: int


def has_route(vm: Vm, ip: IPv4Address, model: Model) -> bool:
    """Whether ``vm`` (as Mininet configures it) sends to ``ip``: its own subnet, or its gateway's default route."""
    if vm.ip is None:
        return False
    if ip in vm.ip.network:
        return True
    gateway = model.network_by_name[vm.network].gateway
    return gateway is not None and gateway.ip in vm.ip.network


def _decisions(result: TraceResult) -> tuple[str, ...]:
    legs = [result.forward] + ([result.reply] if result.reply is not None else [])
    return tuple(line for leg in legs for line in leg.routed + leg.acl)


def _kind(result: TraceResult, same_network: bool) -> str:
    if result.connects:
        return "l2" if same_network else "routed"
    said_no = any("(deny" in line or "invalid, dropped" in line for line in _decisions(result))
    return "denied" if said_no else "isolated"


def vm_case(fabric: Fabric, src: Vm, dst: Vm) -> Case:
    """The ping from ``src`` to ``dst`` (both with an ``ip``)."""
    assert src.ip is not None and dst.ip is not None
    ip = dst.ip.ip
    if not has_route(src, ip, fabric.model) or not has_route(dst, src.ip.ip, fabric.model):
        why = (f"no route between {src.name} ({src.ip}) and {dst.name} ({dst.ip}) in the VMs",)
        return Case(src.name, dst.name, str(ip), "icmp", None, "isolated", False, why)
    result = trace(fabric, src.name, str(ip), "icmp")
    kind = _kind(result, src.network == dst.network)
    return Case(src.name, dst.name, str(ip), "icmp", None, kind, result.connects, _decisions(result))


def vip_case(fabric: Fabric, src: Vm, lb: LoadBalancer) -> Case:
    """A connection from ``src`` to ``lb``'s ``vip:port``."""
    target = f"vip:{lb.name}"
    if not has_route(src, lb.vip, fabric.model):
        unrouted = (f"no route from {src.name} ({src.ip}) to {lb.vip}",)
        return Case(src.name, target, str(lb.vip), lb.protocol, lb.port, "vip", False, unrouted)
    result = trace(fabric, src.name, str(lb.vip), lb.protocol, lb.port)
    chosen = [hop.removeprefix("out ") for hop in result.forward.path if hop.startswith("out ")]
    why = _decisions(result)
    if result.forward.delivered:
        why = (f"load balancer {lb.name}: to backend {', '.join(chosen)}",) + why
    return Case(src.name, target, str(lb.vip), lb.protocol, lb.port, "vip", result.connects, why)


def backends(model: Model, lb: LoadBalancer) -> tuple[Vm, ...]:
    """The VMs that serve ``lb``, in the file's order."""
    found = (backend_vm(model, lb, backend.ip) for backend in lb.backends)
    return tuple(vm for vm in found if vm is not None)


def plan(model: Model) -> tuple[tuple[Case, ...], tuple[Listener, ...]]:
    """Every case of the check, sorted by (sender, target), and the servers it needs.

    VM pairs first (every ordered pair of distinct VMs with an ``ip``), then
    one case per TCP load balancer for each VM with an ``ip`` that is not its
    backend (a backend's connection to its own VIP may hairpin to itself);
    each backend VM listens on the balancer's port.
    """
    fabric = build_fabric(model)
    vms = sorted((vm for vm in model.vms if vm.ip is not None), key=lambda vm: vm.name)
    cases = [vm_case(fabric, src, dst) for src in vms for dst in vms if src.name != dst.name]
    listeners: set[Listener] = set()
    for lb in model.load_balancers:
        if lb.protocol != "tcp":
            continue
        served = backends(model, lb)
        listeners.update(Listener(vm.name, lb.protocol, lb.port) for vm in served)
        cases += [vip_case(fabric, src, lb) for src in vms if src not in served]
    ordered = sorted(cases, key=lambda case: (case.src, case.target))
    return tuple(ordered), tuple(sorted(listeners, key=lambda item: (item.vm, item.port)))


def to_json(cases: Sequence[Case], listeners: Sequence[Listener]) -> str:
    """The plan as the JSON document the Mininet check reads (keys sorted, one case per line)."""
    lines = [json.dumps(asdict(case), sort_keys=True) for case in cases]
    servers = json.dumps([asdict(item) for item in listeners], sort_keys=True)
    return '{"cases": [\n' + ",\n".join(lines) + '\n],\n"listeners": ' + servers + "}\n"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m controller.tools.expect FILE``: print the plan; 2 and the errors on an invalid file."""
    from controller.config import ConfigError, load_model

    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m controller.tools.expect FILE", file=sys.stderr)
        return 2
    try:
        model = load_model(args[0])
    except ConfigError as exc:
        for error in exc.errors:
            print(error, file=sys.stderr)
        return 2
    except OSError as exc:
        print(exc, file=sys.stderr)
        return 2
    sys.stdout.write(to_json(*plan(model)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
