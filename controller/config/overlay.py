"""Validation of the overlay keys: ``hosts``, ``overlay``, ``switches.X.host``, ``networks.X.vni``.

Hypervisors (``hosts``) are joined by tunnels between their ``tunnel_ip``
addresses; the switch a host names ends its tunnels; every other switch
says which host it runs on (``host``); a network crosses tunnels keyed by
its VNI (``vni``, default its VLAN id). The checks, each reported at its
path:

- two hosts with one ``tunnel_ip``, or one tunnel switch;
- a switch naming an unknown host, or a host's tunnel switch declaring
  another host; a switch on no host while ``hosts`` is declared;
- two networks with one VNI (explicit or defaulted to the VLAN id);
- ``overlay`` without ``hosts``.

The ``host`` and ``vni`` keys are taken out of the raw switch and network
mappings (:func:`split`) before :mod:`controller.config.topology` checks
the rest, and put back into the validated objects by :func:`apply`.
Standard library only.

VNIs are 24 bits in VXLAN (RFC 7348, section 5) and Geneve (RFC 8926,
section 3.4).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Literal, cast

from controller.config.base import (
    Ctx,
    int_in,
    ipv4_address,
    mapping,
    named,
    one_of,
    optional,
    reference,
    required,
)
from controller.config.model import Hypervisor, Network, Overlay, Switch

MAX_VNI = 2**24 - 1
"""The largest VXLAN (RFC 7348) and Geneve (RFC 8926) network identifier."""
MIN_UNDERLAY_MTU = 576
"""The smallest underlay MTU accepted (the IPv4 minimum datagram every host must take, RFC 791)."""
MIN_VM_MTU = 1280
"""``vmn check`` warns when the VM MTU the overlay leaves is below this (the IPv6 minimum, RFC 8200)."""
TUNNEL_OVERHEAD: Mapping[str, int] = {"vxlan": 50 + 4, "geneve": 50 + 4}
"""Bytes the underlay's IP MTU must hold beyond the VM's IP packet, per tunnel type.

Outer IPv4 (20) + UDP (8) + VXLAN (8, RFC 7348) or Geneve without options
(8, RFC 8926) + the inner Ethernet header (14) = 50, plus the network's
802.1Q tag (4) that VMN keeps inside the tunnel (it carries the pipeline's
priority marks, see :mod:`controller.fabric.crossing`).
"""


@dataclass(frozen=True)
class Split:
    """The raw ``host`` of each switch and ``vni`` of each network, and the sections without them."""

    switches: dict[str, object] | None
    networks: dict[str, object] | None
    switch_hosts: Mapping[str, object]
    vnis: Mapping[str, object]


def _strip(section: dict[str, object] | None, key: str) -> tuple[dict[str, object] | None, dict[str, object]]:
    if section is None:
        return None, {}
    out: dict[str, object] = {}
    taken: dict[str, object] = {}
    for name, value in section.items():
        if isinstance(value, dict) and key in value:
            taken[name] = value[key]
            value = {k: v for k, v in value.items() if k != key}
        out[name] = value
    return out, taken


def split(switches: dict[str, object] | None, networks: dict[str, object] | None) -> Split:
    """Take ``host`` out of the raw switches and ``vni`` out of the raw networks."""
    sw, hosts = _strip(switches, "host")
    nets, vnis = _strip(networks, "vni")
    return Split(sw, nets, hosts, vnis)


def bridge_scopes(raw_hosts: object, parts: Split) -> dict[str, str]:
    """Switch name -> the host its bridge is on, as far as the raw file says (for bridge-name clashes).

    Bridge names need only be unique per host (every hypervisor may have a ``br-int``).
    """
    scope: dict[str, str] = {}
    if isinstance(raw_hosts, dict):
        for host, value in raw_hosts.items():
            if isinstance(value, dict) and isinstance(value.get("switch"), str):
                scope.setdefault(str(value["switch"]), str(host))
    for name, host in parts.switch_hosts.items():
        if isinstance(host, str):
            scope.setdefault(name, str(host))
    return scope


def parse_hosts(ctx: Ctx, value: object, switches: frozenset[str] | None) -> list[Hypervisor]:
    """The valid hosts of ``hosts``; tunnel addresses and tunnel switches unique."""
    raw = named(ctx, value)
    out: list[Hypervisor] = []
    by_ip: dict[ipaddress.IPv4Address, str] = {}
    by_switch: dict[str, str] = {}
    for name, item in (raw or {}).items():
        c = ctx.at(name)
        mark = c.mark()
        m = mapping(c, item, required=("tunnel_ip", "switch"))
        if m is None:
            continue
        ip = required(c, m, "tunnel_ip", ipv4_address)
        switch = required(c, m, "switch", reference(switches, "switch"))
        if ip is not None and ip in by_ip:
            c.at("tunnel_ip").error(f"{ip} is already used by host {by_ip[ip]!r}")
        elif ip is not None:
            by_ip[ip] = name
        if switch is not None and switch in by_switch:
            c.at("switch").error(f"switch {switch!r} already ends the tunnels of host {by_switch[switch]!r}")
        elif switch is not None:
            by_switch[switch] = name
        if ip is not None and switch is not None and not c.failed_since(mark):
            out.append(Hypervisor(name, ip, switch))
    return out


def parse_overlay(ctx: Ctx, value: object) -> Overlay | None:
    m = mapping(ctx, value, optional=("type", "mtu"))
    if m is None:
        return None
    d = Overlay()
    kind: str = optional(ctx, m, "type", one_of("vxlan", "geneve"), str(d.type))
    mtu = optional(ctx, m, "mtu", int_in(MIN_UNDERLAY_MTU, 65535), d.mtu)
    return Overlay(cast(Literal["vxlan", "geneve"], kind), mtu)


def _switch_hosts(
    ctx: Ctx, switches: list[Switch], raw: Mapping[str, object], hosts: list[Hypervisor], declared: bool
) -> list[Switch]:
    """``switches`` with their host set; errors for unknown hosts and misplaced tunnel switches."""
    names = frozenset(h.name for h in hosts) if declared else frozenset()
    ends = {h.switch: h.name for h in hosts}
    out: list[Switch] = []
    for switch in switches:
        c = ctx.at(switch.name).at("host")
        host = reference(names, "host")(c, raw[switch.name]) if switch.name in raw else None
        tunnel_host = ends.get(switch.name)
        if host is not None and tunnel_host is not None and host != tunnel_host:
            c.error(f"switch {switch.name!r} ends the tunnels of host {tunnel_host!r} (hosts.{tunnel_host}.switch)")
        elif host is None and tunnel_host is None and declared and switch.name not in raw:
            c.error("required when hosts are declared (or name this switch as a host's switch)")
        out.append(replace(switch, host=host or tunnel_host))
    return out


def _vnis(ctx: Ctx, networks: list[Network], raw: Mapping[str, object]) -> list[Network]:
    """``networks`` with their ``vni``; errors for VNIs out of range or used twice."""
    out: list[Network] = []
    for net in networks:
        vni = int_in(1, MAX_VNI)(ctx.at(net.name).at("vni"), raw[net.name]) if net.name in raw else None
        out.append(replace(net, vni=vni))
    by_key: dict[int, str] = {}
    for net in sorted(out, key=lambda n: (n.vni is not None, n.name)):  # defaulted keys first
        holder = by_key.setdefault(net.key, net.name)
        if holder != net.name:
            where = ctx.at(net.name).at("vni") if net.vni is not None else ctx.at(net.name)
            why = "" if net.vni is not None else " (the default: its VLAN id; give it a vni)"
            where.error(f"VNI {net.key} is already used by network {holder!r}{why}")
    return out


@dataclass(frozen=True)
class Placed:
    """The overlay part of a model: hosts, the overlay, and switches and networks with theirs."""

    hosts: tuple[Hypervisor, ...]
    overlay: Overlay | None
    switches: list[Switch]
    networks: list[Network]


def apply(ctx: Ctx, top: Mapping[str, object], parts: Split, switches: list[Switch], networks: list[Network]) -> Placed:
    """Check ``hosts`` and ``overlay`` of the file ``top`` and place ``switches`` and ``networks`` on them."""
    declared = "hosts" in top
    known = frozenset(parts.switches) if parts.switches is not None else None
    hosts = parse_hosts(ctx.at("hosts"), top["hosts"], known) if declared else []
    overlay: Overlay | None = None
    if "overlay" in top:
        overlay = parse_overlay(ctx.at("overlay"), top["overlay"])
        if not declared:
            ctx.at("overlay").error("requires hosts (the hypervisors the overlay joins)")
    if declared and overlay is None:
        overlay = Overlay()
    placed = _switch_hosts(ctx.at("switches"), switches, parts.switch_hosts, hosts, declared)
    return Placed(
        tuple(sorted(hosts, key=lambda h: h.name)),
        overlay,
        placed,
        _vnis(ctx.at("networks"), networks, parts.vnis),
    )


def vm_mtu(overlay: Overlay) -> int:
    """The MTU (bytes, IP) a VM may use across ``overlay``: the underlay MTU less :data:`TUNNEL_OVERHEAD`.

    What DHCP offers VMs (option 26, RFC 2132) and what ``vmn check`` warns
    about below :data:`MIN_VM_MTU`.

    >>> vm_mtu(Overlay("vxlan", 1500)), vm_mtu(Overlay("geneve", 1600))
    (1446, 1546)
    """
    return overlay.mtu - TUNNEL_OVERHEAD[overlay.type]


def warnings_of(overlay: Overlay | None) -> list[str]:
    """What ``vmn check`` prints as warnings (the file stays valid) about ``overlay``."""
    if overlay is None:
        return []
    mtu = vm_mtu(overlay)
    if mtu >= MIN_VM_MTU:
        return []
    return [
        f"overlay.mtu: warning: {overlay.mtu} leaves VMs an MTU of {mtu} "
        f"({overlay.type} takes {TUNNEL_OVERHEAD[overlay.type]}), below {MIN_VM_MTU} (IPv6 needs {MIN_VM_MTU})"
    ]
