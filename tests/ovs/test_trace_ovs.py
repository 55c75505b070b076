"""``vmn trace`` against ``ovs-appctl ofproto/trace`` on generated network files.

Each example is a seeded network file: one or two switches (two: joined by a
declared link whose ends may be numbered or named), two networks, VMs on
numbered ports (from a pool that includes 1000 and 1001, the numbers the
trace used to give named ports) and on named ports (interfaces of exactly
those names, created in an order unlike their name order), with or without
``ip``/``mac``, one or two ACLs and sometimes a mirror tap. The lab builds
it: numbered ports with ``ofport_request``; named ports either attached
with the number OVS chooses (as libvirt's taps: the trace's numbers differ
from the switch's) or attached by ``vmn provision`` (which must request
exactly the trace's numbers). Once the controller has learned every VM
(each sends one ARP) and the links, every packet below goes both through
``vmn trace`` and through ``ofproto/trace`` (followed across the link),
and the edge ports it leaves by must be the same, named as the file names
them: VM to VM ICMP/TCP/UDP in and across networks, their replies, and an
ARP broadcast from every VM.

Conntrack is not run by ``ofproto/trace``: a first packet is traced with
``trk,new`` (OVS's default, and what it is), so forward packets are compared
in every network; replies are compared only in networks without conntrack
(no stateful rule applies), since their fate there depends on a committed
connection. Load balancers are left out: the VIP needs NAT, which
``ofproto/trace`` does not apply, and OVS's select hash is not the trace's
(the VIP path is covered by the unit tests and tests/ovs/test_lb_ovs.py).
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.config import loads_model
from controller.config.model import Model, PortRef
from controller.tools.lab import ControllerProcess, Host, Lab, flows, free_port, sh, wait_until
from controller.tools.lab.oftrace import Links, Output, Packet, PortMap, datapath_ports, follow
from controller.tools.portplan import port_numbers
from controller.tools.provision import Plan, provision
from controller.tools.sim import SimConntrack
from controller.tools.trace import Fabric, Proto, build_fabric, trace, vm_mac
from tests.ovs.metrics_client import total

pytestmark = pytest.mark.ovs

Factory = Callable[..., ControllerProcess]
NAMED_SUFFIXES = ["nz", "na", "nQ", "n10", "n9", "xb", "N0", "m5", "Zq", "a1"]
"""Named ports are the lab prefix plus one of these: Python, creation and OVS orders all differ."""
NUMBERED = [1, 2, 3, 1000, 1001, 1002]
CLIENT_PORT = 40000

SEND_ARP = """
import socket, struct, sys
iface, mac, spa, tpa = sys.argv[1:5]
hw = bytes.fromhex(mac.replace(":", ""))
arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + hw + socket.inet_aton(spa) + bytes(6) + socket.inet_aton(tpa)
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((iface, 0))
s.send(b"\\xff" * 6 + hw + b"\\x08\\x06" + arp + bytes(18))
"""


@dataclass(frozen=True)
class Example:
    seed: int
    switches: int
    named: str
    """``ovs``: the lab attaches named ports and OVS numbers them; ``provision``: ``vmn provision`` does."""

    def __str__(self) -> str:
        return f"seed{self.seed}-{self.switches}sw-{self.named}"


EXAMPLES = [
    Example(91, 2, "ovs"),
    Example(92, 2, "provision"),
    Example(93, 1, "ovs"),
    Example(94, 2, "ovs"),
    Example(95, 1, "provision"),
    Example(96, 2, "ovs"),
    Example(106, 2, "ovs"),
    Example(122, 2, "provision"),
]
"""Seeds picked so that, together, they have: named and numbered link ends, VMs on 1000-1002 beside named
ones, VMs without ip or mac, VM and network ACLs with and without conntrack, mirror taps numbered and named,
on the mirrored VM's switch and across the link."""


# -- the generator -------------------------------------------------------------


def _acls(rng: random.Random, ips: list[str]) -> dict[str, list[dict[str, Any]]]:
    target = rng.choice(ips)
    return {
        "no-web": [{"match": {"ip_proto": "tcp", "tcp_dst": 80}, "action": "deny"}, {"action": "allow"}],
        "icmp-dns": [
            {"match": {"ip_proto": "icmp"}, "action": "allow"},
            {"match": {"ip_proto": "udp", "udp_dst": 53, "ipv4_dst": target}, "action": "allow"},
            {"action": "deny"},
        ],
        "ping-back": [
            {"match": {"ip_proto": "icmp"}, "action": "allow", "stateful": True},
            {"match": {"ip_proto": "tcp"}, "action": "allow"},
        ],
    }


def generate(rng: random.Random, prefix: str, switches: int, metrics_port: int) -> dict[str, Any]:
    """A valid network file mixing numbered and named ports (see the module docstring)."""
    base = rng.randrange(0x100, 0xF000)
    names = [f"s{i + 1}" for i in range(switches)]
    net: dict[str, Any] = {
        "controller": {"metrics_port": metrics_port, "lldp_interval": 0.5},
        "switches": {s: {"dpid": base + i, "bridge": f"{prefix}b{i + 1}"} for i, s in enumerate(names)},
        "networks": {"red": {"vlan": 100 + rng.randrange(50)}, "blue": {"vlan": 200 + rng.randrange(50)}},
        "vms": {},
    }
    free: dict[str, list[PortRef]] = {s: list(NUMBERED) for s in names}
    suffixes = list(NAMED_SUFFIXES)
    rng.shuffle(suffixes)

    def take(switch: str, named: bool) -> PortRef:
        if named or not free[switch]:
            return prefix + suffixes.pop()
        number = rng.choice(free[switch])
        free[switch].remove(number)
        return number

    if switches == 2:
        ends = [f"{s}:{take(s, rng.random() < 0.5)}" for s in names]
        net["links"] = [ends]
    count = rng.randrange(4, 7)
    ips = [f"10.77.0.{i + 1}" for i in range(count)]
    for i in range(count):
        switch = names[i % switches]
        vm: dict[str, Any] = {
            "switch": switch,
            "port": take(switch, rng.random() < 0.5),
            "network": "red" if i % 2 == 0 or rng.random() < 0.3 else "blue",
        }
        if i < 3 or rng.random() < 0.8:  # the first three always have an address
            vm["ip"] = ips[i] + "/24"
        if rng.random() < 0.5:
            vm["mac"] = f"02:77:00:00:{base % 256:02x}:{i + 1:02x}"
        net["vms"][f"h{i + 1}"] = vm
    net["acls"] = _acls(rng, [ip for ip, vm in zip(ips, net["vms"].values(), strict=True) if "ip" in vm])
    users = rng.sample(sorted(net["vms"]), 2)
    net["vms"][users[0]]["acl_in"] = [rng.choice(["no-web", "icmp-dns"])]
    if rng.random() < 0.5:
        net["vms"][users[1]]["acl_in"] = ["ping-back"]
    else:
        net["networks"]["blue"]["acl_in"] = ["no-web"]
    with_mac = [n for n, vm in net["vms"].items() if "mac" in vm]
    if rng.random() < 0.6 and with_mac:
        tap_switch = rng.choice(names)
        net["mirrors"] = {
            "tap": {
                "switch": tap_switch,
                "port": take(tap_switch, rng.random() < 0.5),
                "vms": [rng.choice(with_mac)],
                "direction": rng.choice(["in", "out", "both"]),
            }
        }
    return net


# -- the lab ---------------------------------------------------------------------


@dataclass
class Built:
    model: Model
    fabric: Fabric
    hosts: dict[str, Host]
    """VM (and mirror tap) name -> host."""
    bridges: dict[str, str]
    links: Links
    labels: dict[tuple[str, int], str] = field(default_factory=dict)
    """(bridge, OpenFlow port) -> ``switch:port`` as the file names it."""
    ports: PortMap = field(default_factory=dict)

    def host_port(self, name: str) -> tuple[str, int]:
        return self.hosts[name].bridge, built_port(self.hosts[name])

    def label(self, out: Output) -> str:
        return self.labels.get((out.bridge, out.ofport), f"{out.bridge}:{out.ofport} ({out.iface}, undeclared)")


def _ofport(iface: str) -> int:
    """The OpenFlow port OVS gave ``iface``; it reads ``[]`` until vswitchd has added the port, so poll."""
    seen: list[str] = []

    def assigned() -> bool:
        seen[:] = [sh(["ovs-vsctl", "--timeout=10", "get", "interface", iface, "ofport"]).stdout.strip()]
        return seen[0].lstrip("-").isdigit() and int(seen[0]) > 0

    wait_until(assigned, 10, message=f"OVS numbers port {iface}")
    return int(seen[0])


def built_port(host: Host) -> int:
    assert host.ofport is not None, f"{host.name} is not attached"
    return host.ofport


def build(lab: Lab, net: dict[str, Any], model: Model, ctl: ControllerProcess, named: str) -> Built:
    """Bridges, numbered hosts, the link, named hosts (not in name order); then ``vmn provision`` if asked."""
    bridges = {s.name: lab.add_bridge(s.bridge, s.dpid, ctl.port) for s in model.switches}
    links: dict[tuple[str, int], tuple[str, int]] = {}
    labels: dict[tuple[str, int], str] = {}
    places: list[tuple[str, str, PortRef, dict[str, Any]]] = [
        (vm.name, vm.switch, vm.port, net["vms"][vm.name]) for vm in model.vms
    ]
    places += [(m.name, m.switch, m.port, {}) for m in model.mirrors]
    numbered = [p for p in places if isinstance(p[2], int)]
    named_ports = sorted((p for p in places if isinstance(p[2], str)), key=lambda p: p[2][-1])  # not name order
    hosts: dict[str, Host] = {}

    def add(name: str, switch: str, port: PortRef, entry: dict[str, Any]) -> None:
        attach = named == "ovs" or isinstance(port, int) or name not in model.vm_by_name
        hosts[name] = lab.add_host(name, bridges[switch], port, ip=entry.get("ip"), mac=entry.get("mac"), attach=attach)

    for place in numbered:  # first: OVS gives a named port the lowest free number, maybe a declared one
        add(*place)
    for link in model.links:
        made = lab.add_link(bridges[link.a.switch], link.a.port, bridges[link.b.switch], link.b.port)
        links[(made.bridge_a, made.port_a)] = (made.bridge_b, made.port_b)
        links[(made.bridge_b, made.port_b)] = (made.bridge_a, made.port_a)
        for end, number in ((link.a, made.port_a), (link.b, made.port_b)):
            labels[(bridges[end.switch], number)] = f"{end.switch}:{end.port}"
    for place in named_ports:
        add(*place)
    if named == "provision":
        changes = provision(Plan(model, controller=f"tcp:127.0.0.1:{ctl.port}", datapath_type="netdev"))
        # the lab made the bridges as the file says (it leaves the controller queue to provision)
        assert not any(c.startswith("bridge ") and " queue " not in c for c in changes), changes
        numbers = port_numbers(model)
        for name, switch, port, _ in named_ports:
            if hosts[name].ofport is None:
                hosts[name].ofport = _ofport(hosts[name].port)
                assert hosts[name].ofport == numbers[(switch, port)][1], (
                    f"{name}: provision attached {port} as {hosts[name].ofport}, trace says {numbers[(switch, port)]}"
                )
    for name, switch, port, _ in places:
        labels[(bridges[switch], built_port(hosts[name]))] = f"{switch}:{port}"
    return Built(model, build_fabric(model), hosts, bridges, links, labels)


def learn(built: Built, ctl: ControllerProcess, metrics: int) -> None:
    """Every VM sends ARP until the controller has learned them all and the link is up; flows settle."""
    for bridge in built.bridges.values():
        ctl.wait_connected(bridge, 20)
    vms = built.model.vms

    def learned() -> bool:
        for vm in vms:
            host = built.hosts[vm.name]
            spa = str(vm.ip.ip) if vm.ip is not None else "0.0.0.0"
            host.run([sys.executable, "-c", SEND_ARP, host.iface, host.mac, spa, "10.77.0.254"], check=True)
        return total(metrics, "vmn_hosts_learned") >= len(vms) and total(metrics, "vmn_links_up") >= len(
            built.model.links
        )

    wait_until(learned, 30, interval=0.5, message="every VM learned and every link up")
    last: list[list[str]] = []

    def settled() -> bool:
        now = [sorted(f"{f.identity} {f.actions}" for f in flows(b)) for b in built.bridges.values()]
        same = now == last
        last[:] = now
        return same

    wait_until(settled, 10, interval=0.5, message="flows settle")
    built.ports = datapath_ports(next(iter(built.bridges.values())))


@pytest.fixture(params=EXAMPLES, ids=str)
def built(request: pytest.FixtureRequest, lab: Lab, controller_factory: Factory, tmp_path: Path) -> Iterator[Built]:
    example: Example = request.param
    metrics = free_port()
    net = generate(random.Random(example.seed), lab.prefix, example.switches, metrics)
    cfg = tmp_path / "net.yaml"
    cfg.write_text(yaml.safe_dump(net, sort_keys=False))
    print(cfg.read_text())
    model = loads_model(cfg.read_text())
    ctl = controller_factory(cfg)
    result = build(lab, net, model, ctl, example.named)
    learn(result, ctl, metrics)
    yield result


# -- the comparison ----------------------------------------------------------------


def _conntrack_networks(model: Model) -> set[str]:
    """Networks whose IPv4 goes through conntrack: a stateful rule applies in them."""
    stateful = {a.name for a in model.acls if any(r.stateful for r in a.rules)}
    out = {n.name for n in model.networks if stateful & set(n.acl_in)}
    out |= {vm.network for vm in model.vms if stateful & set(vm.acl_in)}
    return out


def _ip_packet(src: Host, dst: Host, proto: Proto, port: int | None) -> Packet:
    assert src.ip is not None and dst.ip is not None
    fields = [("dl_src", src.mac), ("dl_dst", dst.mac), ("nw_src", src.ip), ("nw_dst", dst.ip)]
    if proto == "icmp":
        fields += [("icmp_type", "8"), ("icmp_code", "0")]
    else:
        fields += [(f"{proto}_src", str(CLIENT_PORT)), (f"{proto}_dst", str(port))]
    return Packet(proto, tuple(fields))


def _reply(pkt: Packet) -> Packet:
    f = dict(pkt.fields)
    swapped = {"dl_src": f["dl_dst"], "dl_dst": f["dl_src"], "nw_src": f["nw_dst"], "nw_dst": f["nw_src"]}
    if pkt.proto == "icmp":
        swapped["icmp_type"] = "0"
    else:
        src, dst = f"{pkt.proto}_src", f"{pkt.proto}_dst"
        swapped.update({src: f[dst], dst: f[src]})
    return pkt.with_fields(**swapped)


def _ovs(built: Built, src: str, pkt: Packet) -> tuple[set[str], str]:
    bridge, port = built.host_port(src)
    traced = follow(bridge, pkt, port, built.links, built.ports)
    return {built.label(o) for o in traced.outputs}, "\n".join(traced.texts)


@dataclass
class Case:
    src: str
    dst: str
    proto: Proto
    port: int | None

    def __str__(self) -> str:
        return f"{self.src}->{self.dst} {self.proto}{'' if self.port is None else f'/{self.port}'}"


def cases(model: Model, rng: random.Random) -> list[Case]:
    addressed = [vm.name for vm in model.vms if vm.ip is not None]
    out = []
    for src in addressed:
        for dst in addressed:
            if src != dst:
                out += [
                    Case(src, dst, "icmp", None),
                    Case(src, dst, "tcp", rng.choice([22, 80])),
                    Case(src, dst, "udp", rng.choice([53, 5353])),
                ]
    return out


def compare_ip(built: Built, case: Case, conntrack: set[str]) -> list[str]:
    """Disagreements of ``vmn trace`` and ``ofproto/trace`` on ``case`` and its reply."""
    model = built.model
    src, dst = model.vm_by_name[case.src], model.vm_by_name[case.dst]
    assert dst.ip is not None
    result = trace(built.fabric, case.src, str(dst.ip.ip), case.proto, case.port)
    pkt = _ip_packet(built.hosts[case.src], built.hosts[case.dst], case.proto, case.port)
    got, text = _ovs(built, case.src, pkt)
    problems = []
    if set(result.forward.outputs) != got:
        problems.append(
            f"{case}: vmn trace leaves by {sorted(result.forward.outputs)}, OVS by {sorted(got)}"
            f"\n{result.render()}\n{text}"
        )
    if result.reply is None or src.network in conntrack:
        return problems
    got, text = _ovs(built, case.dst, _reply(pkt))
    if set(result.reply.outputs) != got:
        problems.append(
            f"{case} reply: vmn trace leaves by {sorted(result.reply.outputs)}, OVS by {sorted(got)}"
            f"\n{result.render()}\n{text}"
        )
    return problems


def compare_arp(built: Built, name: str) -> list[str]:
    """An ARP request broadcast by VM ``name``: the same ports on both sides?"""
    vm = built.model.vm_by_name[name]
    host = built.hosts[name]
    spa = str(vm.ip.ip) if vm.ip is not None else "0.0.0.0"
    sim = built.fabric.fake.network(SimConntrack()).send(
        *built.fabric.at(vm),
        {
            "eth_src": vm_mac(vm),
            "eth_dst": "ff:ff:ff:ff:ff:ff",
            "eth_type": 0x0806,
            "vlan_vid": 0,
            "arp_op": 1,
            "arp_spa": spa,
            "arp_tpa": "10.77.0.254",
            "arp_sha": vm_mac(vm),
        },
    )
    want = {built.fabric.label(d, p) for d, p in sim.delivered()}
    pkt = Packet(
        "arp",
        (
            ("dl_src", host.mac),
            ("dl_dst", "ff:ff:ff:ff:ff:ff"),
            ("arp_op", "1"),
            ("arp_spa", spa),
            ("arp_tpa", "10.77.0.254"),
            ("arp_sha", host.mac),
        ),
    )
    got, text = _ovs(built, name, pkt)
    return [] if want == got else [f"{name} ARP broadcast: vmn trace reaches {sorted(want)}, OVS {sorted(got)}\n{text}"]


def test_trace_agrees_with_ofproto_trace(built: Built) -> None:
    started = time.monotonic()
    model = built.model
    conntrack = _conntrack_networks(model)
    todo = cases(model, random.Random(len(model.vms)))
    problems: list[str] = []
    for case in todo:
        problems += compare_ip(built, case, conntrack)
    for vm in model.vms:
        problems += compare_arp(built, vm.name)
    delivered = sum(
        trace(built.fabric, c.src, str(model.vm_by_name[c.dst].ip.ip), c.proto, c.port).forward.delivered  # type: ignore[union-attr]
        for c in todo
    )
    print(
        f"{len(todo)} IP cases ({delivered} delivered), {len(model.vms)} ARP broadcasts, "
        f"conntrack in {sorted(conntrack) or 'no network'}, {time.monotonic() - started:.1f}s"
    )
    assert not problems, f"{len(problems)} disagreements:\n" + "\n\n".join(problems)
