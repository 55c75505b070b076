"""Tenant isolation and port security as properties of random network files.

Hypothesis draws whole network files (1-5 switches cabled as a random
connected graph, rings and parallel cables included; 2-4 networks; VMs with
and without declared ``mac``/``ip``/``ipv6``, on numbered and named ports;
undeclared ports; some VMs and networks with ``acl_in``/``acl_out`` lists
that allow everything statefully, so frames cross conntrack where they
enter and where they are delivered, floods one clone per port), validates them with :func:`controller.config.parse_model`
like a user's file, drives the pure core with fake switches and traces
packets through the simulated flow tables. Nothing here knows how the rules
look; it asserts where packets go:

- a frame a VM sends, untagged or priority-tagged (802.1Q VLAN id 0, any
  priority), is output only on VM ports of its own network, untagged,
  whatever it is (broadcast, unknown unicast, unicast to a MAC learned in
  another network), and a frame with another tag (any other VLAN id, or a
  second tag behind a priority tag), a frame from an undeclared port or a
  spoofed one (another MAC, IPv4 or IPv6 address, in any header: ARP, ARP
  probes, DHCP, neighbour discovery, DAD) goes nowhere, while what a host
  sends to take its own addresses (DHCP, ARP probe, DAD, router
  solicitation, MLD) reaches its whole network;
- every two VMs of one network reach each other: a broadcast reaches every
  other VM port of the network exactly once and never loops, and after
  learning a unicast reaches exactly the destination port;
- no LLDP from a VM port reaches the controller, so a VM cannot forge a link.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.config import parse_model
from controller.fabric.lldp import build_probe
from controller.fabric.topology import LinkKey
from controller.flows.rules import OFPVID_PRESENT
from controller.packets import link_local, solicited_node
from controller.tools.sim import Trace
from tests.unit.fabric_helpers import BCAST, Harness

EXAMPLES = 70
"""Random files per property and run: 70 keeps the whole suite under 20 minutes on 2 cores (each file is
compiled and learned in the simulator; every run draws new files, so coverage grows across runs)."""
PROPERTY = settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
ETH_IPV4, ETH_ARP, ETH_IPV6, ETH_LLDP, ETH_EXPERIMENTAL = 0x0800, 0x0806, 0x86DD, 0x88CC, 0x88B5
ETH_VLAN, ETH_QINQ = 0x8100, 0x88A8
PRIORITY_TAG = OFPVID_PRESENT  # an 802.1Q tag with VLAN id 0: only a priority
TRUNK_BASE = 100
STRAY_MAC = "02:ee:ee:ee:ee:ee"
UNKNOWN_MAC = "02:dd:dd:dd:dd:dd"


@dataclass(frozen=True)
class VmSpec:
    """One VM of a drawn file, and the addresses it really sends from."""

    name: str
    dpid: int
    port: int
    network: str
    mac: str
    ip: str
    declares_mac: bool
    declares_ip: bool
    ipv6: str = "2001:db8::ff"
    declares_ipv6: bool = False

    @property
    def at(self) -> tuple[int, int]:
        return (self.dpid, self.port)

    @property
    def secured(self) -> bool:
        """Port security checks its addresses (a mac and an IPv4 or IPv6 address declared)."""
        return self.declares_mac and (self.declares_ip or self.declares_ipv6)

    @property
    def speaks_ipv4(self) -> bool:
        """It may send ARP and IPv4 (unsecured, or its ip declared)."""
        return not self.secured or self.declares_ip

    @property
    def speaks_global_ipv6(self) -> bool:
        return not self.secured or self.declares_ipv6

    @property
    def link_local(self) -> str:
        return str(link_local(self.mac))


@dataclass(frozen=True)
class Fabric:
    """A drawn network file (``data``) plus the live switches it is tested on."""

    data: dict[str, object]
    ports: dict[int, list[int | tuple[int, str]]]
    links: list[LinkKey]
    vms: list[VmSpec]
    strays: list[tuple[int, int]]
    vlans: dict[str, int]

    def harness(self) -> Harness:
        ports: dict[int, Iterable[int | tuple[int, str]]] = dict(self.ports)
        return Harness(parse_model(self.data), ports, self.links)

    def ports_of(self, network: str) -> set[tuple[int, int]]:
        return {vm.at for vm in self.vms if vm.network == network}

    def trunks(self) -> list[tuple[int, int]]:
        return sorted({(l.a_dpid, l.a_port) for l in self.links} | {(l.b_dpid, l.b_port) for l in self.links})


@st.composite
def fabrics(draw: st.DrawFn) -> Fabric:
    """A random valid network file and the switches, ports and links it runs on."""
    n = draw(st.sampled_from([3, 1, 2, 4, 5]))
    dpids = draw(st.lists(st.integers(1, 0xFFFF), min_size=n, max_size=n, unique=True))
    names = [f"s{i}" for i in range(n)]
    pairs = [(draw(st.integers(0, i - 1)), i) for i in range(1, n)]  # a random spanning tree
    if n > 2 and draw(st.booleans()):  # a ring through all switches
        pairs += [(i, (i + 1) % n) for i in range(n) if {i, (i + 1) % n} not in map(set, pairs)]
    if n > 1:  # plus extra cables: meshes, parallel links
        extra = st.tuples(st.integers(0, n - 1), st.integers(1, n - 1)).map(lambda p: (p[0], (p[0] + p[1]) % n))
        pairs += draw(st.lists(extra, max_size=4))
    next_trunk = [TRUNK_BASE] * n
    links: list[LinkKey] = []
    declared_links: list[list[str]] = []
    for a, b in pairs:
        pa, pb = next_trunk[a], next_trunk[b]
        next_trunk[a] += 1
        next_trunk[b] += 1
        links.append(LinkKey.of(dpids[a], pa, dpids[b], pb))
        declared_links.append([f"{names[a]}:{pa}", f"{names[b]}:{pb}"])

    k = draw(st.integers(2, 4))
    vlan_ids = draw(st.lists(st.integers(1, 4094), min_size=k, max_size=k, unique=True))
    vlans = {f"net{i}": vlan for i, vlan in enumerate(vlan_ids)}
    per_network: Counter[str] = Counter()
    vms: list[VmSpec] = []
    raw_vms: dict[str, dict[str, object]] = {}
    ports: dict[int, list[int | tuple[int, str]]] = {d: [] for d in dpids}
    strays: list[tuple[int, int]] = []
    for s, dpid in enumerate(dpids):
        count = draw(st.integers(0, 4) if s else st.integers(1, 4))
        for p in range(1, count + 1):
            network = f"net{draw(st.integers(0, k - 1))}"
            per_network[network] += 1
            index = len(vms) + 1
            # IPs restart in every network, so networks share addresses (allowed, and a trap).
            vm = VmSpec(
                f"vm{index}",
                dpid,
                p,
                network,
                f"02:00:00:00:{index // 256:02x}:{index % 256:02x}",
                f"10.0.0.{per_network[network]}",
                draw(st.booleans()),
                draw(st.booleans()),
                f"2001:db8::{per_network[network]:x}",
                draw(st.booleans()),
            )
            named_port = draw(st.booleans())
            ports[dpid].append((p, f"tap{p}") if named_port else p)
            entry: dict[str, object] = {"switch": names[s], "port": f"tap{p}" if named_port else p, "network": network}
            if vm.declares_mac:
                entry["mac"] = vm.mac
            if vm.declares_ip:
                entry["ip"] = f"{vm.ip}/24"
            if vm.declares_ipv6:
                entry["ipv6"] = f"{vm.ipv6}/64"
            for key in ("acl_in", "acl_out"):  # policy that allows everything must change nothing here
                if draw(st.integers(0, 3)) == 0:
                    entry[key] = ["open"]
            raw_vms[vm.name] = entry
            vms.append(vm)
        if draw(st.booleans()):  # a port that no VM entry declares
            strays.append((dpid, count + 1))
            ports[dpid].append(count + 1)
        ports[dpid] += list(range(TRUNK_BASE, next_trunk[s]))

    data: dict[str, object] = {
        "controller": {"metrics_port": 0},
        "switches": {names[i]: {"dpid": dpids[i]} for i in range(n)},
        "links": declared_links,
        "networks": {
            name: {"vlan": vlan, **({"acl_out": ["open"]} if draw(st.booleans()) else {})}
            for name, vlan in vlans.items()
        },
        "vms": raw_vms,
        "acls": {"open": [{"action": "allow", "stateful": True}]},
    }
    return Fabric(data, ports, links, vms, strays, vlans)


def frame(vm: VmSpec, dst: str, **fields: object) -> dict[str, object]:
    """What ``vm`` legitimately sends to ``dst`` from its addresses: ARP for a broadcast, else IPv4
    (IPv6 UDP instead for a VM that may not use IPv4)."""
    if not vm.speaks_ipv4:
        return {
            "eth_type": ETH_IPV6,
            "ipv6_src": vm.ipv6,
            "ipv6_dst": "ff02::1" if dst == BCAST else "2001:db8::fe",
            "ip_proto": 17,
            "udp_src": 5,
            "udp_dst": 5,
            **fields,
        }
    if dst == BCAST:
        return {
            "eth_type": ETH_ARP,
            "arp_op": 1,
            "arp_sha": vm.mac,
            "arp_spa": vm.ip,
            "arp_tpa": "10.0.0.254",
            **fields,
        }
    return {"eth_type": ETH_IPV4, "ipv4_src": vm.ip, "ipv4_dst": "10.0.0.254", "ip_proto": 17, **fields}


def icmp6(src: str, dst: str, kind: int, **fields: object) -> dict[str, object]:
    return {
        "eth_type": ETH_IPV6,
        "ipv6_src": src,
        "ipv6_dst": dst,
        "ip_proto": 58,
        "icmpv6_type": kind,
        "icmpv6_code": 0,
        **fields,
    }


def dad(target: str, **fields: object) -> dict[str, object]:
    """A duplicate address detection probe for ``target`` (RFC 4862)."""
    group = str(solicited_node(ipaddress.IPv6Address(target)))
    return icmp6("::", group, 135, ipv6_nd_target=target, **fields)


def acquisition(vm: VmSpec) -> dict[str, dict[str, object]]:
    """What ``vm`` sends while it takes its addresses (all to broadcast or multicast)."""
    out: dict[str, dict[str, object]] = {
        "DAD for its link-local address": dad(vm.link_local),
        "router solicitation from ::": icmp6("::", "ff02::2", 133),
        "MLDv2 report from ::": icmp6("::", "ff02::16", 143),
        "unsolicited NA for its link-local address": icmp6(
            vm.link_local, "ff02::1", 136, ipv6_nd_target=vm.link_local, ipv6_nd_tll=vm.mac
        ),
    }
    if vm.speaks_ipv4:
        out["DHCP discover"] = {
            "eth_type": ETH_IPV4,
            "ipv4_src": "0.0.0.0",
            "ipv4_dst": "255.255.255.255",
            "ip_proto": 17,
            "udp_src": 68,
            "udp_dst": 67,
        }
        out["ARP probe"] = {"eth_type": ETH_ARP, "arp_op": 1, "arp_sha": vm.mac, "arp_spa": "0.0.0.0", "arp_tpa": vm.ip}
    if vm.speaks_global_ipv6:
        out["DAD for its global address"] = dad(vm.ipv6)
    return out


def send(h: Harness, vm: VmSpec, dst: str, learn: bool = True, **fields: object) -> Trace:
    return h.send(vm.dpid, vm.port, vm.mac, dst, learn=learn, **frame(vm, dst, **fields))


def assert_confined(fab: Fabric, trace: Trace, network: str, what: str) -> None:
    """Everything ``trace`` delivered went, untagged, to VM ports of ``network`` only."""
    allowed = fab.ports_of(network)
    assert not trace.loop, f"{what}: loop"
    for dpid, port, pkt in trace.outputs:
        assert (dpid, port) in allowed, f"{what}: output on {dpid:#x}:{port}, not a port of {network}"
        assert pkt.get("vlan_vid", 0) == 0, f"{what}: delivered tagged {pkt}"


def assert_dropped(trace: Trace, what: str) -> None:
    assert trace.outputs == [] and trace.to_controller == [], f"{what}: {trace.outputs} {trace.to_controller}"


def learn_all(fab: Fabric, h: Harness) -> None:
    """Every VM broadcasts once (an ARP request); the packet-ins teach the core."""
    for vm in fab.vms:
        send(h, vm, BCAST)
    learned = {(host.dpid, host.port, host.mac) for host in h.hosts.values()}
    assert learned == {(vm.dpid, vm.port, vm.mac) for vm in fab.vms}


# --- isolation ---------------------------------------------------------------------


TAGS = st.sampled_from([{}, {}, *({"vlan_vid": PRIORITY_TAG, "vlan_pcp": pcp} for pcp in range(8))])
"""No tag, or a priority tag with any priority (half the draws)."""


@PROPERTY
@given(fabrics(), st.data())
def test_no_frame_crosses_from_one_network_to_another(fab: Fabric, data: st.DataObject) -> None:
    h = fab.harness()
    tags = {vm.name: data.draw(TAGS) for vm in fab.vms}
    for vm in fab.vms:  # before learning: broadcasts, unknown unicast, taking its addresses
        tag = tags[vm.name]
        assert_confined(fab, send(h, vm, BCAST, **tag), vm.network, f"{vm.name} broadcast {tag}")
        assert_confined(fab, send(h, vm, UNKNOWN_MAC, **tag), vm.network, f"{vm.name} unknown unicast {tag}")
        for what, fields in acquisition(vm).items():
            trace = h.send(vm.dpid, vm.port, vm.mac, BCAST, learn=False, **fields, **tag)
            assert_confined(fab, trace, vm.network, f"{vm.name} {what} {tag}")
    learn_all(fab, h)
    for vm in fab.vms:  # after learning: unicast to every MAC, learned in any network
        for other in fab.vms:
            if other is not vm:
                trace = send(h, vm, other.mac, **tags[vm.name])
                assert_confined(fab, trace, vm.network, f"{vm.name} -> {other.name} {tags[vm.name]}")
        assert_confined(fab, send(h, vm, BCAST), vm.network, f"{vm.name} broadcast after learning")


@PROPERTY
@given(fabrics())
def test_tagged_frames_and_undeclared_ports_go_nowhere(fab: Fabric) -> None:
    h = fab.harness()
    learn_all(fab, h)
    for vm in fab.vms:
        for vlan in sorted(set(fab.vlans.values()) | {4095 - fab.vlans[vm.network], 1}):
            for dst in {BCAST, UNKNOWN_MAC} | {o.mac for o in fab.vms if o is not vm}:
                trace = send(h, vm, dst, vlan_vid=OFPVID_PRESENT | vlan, vlan_pcp=vlan & 1)
                assert_dropped(trace, f"{vm.name} sent a frame tagged {vlan} to {dst}")
        for dst in {BCAST, UNKNOWN_MAC} | {o.mac for o in fab.vms if o is not vm}:
            for inner in (ETH_VLAN, ETH_QINQ):  # a second tag behind a priority tag (OVS sees its TPID)
                trace = send(h, vm, dst, vlan_vid=PRIORITY_TAG, vlan_pcp=0, eth_type=inner)
                assert_dropped(trace, f"{vm.name} sent a priority tag then a {inner:#x} tag to {dst}")
    for dpid, port in fab.strays:
        for dst in {BCAST, UNKNOWN_MAC} | {vm.mac for vm in fab.vms}:
            assert_dropped(h.send(dpid, port, STRAY_MAC, dst), f"undeclared port {dpid:#x}:{port} -> {dst}")
            for vlan in fab.vlans.values():
                trace = h.send(dpid, port, STRAY_MAC, dst, vlan_vid=OFPVID_PRESENT | vlan)
                assert_dropped(trace, f"undeclared port {dpid:#x}:{port} tagged {vlan}")


@PROPERTY
@given(fabrics())
def test_trunk_frames_stay_in_the_network_of_their_tag(fab: Fabric) -> None:
    h = fab.harness()
    learn_all(fab, h)
    for dpid, port in fab.trunks():
        for network, vlan in fab.vlans.items():
            for dst in {BCAST, UNKNOWN_MAC} | {vm.mac for vm in fab.vms}:
                trace = h.send(dpid, port, STRAY_MAC, dst, learn=False, vlan_vid=OFPVID_PRESENT | vlan)
                assert_confined(fab, trace, network, f"trunk {dpid:#x}:{port} vlan {vlan} -> {dst}")
        assert_dropped(h.send(dpid, port, STRAY_MAC, BCAST, learn=False), f"untagged on trunk {dpid:#x}:{port}")


@PROPERTY
@given(fabrics())
def test_a_vm_cannot_forge_a_link_with_lldp(fab: Fabric) -> None:
    h = fab.harness()
    links = set(h.core.topology.links)
    ends = [(d, p if isinstance(p, int) else p[0]) for d, ps in fab.ports.items() for p in ps]
    for vm in fab.vms:
        trace = h.send(vm.dpid, vm.port, vm.mac, "01:80:c2:00:00:0e", eth_type=ETH_LLDP)
        for dpid, pkt in trace.to_controller:  # the VM's frame, forged as a probe from anywhere
            for origin in ends:
                h.lldp_in(dpid, int(str(pkt["in_port"])), build_probe(*origin))
        assert trace.outputs == [], f"LLDP from {vm.name} forwarded"
    assert h.core.topology.links == links
    for vm in fab.vms:
        assert_confined(fab, send(h, vm, BCAST), vm.network, f"{vm.name} broadcast")


# --- connectivity ------------------------------------------------------------------


@PROPERTY
@given(fabrics())
def test_every_pair_in_a_network_is_connected(fab: Fabric) -> None:
    h = fab.harness()
    for vm in fab.vms:  # the first broadcast of each VM: every other VM of its network, once
        others = fab.ports_of(vm.network) - {vm.at}
        for dst, tag in ((BCAST, {}), (UNKNOWN_MAC, {"vlan_vid": PRIORITY_TAG, "vlan_pcp": 1})):
            trace = send(h, vm, dst, **tag)
            assert not trace.loop
            assert Counter((d, p) for d, p, _ in trace.outputs) == Counter(others), f"{vm.name} -> {dst} {tag}"
        for what, fields in acquisition(vm).items():  # taking its addresses, it is heard by its network
            trace = h.send(vm.dpid, vm.port, vm.mac, BCAST, learn=False, **fields)
            assert Counter((d, p) for d, p, _ in trace.outputs) == Counter(others), f"{vm.name} {what}"
    learn_all(fab, h)
    for vm in fab.vms:
        for other in fab.vms:
            if other is vm or other.network != vm.network:
                continue
            trace = send(h, vm, other.mac)
            got = [(d, p) for d, p, _ in trace.outputs]
            assert got == [other.at] and not trace.loop, f"{vm.name} -> {other.name}: {got}"
            assert trace.to_controller == [], "a learned host's traffic needs no packet-in"
            assert all(n == 1 for n in trace.link_crossings.values())
        trace = send(h, vm, BCAST)
        assert Counter((d, p) for d, p, _ in trace.outputs) == Counter(fab.ports_of(vm.network) - {vm.at})
        assert all(n == 1 for n in trace.link_crossings.values()) and not trace.loop


# --- port security -----------------------------------------------------------------


def spoofs(
    vm: VmSpec, foreign_mac: str, foreign_ip: str, foreign_v6: str, foreign_ll: str
) -> dict[str, tuple[str, str, dict[str, object]]]:
    """Frames claiming another address: what -> (source MAC, destination MAC, fields)."""
    arp = {"eth_type": ETH_ARP, "arp_op": 1, "arp_sha": vm.mac, "arp_spa": vm.ip, "arp_tpa": "10.0.0.254"}
    own_v6 = vm.ipv6 if vm.speaks_global_ipv6 else vm.link_local
    return {
        "source MAC": (foreign_mac, BCAST, dict(frame(vm, BCAST), arp_sha=foreign_mac)),
        "ARP sender MAC": (vm.mac, BCAST, dict(arp, arp_sha=foreign_mac)),
        "ARP sender IP": (vm.mac, BCAST, dict(arp, arp_spa=foreign_ip)),
        "IPv4 source": (
            vm.mac,
            UNKNOWN_MAC,
            {"eth_type": ETH_IPV4, "ipv4_src": foreign_ip, "ipv4_dst": "10.0.0.254", "ip_proto": 17},
        ),
        "ARP probe for another address": (vm.mac, BCAST, dict(arp, arp_spa="0.0.0.0", arp_tpa=foreign_ip)),
        "ARP probe with another sender MAC": (
            vm.mac,
            BCAST,
            dict(arp, arp_sha=foreign_mac, arp_spa="0.0.0.0", arp_tpa=vm.ip),
        ),
        "IPv4 from 0.0.0.0 that is not DHCP": (
            vm.mac,
            BCAST,
            {
                "eth_type": ETH_IPV4,
                "ipv4_src": "0.0.0.0",
                "ipv4_dst": "255.255.255.255",
                "ip_proto": 17,
                "udp_src": 68,
                "udp_dst": 68,
            },
        ),
        "IPv6 source": (vm.mac, UNKNOWN_MAC, icmp6(foreign_v6, "2001:db8::fe", 128)),
        "IPv6 link-local source": (vm.mac, UNKNOWN_MAC, icmp6(foreign_ll, "fe80::fe", 128)),
        "NA for another address": (
            vm.mac,
            BCAST,
            icmp6(own_v6, "ff02::1", 136, ipv6_nd_target=foreign_v6, ipv6_nd_tll=vm.mac),
        ),
        "NA with another MAC": (
            vm.mac,
            BCAST,
            icmp6(own_v6, "ff02::1", 136, ipv6_nd_target=own_v6, ipv6_nd_tll=foreign_mac),
        ),
        "NS with another MAC": (
            vm.mac,
            BCAST,
            icmp6(own_v6, "ff02::1:ff00:fe", 135, ipv6_nd_target="2001:db8::fe", ipv6_nd_sll=foreign_mac),
        ),
        "DAD for another address": (vm.mac, BCAST, dad(foreign_v6)),
        "router advertisement": (vm.mac, BCAST, icmp6(vm.link_local, "ff02::1", 134)),
    }


@PROPERTY
@given(fabrics(), st.data())
def test_declared_addresses_are_the_only_ones_a_vm_may_send_from(fab: Fabric, data: st.DataObject) -> None:
    h = fab.harness()
    learn_all(fab, h)
    for vm in fab.vms:
        peers = [o for o in fab.vms if o is not vm]
        own = fab.ports_of(vm.network) - {vm.at}
        # A VM without a declared MAC may send from any MAC (no port security): give it a fresh
        # one, so it does not move a peer's learned address and upset the checks that follow.
        foreign_mac = (
            data.draw(st.sampled_from([o.mac for o in peers] + [UNKNOWN_MAC]))
            if vm.declares_mac
            else "02:ff" + vm.mac[5:]
        )
        foreign_ip = data.draw(st.sampled_from(sorted({o.ip for o in peers if o.ip != vm.ip} | {"10.0.0.250"})))
        foreign_v6 = data.draw(st.sampled_from(sorted({o.ipv6 for o in peers if o.ipv6 != vm.ipv6} | {"2001:db8::fa"})))
        foreign_ll = data.draw(st.sampled_from(sorted({o.link_local for o in peers} | {"fe80::fa"})))
        tag = data.draw(st.sampled_from([{}, {"vlan_vid": PRIORITY_TAG, "vlan_pcp": 1}]))
        for what, (src, dst, fields) in spoofs(vm, foreign_mac, foreign_ip, foreign_v6, foreign_ll).items():
            trace = h.send(vm.dpid, vm.port, src, dst, learn=True, **fields, **tag)
            blocked = vm.declares_mac and (what == "source MAC" or vm.secured)
            if blocked:
                assert_dropped(trace, f"{vm.name} spoofing its {what} {tag}")
            else:
                assert_confined(fab, trace, vm.network, f"{vm.name} with another {what}")
                assert {(d, p) for d, p, _ in trace.outputs} == own
        legit = send(h, vm, BCAST, learn=False)
        assert Counter((d, p) for d, p, _ in legit.outputs) == Counter(own), f"{vm.name} on its own addresses"
    # Spoofing taught the core nothing: every MAC is still where its VM is.
    for vm in fab.vms:
        if vm.declares_mac:
            host = h.hosts.get((fab.vlans[vm.network], vm.mac))
            assert host is not None and (host.dpid, host.port) == vm.at


# --- examples worth keeping fixed ---------------------------------------------------


def test_forged_probe_from_a_vm_leaves_the_topology_alone() -> None:
    """Regression: table 0 sent LLDP from VM ports to the controller, which made them trunks."""
    fab = Fabric(
        data={
            "controller": {"metrics_port": 0},
            "switches": {"s1": {"dpid": 1}, "s2": {"dpid": 2}},
            "links": [["s1:10", "s2:10"]],
            "networks": {"red": {"vlan": 100}, "blue": {"vlan": 200}},
            "vms": {
                "r1": {"switch": "s1", "port": 1, "network": "red"},
                "b1": {"switch": "s1", "port": 2, "network": "blue"},
                "r2": {"switch": "s2", "port": 1, "network": "red"},
            },
        },
        ports={1: [1, 2, 10], 2: [1, 10]},
        links=[LinkKey.of(1, 10, 2, 10)],
        vms=[
            VmSpec("r1", 1, 1, "red", "02:00:00:00:00:01", "10.0.0.1", False, False),
            VmSpec("b1", 1, 2, "blue", "02:00:00:00:00:02", "10.0.0.2", False, False),
            VmSpec("r2", 2, 1, "red", "02:00:00:00:00:03", "10.0.0.3", False, False),
        ],
        strays=[],
        vlans={"red": 100, "blue": 200},
    )
    h = fab.harness()
    forged = h.send(1, 2, "02:00:00:00:00:02", "01:80:c2:00:00:0e", eth_type=ETH_LLDP)
    for dpid, pkt in forged.to_controller:  # b1 claims to be s2 port 5
        h.lldp_in(dpid, int(str(pkt["in_port"])), build_probe(2, 5))
    assert forged.to_controller == [] and forged.outputs == []
    assert h.core.topology.links == {LinkKey.of(1, 10, 2, 10)}
    red = send(h, fab.vms[0], BCAST)
    assert [(d, p) for d, p, _ in red.outputs] == [(2, 1)]


def test_same_ip_in_two_networks_does_not_confuse_arp() -> None:
    fab = Fabric(
        data={
            "controller": {"metrics_port": 0},
            "switches": {"s1": {"dpid": 1}},
            "networks": {"red": {"vlan": 100}, "blue": {"vlan": 200}},
            "vms": {
                "r1": {"switch": "s1", "port": 1, "network": "red", "mac": "02:00:00:00:00:01", "ip": "10.0.0.1/24"},
                "b1": {"switch": "s1", "port": 2, "network": "blue", "mac": "02:00:00:00:00:02", "ip": "10.0.0.1/24"},
            },
        },
        ports={1: [1, 2]},
        links=[],
        vms=[
            VmSpec("r1", 1, 1, "red", "02:00:00:00:00:01", "10.0.0.1", True, True),
            VmSpec("b1", 1, 2, "blue", "02:00:00:00:00:02", "10.0.0.1", True, True),
        ],
        strays=[],
        vlans={"red": 100, "blue": 200},
    )
    h = fab.harness()
    for vm in fab.vms:
        trace = send(h, vm, BCAST)
        assert trace.outputs == [] and len(trace.to_controller) == 1  # alone in its network
