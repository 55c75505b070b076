"""``vmn trace``: run a packet through the flow tables the controller would install.

:func:`build_fabric` connects every declared switch (declared links up,
every VM learned) to a :class:`~controller.core.Core` and takes the rules it
computes, the same rules the controller sends; :func:`trace` then sends one
packet from a VM through simulated tables (:mod:`controller.tools.sim`) and,
when it arrives, the reply, with one conntrack shared by both (so a
stateful allow admits its reply exactly as on OVS).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Literal

from apps.acl.app import AclFirewall
from apps.acl.compile import STAGE_OF_TABLE, Origin
from apps.lb.app import LoadBalancerApp
from apps.lb.probe import vip_mac
from apps.lb.runtime import Location
from apps.router.app import RouterApp
from apps.router.explain import describe_hops, describe_uplink, routed_target
from controller.config.model import LoadBalancer, Model, PortRef, Uplink, Vm
from controller.config.routing import gateway_mac
from controller.config.uplinks import uplink_mac
from controller.flows.pipeline import APP_ACL, T_LEARN
from controller.flows.rules import Ct
from controller.tools.fakefabric import FakeFabric
from controller.tools.portplan import port_numbers
from controller.tools.sim import Packet, SimConntrack, Trace

Proto = Literal["tcp", "udp", "icmp"]
CLIENT_PORT = 40000
UPSTREAM_MAC = "02:00:5e:00:53:01"
"""The upstream gateway's MAC on every uplink, in a trace."""
OUTSIDE_IP = "198.51.100.1"
"""Where a trace from an uplink comes from by default (TEST-NET-2, RFC 5737)."""
TTL = 64
"""The IPv4 TTL of a traced packet (and of its reply)."""


def vm_mac(vm: Vm) -> str:
    """The VM's declared MAC, or a stable made-up one (``02:`` + digest of its name)."""
    if vm.mac:
        return vm.mac
    return "02:" + hashlib.blake2b(vm.name.encode(), digest_size=5).digest().hex(":")


@dataclass
class Fabric:
    """A fake fabric with every declared switch and link up and every VM learned.

    Ports are numbered as :mod:`controller.tools.portplan` says (what
    ``vmn provision`` requests); a switch may number a named port otherwise,
    so paths show each port as the file names it (:meth:`label`).
    """

    model: Model
    fake: FakeFabric
    ports: Mapping[tuple[str, PortRef], tuple[int, int]]
    """(switch name, declared port) -> (dpid, OpenFlow port)."""

    def at(self, vm: Vm) -> tuple[int, int]:
        return self.ports[(vm.switch, vm.port)]

    @cached_property
    def _declared(self) -> Mapping[tuple[int, int], tuple[str, PortRef]]:
        return {at: key for key, at in self.ports.items()}

    def vm_at(self, dpid: int, port: int) -> Vm | None:
        """The VM on ``dpid``/``port`` (None: a link, a mirror tap or nothing declared)."""
        switch, ref = self._declared.get((dpid, port), ("", 0))
        return next((vm for vm in self.model.vms if (vm.switch, vm.port) == (switch, ref)), None)

    def uplink_at(self, dpid: int, port: int) -> Uplink | None:
        """The uplink on ``dpid``/``port``, if any."""
        switch, ref = self._declared.get((dpid, port), ("", 0))
        return next((u for u in self.model.uplinks if (u.switch, u.port) == (switch, ref)), None)

    def uplink_port(self, uplink: Uplink) -> tuple[int, int]:
        return self.ports[(uplink.switch, uplink.port)]

    def label(self, dpid: int, port: int) -> str:
        """``switch:port`` as the file names the port (``s2:vnet3``, ``s1:10``)."""
        switch, ref = self._declared.get((dpid, port), ("", port))
        return f"{switch or self._switch_name(dpid)}:{ref}"

    def _switch_name(self, dpid: int) -> str:
        switch = self.model.switch_by_dpid.get(dpid)
        return switch.name if switch else hex(dpid)

    def origins(self) -> Mapping[int, Origin]:
        """Cookie -> (ACL, rule) of every ACL-list flow (empty when the ACL app is off)."""
        apps = {a.name: a for a in self.fake.core.apps}
        acl = apps.get("acl")
        return acl.origins(self.model) if isinstance(acl, AclFirewall) else {}


def backend_vm(model: Model, lb: LoadBalancer, ip: IPv4Address) -> Vm | None:
    """The VM that answers for backend ``ip`` of ``lb``: the one of the balancer's network with that ip.

    The controller finds backends by ARP from the VIP, inside the balancer's
    network; a VM of another network with the same address is not it.
    """
    return next((v for v in model.vms if v.ip is not None and v.ip.ip == ip and v.network == lb.network), None)


def build_fabric(model: Model) -> Fabric:
    """Connect the model's switches and links to a core and learn every VM on its port."""
    fake = FakeFabric.from_model(model)
    fabric = Fabric(model, fake, port_numbers(model))
    for vm in model.vms:
        dpid, port = fabric.at(vm)
        vlan = model.network_by_name[vm.network].vlan
        frame = (
            b"\xff" * 6
            + bytes.fromhex(vm_mac(vm).replace(":", ""))
            + struct.pack("!HHH", 0x8100, vlan, 0x0806)
            + bytes(46)
        )
        fake.packet_in(dpid, T_LEARN, port, frame)
    balancer = {a.name: a for a in fake.core.apps}.get("lb")
    if isinstance(balancer, LoadBalancerApp):
        for lb in model.load_balancers:  # backends without a declared MAC: as if ARP had found them
            for backend in lb.backends:
                owner = backend_vm(model, lb, backend.ip)
                if owner is not None and (lb.network, backend.ip) not in balancer.runtime.located:
                    balancer.assume_located(lb.network, str(backend.ip), Location(vm_mac(owner), *fabric.at(owner)))
        fake.recompute()
    router = {a.name: a for a in fake.core.apps}.get("router")
    if isinstance(router, RouterApp):  # routed VMs without a declared MAC: as if ARP had found them
        router.assume_all_found(vm_mac)
        router.assume_upstream(UPSTREAM_MAC)
        fake.recompute()
    return fabric


@dataclass(frozen=True)
class Leg:
    """One packet's fate: delivered or not, where it went, which ACL rules it met.

    ``outputs`` are the edge ports it left by (``s1:vnet0``, ``s2:3``), in
    port order: the destination's, and any other (a flood, a mirror tap).
    """

    delivered: bool
    path: tuple[str, ...]
    acl: tuple[str, ...]
    outputs: tuple[str, ...] = ()
    routed: tuple[str, ...] = ()
    """The routing decisions it met (router, gateways, TTL, route): :func:`apps.router.explain.describe_hops`."""

    @property
    def verdict(self) -> str:
        return "allow" if self.delivered else "deny"


@dataclass(frozen=True)
class TraceResult:
    forward: Leg
    reply: Leg | None

    @property
    def connects(self) -> bool:
        """Whether a connection (request and reply) gets through."""
        return self.forward.delivered and self.reply is not None and self.reply.delivered

    def render(self) -> str:
        lines = [
            f"verdict: {self.forward.verdict}" + (f" (reply: {self.reply.verdict})" if self.reply is not None else ""),
            "path: " + " -> ".join(self.forward.path),
        ]
        lines += [f"decided by: {a}" for a in self.forward.routed + self.forward.acl] or ["decided by: no ACL applies"]
        if self.reply is not None:
            lines.append("reply path: " + " -> ".join(self.reply.path))
            reply = self.reply.routed + self.reply.acl
            lines += [f"reply decided by: {a}" for a in reply] or ["reply decided by: no ACL applies"]
        return "\n".join(lines)


def _packet(src: Vm, dst_mac: str, dst_ip: str, proto: Proto, port: int | None) -> Packet:
    pkt: Packet = {"eth_src": vm_mac(src), "eth_dst": dst_mac, "vlan_vid": 0}
    if isinstance(ip_address(dst_ip), IPv6Address):
        pkt.update(eth_type=0x86DD, ipv6_src=str(src.ipv6.ip) if src.ipv6 else "::", ipv6_dst=dst_ip)
    else:
        pkt.update(eth_type=0x0800, ipv4_src=str(src.ip.ip) if src.ip else "0.0.0.0", ipv4_dst=dst_ip, nw_ttl=TTL)
    if proto == "icmp" and pkt["eth_type"] == 0x86DD:
        pkt.update(ip_proto=58, icmpv6_type=128, icmpv6_code=0)
    elif proto == "icmp":
        pkt.update(ip_proto=1, icmpv4_type=8, icmpv4_code=0)
    else:
        pkt.update(ip_proto=6 if proto == "tcp" else 17)
        pkt[f"{proto}_src"] = CLIENT_PORT
        pkt[f"{proto}_dst"] = port if port is not None else 0
    return pkt


def _reply(pkt: Packet) -> Packet:
    out = dict(pkt)
    fam = "ipv6" if "ipv6_src" in pkt else "ipv4"
    out.update(
        {
            "eth_src": pkt["eth_dst"],
            "eth_dst": pkt["eth_src"],
            f"{fam}_src": pkt[f"{fam}_dst"],
            f"{fam}_dst": pkt[f"{fam}_src"],
        }
    )
    if pkt.get("ip_proto") == 1:
        out["icmpv4_type"] = 0
    elif pkt.get("ip_proto") == 58:
        out["icmpv6_type"] = 129
    for proto in ("tcp", "udp"):
        if f"{proto}_src" in pkt:
            out[f"{proto}_src"], out[f"{proto}_dst"] = pkt[f"{proto}_dst"], pkt[f"{proto}_src"]
    return out


def _describe_acl(trace: Trace, origins: Mapping[int, Origin]) -> tuple[str, ...]:
    """The ACL decisions a packet met, in order: ``vm acl web rule 0 (allow)``, ``network acl_out ...``."""
    out = []
    for _, rule in trace.matched:
        stage = STAGE_OF_TABLE.get(rule.table)
        if rule.app != APP_ACL or stage is None:
            continue
        if any(isinstance(a, Ct) for a in rule.actions):
            continue  # the conntrack pass itself decides nothing
        origin = origins.get(rule.cookie)
        action = "allow" if rule.goto is not None else "deny"
        where = "" if stage.direction == "in" else " at delivery"
        if origin is not None:
            stateful = ", stateful" if rule.write_metadata else ""
            what = f"rule {origin[1]}" if origin[1].isdigit() else origin[1]
            key = "acl" if stage.direction == "in" else "acl_out"
            out.append(f"{stage.scope} {key} {origin[0]} {what} ({action}{stateful})")
        elif rule.goto is not None and any(k == "ct_state" for k, _ in rule.match):
            out.append(f"conntrack{where}: reply of an allowed connection")
        elif any(k == "ct_state" for k, _ in rule.match):
            out.append(f"conntrack{where}: invalid, dropped")
    return tuple(out)


def _leg(fabric: Fabric, trace: Trace, dst: tuple[int, int] | None, origins: Mapping[int, Origin]) -> Leg:
    path = [fabric.label(d, p) for d, p in trace.arrivals]
    left = sorted(trace.delivered())
    outputs = tuple(fabric.label(d, p) for d, p in left)
    for (d, p), label in zip(left, outputs, strict=True):
        vm = fabric.vm_at(d, p)
        up = fabric.uplink_at(d, p)
        path.append(f"out {label}" + (f" ({vm.name})" if vm else f" (uplink {up.name})" if up else ""))
    delivered = dst is not None and dst in left
    routed = describe_hops(fabric.model, trace.matched, TTL) + describe_uplink(fabric.model, trace.matched)
    return Leg(delivered, tuple(path), _describe_acl(trace, origins), outputs, routed)


def _address(vm: Vm, v6: bool) -> IPv4Address | IPv6Address | None:
    if v6:
        return vm.ipv6.ip if vm.ipv6 is not None else None
    return vm.ip.ip if vm.ip is not None else None


def _vlan(model: Model, vm: Vm) -> int:
    return model.network_by_name[vm.network].vlan


def _balancer(model: Model, src: Vm, target: IPv4Address | IPv6Address) -> LoadBalancer | None:
    """The balancer whose VIP ``target`` is, as ``src`` reaches it: its own network's, or one its router joins."""
    router = model.router_of.get(src.network)
    served = (src.network, *(router.networks if router is not None else ()))
    found = [lb for lb in model.load_balancers if lb.vip == target and lb.network in served]
    return min(found, key=lambda lb: (lb.network != src.network, lb.name), default=None)


def trace(
    fabric: Fabric, src_vm: str, dst_ip: str, proto: Proto, port: int | None = None, source: str = OUTSIDE_IP
) -> TraceResult:
    """Send ``proto`` (to ``port``) from VM ``src_vm`` to ``dst_ip`` (IPv4 or IPv6), then its reply.

    An IPv6 packet leaves from the VM's ``ipv6``; ``icmp`` is an ICMPv6 echo then. An address
    outside every network of the VM's router leaves by its uplink, if it has one, and the reply
    comes back from there. ``src_vm`` may also name an uplink: the packet then comes from the
    outside address ``source`` in through that uplink (to a floating IP, say).
    Raises ``ValueError`` for an unknown VM or uplink, a VM without an address of that family, or a bad IP.
    """
    model = fabric.model
    if src_vm in model.uplink_by_name:
        return _trace_inbound(fabric, model.uplink_by_name[src_vm], dst_ip, proto, port, source)
    src = model.vm_by_name.get(src_vm)
    if src is None:
        raise ValueError(f"unknown vm or uplink {src_vm!r}")
    try:
        target = ip_address(dst_ip)
    except ValueError:
        raise ValueError(f"{dst_ip!r} is not an IPv4 or IPv6 address") from None
    v6 = isinstance(target, IPv6Address)
    if _address(src, v6) is None:
        raise ValueError(f"vm {src_vm!r} has no {'ipv6' if v6 else 'ip'} in the network file")
    vip = _balancer(model, src, target)
    dst = next((v for v in model.vms if _address(v, v6) == target and v.network == src.network), None) or next(
        (v for v in model.vms if _address(v, v6) == target), None
    )
    dst_mac = vm_mac(dst) if dst else "02:ff:ff:ff:ff:fe"
    if vip is not None:  # its own network's VIP answers ARP; a routed one is reached through the gateway
        dst_mac = vip_mac(dst_ip) if vip.network == src.network else gateway_mac(_vlan(model, src))
    hop = routed_target(model, src, target) if isinstance(target, IPv4Address) and not vip else None
    if hop is not None:  # to the gateway; the reply to the destination network's
        dst, dst_mac = hop.vm, hop.first_mac
    origins = fabric.origins()
    sim = fabric.fake.network(SimConntrack())
    pkt = _packet(src, dst_mac, dst_ip, proto, port)
    sent = sim.send(*fabric.at(src), pkt)
    uplink = model.uplink_of.get(src.network)
    if uplink is not None and hop is not None and hop.vm is None and not hop.gateway:
        out_at = fabric.uplink_port(uplink)
        left = {(d, p): p_ for d, p, p_ in sent.outputs}
        if out_at in left:  # it left by the uplink: the reply comes from the outside there
            forward = _leg(fabric, sent, out_at, origins)
            reply = _reply(left[out_at])
            reply.update(eth_src=UPSTREAM_MAC, eth_dst=uplink_mac(uplink.name), vlan_vid=0)
            return TraceResult(forward, _leg(fabric, sim.send(*out_at, reply), fabric.at(src), origins))
    if vip is not None:  # whichever backend the group chose
        dst = next((vm for vm in (fabric.vm_at(d, p) for d, p in sorted(sent.delivered())) if vm), None)
    if hop is not None and hop.vm is None and hop.gateway:  # a ping to the gateway: answered to the sender
        return TraceResult(_leg(fabric, sent, fabric.at(src), origins), None)
    forward = _leg(fabric, sent, fabric.at(dst) if dst else None, origins)
    if not forward.delivered or dst is None:
        return TraceResult(forward, None)
    reply = _reply(pkt)
    if vip is not None and dst.ip is not None:  # the backend answers from its own address
        reply.update(eth_src=vm_mac(dst), ipv4_src=str(dst.ip.ip))
        if vip.network != src.network:  # to its gateway
            reply.update(eth_dst=gateway_mac(_vlan(model, dst)))
    if hop is not None and hop.reply_mac is not None:
        reply.update(eth_src=vm_mac(dst), eth_dst=hop.reply_mac)
    back = _leg(fabric, sim.send(*fabric.at(dst), reply), fabric.at(src), origins)
    return TraceResult(forward, back)


def _trace_inbound(
    fabric: Fabric, uplink: Uplink, dst_ip: str, proto: Proto, port: int | None, source: str
) -> TraceResult:
    """A packet from ``source`` outside, in through ``uplink`` to ``dst_ip``, and the inside's reply."""
    model = fabric.model
    try:
        target = ip_address(dst_ip)
        ip_address(source)
    except ValueError:
        raise ValueError(f"{dst_ip!r} or {source!r} is not an IP address") from None
    fip = next((f for f in model.floating_ips if f.ip == target), None)
    dst = model.vm_by_name.get(fip.vm) if fip is not None else None
    at = fabric.uplink_port(uplink)
    pkt: Packet = {"eth_src": UPSTREAM_MAC, "eth_dst": uplink_mac(uplink.name), "vlan_vid": 0}
    pkt.update(eth_type=0x0800, ipv4_src=source, ipv4_dst=dst_ip, nw_ttl=TTL)
    if proto == "icmp":
        pkt.update(ip_proto=1, icmpv4_type=8, icmpv4_code=0)
    else:
        pkt.update({"ip_proto": 6 if proto == "tcp" else 17, f"{proto}_src": CLIENT_PORT, f"{proto}_dst": port or 0})
    origins = fabric.origins()
    sim = fabric.fake.network(SimConntrack())
    sent = sim.send(*at, pkt)
    forward = _leg(fabric, sent, fabric.at(dst) if dst else None, origins)
    if not forward.delivered or dst is None:
        return TraceResult(forward, None)
    arrived = next(p_ for d, p, p_ in sent.outputs if (d, p) == fabric.at(dst))
    reply = _reply(arrived)
    reply.update(eth_src=vm_mac(dst), eth_dst=gateway_mac(_vlan(model, dst)), vlan_vid=0)
    return TraceResult(forward, _leg(fabric, sim.send(*fabric.at(dst), reply), at, origins))
