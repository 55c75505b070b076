"""The validated network file as frozen, hashable value objects.

Nothing here reads files or checks input: :mod:`controller.config` builds a
:class:`Model` from YAML and guarantees every invariant stated below. All
collections are tuples sorted by name, so two equal files give equal models
and every consumer iterates in the same order.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

PortRef = int | str
"""An OpenFlow port number, or an interface name resolved when the switch connects."""

DEFAULT_NETWORK = "default"
DEFAULT_VLAN = 1


@dataclass(frozen=True)
class ControllerSettings:
    """The optional ``controller`` section; every field has a default."""

    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9302
    host_timeout: float = 300.0
    lldp_interval: float = 1.0
    max_hosts_per_port: int = 64
    """Hosts learned on one edge port at most; more are ignored (MAC flood guard)."""
    packet_in_rate: int = 1000
    """Packet-ins per second per switch the controller accepts (datapath meter and shim)."""
    stats_interval: float = 10.0
    """Seconds between flow-statistics polls (ACL rule hit counters)."""
    apps: tuple[str, ...] | None = None
    """Apps to enable, by name (built-in or ``vmn.apps`` entry point); None: every built-in app."""
    api_port: int = 9304
    """REST API and web view on ``metrics_host``; 0 disables them."""
    api_token_file: str | None = None
    """A file holding the bearer token of the API's mutating calls (``VMN_API_TOKEN`` wins)."""
    coordination: str | None = None
    """A tooz backend URL (``zookeeper://host:2181``): several instances, one leader; None: one instance."""


@dataclass(frozen=True)
class Switch:
    """An OVS bridge: ``name`` is the YAML key, ``bridge`` the OVS bridge name."""

    name: str
    dpid: int
    bridge: str
    host: str | None = None
    """The hypervisor (``hosts`` key) the bridge runs on; None without ``hosts``."""


@dataclass(frozen=True)
class LinkEnd:
    switch: str
    port: PortRef


@dataclass(frozen=True)
class Link:
    """A declared cable between two switch ports (``a`` sorts before ``b``)."""

    a: LinkEnd
    b: LinkEnd


@dataclass(frozen=True)
class Network:
    """A tenant network: one isolated L2 segment on VLAN ``vlan`` (1-4094)."""

    name: str
    vlan: int
    acl_in: tuple[str, ...] = ()
    acl_out: tuple[str, ...] = ()
    """ACLs on traffic delivered into this network (each of its VMs' ports)."""
    gateway: ipaddress.IPv4Interface | None = None
    """The router's address in this network and the subnet it serves (prefix at most /31)."""
    dhcp: bool = False
    """The controller answers DHCP for the network's VMs that declare ``ip`` and ``mac`` (needs ``gateway``)."""
    dns: tuple[ipaddress.IPv4Address, ...] = ()
    """DNS servers offered by DHCP, in order (only with ``dhcp``)."""
    vni: int | None = None
    """The overlay key as written (``vni``); :attr:`key` is what tunnels carry."""

    @property
    def key(self) -> int:
        """The VNI this network crosses tunnels with: ``vni``, or its VLAN id by default."""
        return self.vlan if self.vni is None else self.vni


@dataclass(frozen=True)
class Vm:
    """A VM attachment. ``mac``/``ip``/``ipv6``, when set, are enforced by port security.

    ``ipv6`` is a global or unique-local unicast address (never link-local,
    multicast or the subnet-router anycast address); unique in its network
    among the VMs' ``ip`` and ``ipv6`` addresses, as ``ip`` is.
    """

    name: str
    switch: str
    port: PortRef
    network: str
    ip: ipaddress.IPv4Interface | None = None
    mac: str | None = None
    """Lower-case ``aa:bb:cc:dd:ee:ff``."""
    acl_in: tuple[str, ...] = ()
    ipv6: ipaddress.IPv6Interface | None = None
    acl_out: tuple[str, ...] = ()
    """ACLs on traffic delivered to this VM."""


@dataclass(frozen=True)
class AclMatch:
    """Match fields of one ACL rule, normalised.

    Invariants (guaranteed by the loader): ``eth_type`` is 0x86DD whenever an
    IPv6 field is set or ``ip_proto`` is 58 (ICMPv6), else 0x0800 whenever
    ``ip_proto`` or an IPv4 field is set; IPv4 and IPv6 fields never mix;
    ``tcp_*`` only with ``ip_proto`` 6, ``udp_*`` only with 17, ``icmp_type``
    only with 1 (IPv4), ``icmpv6_type`` only with 58 (IPv6); CIDRs have no
    host bits.
    """

    eth_type: int | None = None
    eth_src: str | None = None
    eth_dst: str | None = None
    ip_proto: int | None = None
    ipv4_src: ipaddress.IPv4Network | None = None
    ipv4_dst: ipaddress.IPv4Network | None = None
    tcp_src: int | None = None
    tcp_dst: int | None = None
    udp_src: int | None = None
    udp_dst: int | None = None
    icmp_type: int | None = None
    ipv6_src: ipaddress.IPv6Network | None = None
    ipv6_dst: ipaddress.IPv6Network | None = None
    icmpv6_type: int | None = None


@dataclass(frozen=True)
class AclRule:
    match: AclMatch
    action: Literal["allow", "deny"]
    stateful: bool = False


@dataclass(frozen=True)
class Acl:
    """An ordered list of rules; first match wins, no match denies."""

    name: str
    rules: tuple[AclRule, ...]


@dataclass(frozen=True)
class Backend:
    """A load-balancer backend; ``vm`` is set when it was named by VM."""

    ip: ipaddress.IPv4Address
    vm: str | None = None
    weight: int = 1


@dataclass(frozen=True)
class HealthCheck:
    type: Literal["tcp", "icmp"] = "tcp"
    interval: float = 1.0
    timeout: float = 0.5
    fall: int = 3
    rise: int = 2


@dataclass(frozen=True)
class LoadBalancer:
    name: str
    vip: ipaddress.IPv4Address
    network: str
    protocol: Literal["tcp", "udp"]
    port: int
    backends: tuple[Backend, ...]
    health_check: HealthCheck = field(default_factory=HealthCheck)


@dataclass(frozen=True)
class Mirror:
    """A tap port receiving copies of some VMs' traffic.

    ``direction`` is Neutron Tap-as-a-Service's: ``out`` what the VMs send,
    ``in`` what is delivered to them, ``both`` both.
    """

    name: str
    switch: str
    port: PortRef
    vms: tuple[str, ...]
    direction: Literal["in", "out", "both"] = "both"


@dataclass(frozen=True)
class StaticRoute:
    """A static route of a router: ``prefix`` via the VM whose ip is ``next_hop``."""

    prefix: ipaddress.IPv4Network
    next_hop: ipaddress.IPv4Address


@dataclass(frozen=True)
class Router:
    """Routes IPv4 between ``networks`` (names, sorted), each with a gateway, their subnets disjoint.

    A network is on at most one router; ``routes`` are sorted by prefix and
    each next hop is the ip of a VM of one of ``networks``.
    """

    name: str
    networks: tuple[str, ...]
    routes: tuple[StaticRoute, ...] = ()
    uplink: str | None = None
    """The uplink its default route leaves by (source NAT to the uplink's address), if any."""


@dataclass(frozen=True)
class Uplink:
    """A port to a network VMN does not manage (the outside), as an OVN gateway router's external port.

    ``ip`` is the router's outside address and subnet (the source NAT
    address, answered by ARP on the port); ``gateway`` the upstream next hop
    in that subnet, whose MAC the controller finds by ARP.
    """

    name: str
    switch: str
    port: PortRef
    ip: ipaddress.IPv4Interface
    gateway: ipaddress.IPv4Address


@dataclass(frozen=True)
class FloatingIp:
    """1:1 NAT of ``ip`` (in the uplink's subnet) to VM ``vm``'s own address (OVN ``dnat_and_snat``)."""

    ip: ipaddress.IPv4Address
    vm: str


@dataclass(frozen=True)
class Hypervisor:
    """A host (``hosts`` entry): its underlay address and the switch that ends its tunnels."""

    name: str
    tunnel_ip: ipaddress.IPv4Address
    switch: str


@dataclass(frozen=True)
class Overlay:
    """How networks cross between hosts: tunnel ``type`` and the underlay ``mtu`` (bytes, IP MTU)."""

    type: Literal["vxlan", "geneve"] = "vxlan"
    mtu: int = 1500


@dataclass(frozen=True)
class Model:
    """A whole validated network file.

    ``zero_config`` is the model used without ``VMN_CONFIG``: any switch may
    connect and every port of it is an edge port of the one default network.
    """

    controller: ControllerSettings = field(default_factory=ControllerSettings)
    switches: tuple[Switch, ...] = ()
    links: tuple[Link, ...] = ()
    networks: tuple[Network, ...] = ()
    vms: tuple[Vm, ...] = ()
    acls: tuple[Acl, ...] = ()
    load_balancers: tuple[LoadBalancer, ...] = ()
    mirrors: tuple[Mirror, ...] = ()
    zero_config: bool = False
    routers: tuple[Router, ...] = ()
    hosts: tuple[Hypervisor, ...] = ()
    overlay: Overlay | None = None
    """Set whenever ``hosts`` is (the defaults when the file has no ``overlay``)."""
    uplinks: tuple[Uplink, ...] = ()
    floating_ips: tuple[FloatingIp, ...] = ()

    @staticmethod
    def zero(settings: ControllerSettings | None = None) -> Model:
        """The zero-config model: one default network on VLAN 1, no declared switches."""
        return Model(
            controller=settings or ControllerSettings(),
            networks=(Network(DEFAULT_NETWORK, DEFAULT_VLAN),),
            zero_config=True,
        )

    @cached_property
    def switch_by_name(self) -> Mapping[str, Switch]:
        return {s.name: s for s in self.switches}

    @cached_property
    def switch_by_dpid(self) -> Mapping[int, Switch]:
        return {s.dpid: s for s in self.switches}

    @cached_property
    def network_by_name(self) -> Mapping[str, Network]:
        return {n.name: n for n in self.networks}

    @cached_property
    def network_by_vlan(self) -> Mapping[int, Network]:
        return {n.vlan: n for n in self.networks}

    @cached_property
    def vm_by_name(self) -> Mapping[str, Vm]:
        return {v.name: v for v in self.vms}

    @cached_property
    def acl_by_name(self) -> Mapping[str, Acl]:
        return {a.name: a for a in self.acls}

    @cached_property
    def router_of(self) -> Mapping[str, Router]:
        """Network name -> the router it is on (networks on no router are absent)."""
        return {net: r for r in self.routers for net in r.networks}

    @cached_property
    def uplink_by_name(self) -> Mapping[str, Uplink]:
        return {u.name: u for u in self.uplinks}

    @cached_property
    def uplink_of(self) -> Mapping[str, Uplink]:
        """Network name -> the uplink of its router (networks whose router has none are absent)."""
        return {
            net: self.uplink_by_name[r.uplink]
            for r in self.routers
            if r.uplink is not None and r.uplink in self.uplink_by_name
            for net in r.networks
        }

    @cached_property
    def floating_ip_of(self) -> Mapping[str, FloatingIp]:
        """VM name -> its floating IP (VMs without one are absent)."""
        return {f.vm: f for f in self.floating_ips}

    @cached_property
    def host_by_name(self) -> Mapping[str, Hypervisor]:
        return {h.name: h for h in self.hosts}

    def vms_on(self, switch: str) -> tuple[Vm, ...]:
        """VMs attached to ``switch``, in name order."""
        return tuple(v for v in self.vms if v.switch == switch)

    def knows_dpid(self, dpid: int) -> bool:
        """Whether a switch with ``dpid`` may be programmed under this model."""
        return self.zero_config or dpid in self.switch_by_dpid
