"""The DHCP server app: table ``dhcp``, answers from the controller.

In a network with ``dhcp: true``, every switch with edge ports of it copies
the DHCP DISCOVERs and REQUESTs its VMs send (UDP 68 -> 67, after port
security and the sender's ACLs) to the controller, metered like every
packet-in, and consumes them (no other host sees them). The controller
answers as the network's gateway (its address is the server identifier,
its MAC the source), with a packet-out straight to the client's port:

- a DISCOVER from the declared ``mac`` of a VM with an ``ip``, on that VM's
  port, gets an OFFER of the VM's address, the gateway's subnet mask, the
  gateway as router, the network's ``dns``, a lease of :data:`LEASE_TIME`
  seconds (renewal at half, rebinding at seven eighths) and the interface
  MTU (:data:`MTU`);
- a REQUEST for that address (selecting this server, or renewing) gets an
  ACK with the same options; a REQUEST for another address gets a NAK; a
  REQUEST that selects another server is ignored;
- anything from an undeclared MAC, or from a port other than the VM's, gets
  nothing.

Frames: :mod:`apps.dhcp.messages`.
"""

from __future__ import annotations

import logging
from ipaddress import IPv4Interface

from apps.base import NOTHING, AppContext, PacketIn, Reaction, Segments, per_switch
from apps.dhcp.messages import ACK, DISCOVER, MESSAGE_NAMES, NAK, OFFER, Lease, Request, build_reply, parse_request
from controller.config.model import Model, Network, Overlay, Vm
from controller.config.overlay import vm_mtu
from controller.config.routing import gateway_mac
from controller.fabric.view import FabricView
from controller.flows.pipeline import APP_DHCP, METER_PACKET_IN, T_DHCP
from controller.flows.rules import OFPP_CONTROLLER, OFPVID_PRESENT, Output, Rule, make_match
from controller.packets import ETH_IPV4, IP_PROTO_UDP, UDP_BOOTPC, UDP_BOOTPS

LOG = logging.getLogger("vmn.dhcp")
LEASE_TIME = 3600
"""Seconds a lease lasts (the address never changes: it is the file's)."""
MTU = 1500
"""Interface MTU offered (option 26) without an overlay: Ethernet's. With one, the underlay MTU less the
encapsulation (:func:`controller.config.overlay.vm_mtu`)."""
PRIO_TRAP = 100
OFPCML_NO_BUFFER = 0xFFFF
"""``max_len`` that sends the whole packet to the controller."""


def dhcp_rules(view: FabricView, dpid: int, following: int) -> list[Rule]:
    """The dhcp table of one switch: trap the requests of its ``dhcp: true`` networks' ports."""
    rules = [Rule(APP_DHCP, T_DHCP, 0, goto=following)]
    vlans = sorted({net.vlan for net, _ in view.edge_ports(dpid).values() if net.dhcp})
    for vlan in vlans:
        match = make_match(
            vlan_vid=OFPVID_PRESENT | vlan,
            eth_type=ETH_IPV4,
            ip_proto=IP_PROTO_UDP,
            udp_src=UDP_BOOTPC,
            udp_dst=UDP_BOOTPS,
        )
        trap = (Output(OFPP_CONTROLLER, OFPCML_NO_BUFFER),)
        rules.append(Rule(APP_DHCP, T_DHCP, PRIO_TRAP, match, trap, meter=METER_PACKET_IN))
    return rules


def lease_of(net: Network, vm: Vm, overlay: Overlay | None = None) -> Lease:
    """What ``vm`` of ``net`` is offered (both validated: ``net`` has a gateway, ``vm`` an ip in it).

    With an ``overlay`` the MTU offered leaves room for the tunnel encapsulation.
    """
    assert net.gateway is not None and vm.ip is not None
    return Lease(
        address=IPv4Interface((vm.ip.ip, net.gateway.network.prefixlen)),
        server=net.gateway.ip,
        server_mac=gateway_mac(net.vlan),
        router=net.gateway.ip,
        dns=net.dns,
        lease_time=LEASE_TIME,
        mtu=MTU if overlay is None else vm_mtu(overlay),
    )


def answer(request: Request, net: Network, vm: Vm) -> int | None:
    """The message type that answers ``request`` from ``vm`` (OFFER, ACK, NAK), or None for silence."""
    assert vm.ip is not None and net.gateway is not None
    if request.kind == DISCOVER:
        return OFFER
    if request.server is not None and request.server != net.gateway.ip:
        return None  # the client chose another server's offer
    wanted = request.requested or request.ciaddr
    return ACK if wanted == vm.ip.ip else NAK


class DhcpServer:
    """Traps DHCP requests of ``dhcp: true`` networks and answers them for their declared VMs."""

    name = "dhcp"
    app_id = APP_DHCP
    static_compile = True
    """``compile`` reads only the view: the core may reuse its rules for an equal view (:mod:`controller.precompile`)."""

    def __init__(self, ctx: AppContext) -> None:
        following = ctx.pipeline.next_table(T_DHCP)
        assert following is not None, "the pipeline has no table after dhcp"
        self.following = following
        self.metrics = ctx.metrics

    def compile(self, view: FabricView) -> Segments:
        return per_switch("dhcp", view, lambda v, d: dhcp_rules(v, d, self.following))

    def packet_in(self, now: float, view: FabricView, event: PacketIn) -> Reaction:
        """A trapped DISCOVER or REQUEST: answer it if it comes from a declared VM on its own port."""
        request = parse_request(event.data)
        if request is None or request.vlan is None:
            return NOTHING
        net = view.model.network_by_vlan.get(request.vlan)
        if net is None or not net.dhcp or net.gateway is None:
            return NOTHING
        vm = self._client(view.model, net, request.client_mac)
        edge = view.edge_ports(event.dpid).get(event.in_port)
        if vm is None or edge is None or edge[1] is not vm:
            LOG.info(
                "dhcp: no lease for %s in %s (not a declared VM with an ip on that port)", request.client_mac, net.name
            )
            return NOTHING
        kind = answer(request, net, vm)
        if kind is None:
            return NOTHING
        assert vm.ip is not None
        LOG.info("dhcp: %s %s to %s (%s) in %s", MESSAGE_NAMES[kind], vm.ip.ip, vm.name, vm.mac, net.name)
        self.metrics.dhcp_leases.labels(network=net.name, message=MESSAGE_NAMES[kind]).inc()
        frame = build_reply(kind, request, lease_of(net, vm, view.model.overlay))
        return Reaction(frames=((event.dpid, event.in_port, frame),))

    @staticmethod
    def _client(model: Model, net: Network, mac: str) -> Vm | None:
        return next((v for v in model.vms if v.network == net.name and v.mac == mac and v.ip is not None), None)
