"""Validation of the topology sections of a network file.

``switches``, ``links``, ``networks`` and ``vms``: called by
:func:`controller.config.parse_model`. Like every check, these functions
record errors in the given :class:`~controller.config.base.Ctx` and return
only the objects that validated. Standard library only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from controller.config import routing
from controller.config.base import (
    Ctx,
    Known,
    describe,
    ifname,
    int_in,
    integer,
    ipv4_interface,
    mapping,
    optional,
    port_key,
    port_ref,
    reference,
    references,
    required,
    sequence,
    unicast_mac,
)
from controller.config.ipv6 import ipv6_interface
from controller.config.model import Link, LinkEnd, Network, PortRef, Switch, Vm
from controller.config.scalars import NUMBER_LIKE, PlainBool, PlainNumber

_DPID_RE = re.compile(r"^(0[xX])?[0-9a-fA-F]+$")
_DPID_OVS = re.compile(r"[0-9a-fA-F]{16}\Z")
_DPID_ZERO = re.compile(r"0[0-9_][0-9a-fA-F_]*\Z")
_DPID_MAX = 2**64 - 1
_DPID_EXPECTED = "an integer or a hex string like '0x1'"

PortSlot = tuple[str, PortRef]
"""A (switch, port) pair that at most one VM or link end may occupy."""


def _dpid(ctx: Ctx, value: object) -> int | None:
    """A datapath id in 1..2**64-1.

    An integer (``16``, ``0x10``); 16 hex digits, plain or quoted, as
    ``ovs-vsctl`` prints it (``0000000000000010`` is 0x10); or a quoted hex
    string with or without ``0x`` (``"10"`` is 0x10). A plain number with a
    leading zero and other than 16 digits is an error.
    """
    if isinstance(value, PlainNumber):
        dpid = _plain_dpid(ctx, value)
        if dpid is None:
            return None
    elif isinstance(value, str) and not isinstance(value, PlainBool) and _DPID_RE.match(value):
        dpid = int(value, 16)
    elif isinstance(value, int) and not isinstance(value, bool):
        dpid = value
    else:
        ctx.error(f"expected {_DPID_EXPECTED}, got {describe(value)}")
        return None
    if not 1 <= dpid <= _DPID_MAX:
        ctx.error(f"must be between 0x1 and {_DPID_MAX:#x}, got {dpid:#x}")
        return None
    return dpid


def _plain_dpid(ctx: Ctx, text: PlainNumber) -> int | None:
    if _DPID_OVS.match(text):
        return int(text, 16)
    if _DPID_ZERO.match(text):
        ctx.error(
            f"{text} has a leading zero and {len(text)} digits: write the dpid as "
            f"16 hex digits (as ovs-vsctl prints it) or as 0x{text.lstrip('0_') or '0'}"
        )
        return None
    return integer(ctx, text, _DPID_EXPECTED)


def parse_switches(ctx: Ctx, raw: dict[str, object] | None, hosts: Mapping[str, str] | None = None) -> list[Switch]:
    """The valid switches of ``raw`` (None: section malformed, already reported).

    Dpids must be unique, and bridge names (default: the switch name) on
    one host: ``hosts`` maps a switch to its host (absent: one host).
    """
    if raw is None:
        return []
    if not raw:
        ctx.error("must declare at least one switch")
    out: list[Switch] = []
    by_dpid: dict[int, str] = {}
    by_bridge: dict[tuple[str | None, str], str] = {}
    for name, value in raw.items():
        c = ctx.at(name)
        mark = c.mark()
        m = mapping(c, value, required=("dpid",), optional=("bridge",))
        if m is None:
            continue
        dpid = required(c, m, "dpid", _dpid)
        bridge = optional(c, m, "bridge", ifname, name)
        if dpid is not None and dpid in by_dpid:
            c.at("dpid").error(f"{dpid:#x} is already used by switch {by_dpid[dpid]!r}")
        elif dpid is not None:
            by_dpid[dpid] = name
        scope = (hosts or {}).get(name), bridge
        if scope in by_bridge:
            where = c.at("bridge") if "bridge" in m else c
            where.error(f"bridge {bridge!r} is already used by switch {by_bridge[scope]!r}")
        else:
            by_bridge[scope] = name
        if dpid is not None and not c.failed_since(mark):
            out.append(Switch(name=name, dpid=dpid, bridge=bridge))
    return out


def _link_end(ctx: Ctx, value: object, known: Known) -> LinkEnd | None:
    """``"switch:port"`` -> LinkEnd; a port that looks like a number is read as one (``s1:0x10``)."""
    switch_name, _, port_text = value.rpartition(":") if isinstance(value, str) else ("", "", "")
    if not switch_name or not port_text:
        ctx.error(f"expected 'switch:port', got {describe(value)}")
        return None
    switch = reference(known.switches, "switch")(ctx, switch_name)
    port = port_ref(ctx, PlainNumber(port_text) if NUMBER_LIKE.match(port_text) else port_text)
    if switch is None or port is None:
        return None
    return LinkEnd(switch=switch, port=port)


def _end_key(end: LinkEnd) -> tuple[str, tuple[int, int, str]]:
    return (end.switch, port_key(end.port))


def link_key(link: Link) -> tuple[object, ...]:
    """Sort key for links: by switch, then numbered ports before named ones."""
    return (_end_key(link.a), _end_key(link.b))


def _show_end(end: LinkEnd) -> str:
    return f"{end.switch}:{end.port}"


def parse_links(ctx: Ctx, value: object, known: Known) -> tuple[list[Link], dict[PortSlot, str]]:
    """The declared links, each ordered ``a <= b``, and which link holds each port."""
    items = sequence(ctx, value)
    out: list[Link] = []
    used: dict[PortSlot, str] = {}
    for i, item in enumerate(items or []):
        c = ctx.at(i)
        pair = sequence(c, item)
        if pair is None:
            continue
        if len(pair) != 2:
            c.error(f"expected two ends [switch:port, switch:port], got {len(pair)}")
            continue
        a, b = (_link_end(c.at(j), end, known) for j, end in enumerate(pair))
        if a is None or b is None:
            continue
        if a.switch == b.switch:
            c.error(f"links switch {a.switch!r} to itself")
            continue
        taken = False
        for j, end in enumerate((a, b)):
            slot = (end.switch, end.port)
            if slot in used:
                c.at(j).error(f"port {_show_end(end)} is already used by {used[slot]}")
                taken = True
            else:
                used[slot] = c.path
        if not taken:
            a, b = sorted((a, b), key=_end_key)
            out.append(Link(a=a, b=b))
    return out, used


def parse_networks(ctx: Ctx, raw: dict[str, object], known: Known) -> list[Network]:
    """The valid networks; VLAN ids unique in 1..4094, ``acl_in`` and ``acl_out`` name known ACLs.

    ``gateway``, ``dhcp`` and ``dns`` are checked by :mod:`controller.config.routing`.
    """
    out: list[Network] = []
    by_vlan: dict[int, str] = {}
    for name, value in raw.items():
        c = ctx.at(name)
        mark = c.mark()
        m = mapping(c, value, required=("vlan",), optional=("acl_in", "acl_out", *routing.NETWORK_KEYS))
        if m is None:
            continue
        vlan = required(c, m, "vlan", int_in(1, 4094))
        acl_in: tuple[str, ...] = optional(c, m, "acl_in", references(known.acls, "ACL"), ())
        acl_out: tuple[str, ...] = optional(c, m, "acl_out", references(known.acls, "ACL"), ())
        gateway, dhcp, dns = routing.network_addressing(c, m)
        if vlan is not None and vlan in by_vlan:
            c.at("vlan").error(f"VLAN {vlan} is already used by network {by_vlan[vlan]!r}")
        elif vlan is not None:
            by_vlan[vlan] = name
        if vlan is not None and not c.failed_since(mark):
            out.append(
                Network(name=name, vlan=vlan, acl_in=acl_in, acl_out=acl_out, gateway=gateway, dhcp=dhcp, dns=dns)
            )
    return out


@dataclass
class _Claims:
    """Who already holds each switch port, MAC and (network, IP) while VMs are checked."""

    ports: dict[PortSlot, str]
    macs: dict[str, str] = field(default_factory=dict)
    ips: dict[tuple[str, object], str] = field(default_factory=dict)


def parse_vms(ctx: Ctx, raw: dict[str, object], known: Known, link_ports: dict[PortSlot, str]) -> list[Vm]:
    """The valid VMs, in file order.

    A VM may not take a port held by a link (``link_ports``) or another VM,
    nor reuse another VM's MAC, nor another VM's IP (``ip`` or ``ipv6``) in
    the same network.
    """
    claims = _Claims(ports=dict(link_ports))
    out: list[Vm] = []
    for name, value in raw.items():
        vm = _vm(ctx.at(name), name, value, known, claims)
        if vm is not None:
            out.append(vm)
    return out


def _vm(ctx: Ctx, name: str, value: object, known: Known, claims: _Claims) -> Vm | None:
    """Check one VM and its claims on a port, a MAC and its IPs; record the claims."""
    mark = ctx.mark()
    m = mapping(
        ctx,
        value,
        required=("switch", "port", "network"),
        optional=("ip", "ipv6", "mac", "acl_in", "acl_out"),
    )
    if m is None:
        return None
    switch = required(ctx, m, "switch", reference(known.switches, "switch"))
    port = port_ref(ctx.at("port"), m["port"]) if "port" in m else None
    network = required(ctx, m, "network", reference(known.networks, "network"))
    ip = optional(ctx, m, "ip", ipv4_interface, None)
    ipv6 = optional(ctx, m, "ipv6", ipv6_interface, None)
    address = optional(ctx, m, "mac", unicast_mac, None)
    acl_in: tuple[str, ...] = optional(ctx, m, "acl_in", references(known.acls, "ACL"), ())
    acl_out: tuple[str, ...] = optional(ctx, m, "acl_out", references(known.acls, "ACL"), ())
    if switch is not None and port is not None:
        holder = claims.ports.setdefault((switch, port), f"VM {name!r}")
        if holder != f"VM {name!r}":
            ctx.at("port").error(f"port {port} on switch {switch!r} is already used by {holder}")
    if address is not None:
        holder = claims.macs.setdefault(address, name)
        if holder != name:
            ctx.at("mac").error(f"{address} is already used by VM {holder!r}")
    for key, iface in (("ip", ip), ("ipv6", ipv6)):
        if iface is not None and network is not None:
            holder = claims.ips.setdefault((network, iface.ip), name)
            if holder != name:
                ctx.at(key).error(f"{iface.ip} is already used by VM {holder!r} in network {network!r}")
    if switch is None or port is None or network is None or ctx.failed_since(mark):
        return None
    return Vm(
        name=name,
        switch=switch,
        port=port,
        network=network,
        ip=ip,
        mac=address,
        acl_in=acl_in,
        ipv6=ipv6,
        acl_out=acl_out,
    )
