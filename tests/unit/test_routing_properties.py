"""Routing as a property of random network files: routed pairs deliver once, others never, trace agrees.

Hypothesis draws 1-3 switches in a line, 2-5 networks each with a gateway
(subnets drawn from a few, so networks on different routers often overlap),
each network on one of two routers or on none, and 1-2 VMs per network with
a declared ip and mac on random switches. After every VM is learned, each
VM sends IPv4 to its gateway's MAC for every other VM's address:

- when one router joins both networks, exactly one copy arrives, at the
  destination's port, untagged, with the TTL one less, the destination
  network's gateway MAC as source and the VM's MAC as destination; a TTL of
  1 is dropped;
- otherwise nothing reaches the destination, and nothing leaves the fabric
  outside the networks of the sender's router (its own network when it has
  none);
- ``vmn trace`` reaches the same verdict.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.config import parse_model
from controller.config.routing import gateway_mac
from controller.fabric.topology import LinkKey
from controller.tools.trace import build_fabric, trace
from tests.unit.fabric_helpers import BCAST, Harness

PROPERTY = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


@dataclass(frozen=True)
class Host:
    name: str
    dpid: int
    port: int
    network: str
    vlan: int
    mac: str
    ip: str
    router: int | None


@dataclass(frozen=True)
class Drawn:
    data: dict[str, object]
    ports: dict[int, list[int]]
    links: list[LinkKey]
    hosts: list[Host]

    def harness(self) -> Harness:
        return Harness(parse_model(self.data), {d: list(p) for d, p in self.ports.items()}, self.links)


@st.composite
def routed_files(draw: st.DrawFn) -> Drawn:
    n = draw(st.integers(1, 3))
    k = draw(st.integers(2, 5))
    routers = [draw(st.sampled_from([None, 0, 1])) for _ in range(k)]
    subnets: list[int] = []
    for i in range(k):
        sid = draw(st.integers(0, 2))
        if any(routers[j] is not None and routers[j] == routers[i] and subnets[j] == sid for j in range(i)):
            sid = 10 + i  # one router's subnets never overlap
        subnets.append(sid)
    networks: dict[str, object] = {
        f"n{i}": {"vlan": 10 * (i + 1), "gateway": f"10.0.{subnets[i]}.1/24"} for i in range(k)
    }
    ports: dict[int, list[int]] = {d: [] for d in range(1, n + 1)}
    vms: dict[str, object] = {}
    hosts: list[Host] = []
    for i in range(k):
        for j in range(draw(st.integers(1, 2))):
            dpid = draw(st.integers(1, n))
            port = len(ports[dpid]) + 1
            ports[dpid].append(port)
            name, mac, ip = f"v{i}x{j}", f"02:00:00:00:{i + 1:02x}:{j + 1:02x}", f"10.0.{subnets[i]}.{10 + j}"
            vms[name] = {"switch": f"s{dpid}", "port": port, "network": f"n{i}", "ip": f"{ip}/24", "mac": mac}
            hosts.append(Host(name, dpid, port, f"n{i}", 10 * (i + 1), mac, ip, routers[i]))
    links = []
    for d in range(1, n):
        ports[d].append(100)
        ports[d + 1].append(101)
        links.append(LinkKey.of(d, 100, d + 1, 101))
    data: dict[str, object] = {
        "switches": {f"s{d}": {"dpid": d} for d in range(1, n + 1)},
        "links": [[f"s{d}:100", f"s{d + 1}:101"] for d in range(1, n)],
        "networks": networks,
        "vms": vms,
    }
    joined = {r: [f"n{i}" for i in range(k) if routers[i] == r] for r in (0, 1)}
    if any(joined.values()):
        data["routers"] = {f"r{r}": {"networks": nets} for r, nets in joined.items() if nets}
    return Drawn(data, ports, links, hosts)


def learn_all(drawn: Drawn, h: Harness) -> None:
    for host in drawn.hosts:
        h.send(host.dpid, host.port, host.mac, BCAST, eth_type=0x0806, arp_op=1, arp_sha=host.mac, arp_spa=host.ip)


def joined(a: Host, b: Host) -> bool:
    return a.router is not None and a.router == b.router


@PROPERTY
@given(routed_files(), st.sampled_from([2, 64, 255]))
def test_routed_pairs_deliver_once_others_never(drawn: Drawn, ttl: int) -> None:
    h = drawn.harness()
    learn_all(drawn, h)
    for src in drawn.hosts:
        allowed = {(x.dpid, x.port) for x in drawn.hosts if x.network == src.network or joined(src, x)}
        for dst in drawn.hosts:
            if dst.network == src.network:
                continue
            t = h.send(
                src.dpid,
                src.port,
                src.mac,
                gateway_mac(src.vlan),
                learn=False,
                ipv4_src=src.ip,
                ipv4_dst=dst.ip,
                ip_proto=17,
                udp_src=5000,
                udp_dst=53,
                nw_ttl=ttl,
            )
            assert not t.loop
            assert {(d, p) for d, p, _ in t.outputs} <= allowed, (src.name, dst.name)
            if joined(src, dst):
                assert len(t.outputs) == 1, (src.name, dst.name, t.outputs)
                d, p, pkt = t.outputs[0]
                assert (d, p) == (dst.dpid, dst.port)
                assert pkt["nw_ttl"] == ttl - 1 and pkt["vlan_vid"] == 0
                assert pkt["eth_src"] == gateway_mac(dst.vlan) and pkt["eth_dst"] == dst.mac
            else:
                assert (dst.dpid, dst.port) not in {(d, p) for d, p, _ in t.outputs}


@PROPERTY
@given(routed_files())
def test_ttl_one_is_never_routed(drawn: Drawn) -> None:
    h = drawn.harness()
    learn_all(drawn, h)
    for src in drawn.hosts:
        for dst in drawn.hosts:
            if joined(src, dst) and dst.network != src.network:
                fields = dict(learn=False, ipv4_src=src.ip, ipv4_dst=dst.ip, ip_proto=1, icmpv4_type=8, nw_ttl=1)
                t = h.send(src.dpid, src.port, src.mac, gateway_mac(src.vlan), **fields)  # type: ignore[arg-type]
                assert not t.outputs and t.ttl_expired


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(routed_files())
def test_trace_agrees(drawn: Drawn) -> None:
    fabric = build_fabric(parse_model(drawn.data))
    for src in drawn.hosts:
        for dst in drawn.hosts:
            if dst.network == src.network:
                continue
            result = trace(fabric, src.name, dst.ip, "icmp")
            reached = result.forward.outputs == (f"s{dst.dpid}:{dst.port}",)
            assert reached == joined(src, dst), (src.name, dst.name, result.render())
            if joined(src, dst):
                assert result.connects and any("routed by" in line for line in result.forward.routed)
