"""Validation of ``uplinks``, ``routers.X.uplink`` and ``floating_ips``: the way out of the VM networks.

An uplink is a port to a network VMN does not manage, with the router's
outside address (``ip``, with its subnet's prefix) and the upstream next hop
(``gateway``). A floating IP maps one outside address 1:1 to a VM. The
checks:

- an uplink's port is no VM's, link's or mirror's port, nor another uplink's;
  its ``ip`` is a host address of its subnet (prefix at most /30), its
  ``gateway`` another host address of that subnet;
- a router names at most one uplink, and an uplink serves one router; the
  uplink's subnet overlaps none of the router's networks' subnets;
- a floating IP lies in the subnet of the uplink of the VM's router, is not
  that uplink's ``ip`` or ``gateway`` (nor any uplink's address), nor the
  subnet's network or broadcast address; a VM has at most one, and must
  declare an ``ip``. (A floating IP listed twice is a duplicate YAML key,
  rejected with its line when the file is read.)

Every uplink also gets a 12-bit number from a digest of its name, stable
across reloads and edits of other uplinks: its MAC (in the gateways' reserved
range) and its conntrack zone derive from it, so two uplinks whose numbers
collide are rejected (rename one). Standard library only.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Mapping, Sequence

from controller.config.base import Ctx, Known, ipv4_address, mapping, port_ref, reference, required
from controller.config.model import FloatingIp, Mirror, PortRef, Router, Uplink, Vm
from controller.config.routing import GATEWAY_MAC_PREFIX, host_interface

PortSlot = tuple[str, PortRef]


def uplink_number(name: str) -> int:
    """A 12-bit number (0-4095) for uplink ``name``: the first 12 bits of its name's SHA-256."""
    return int(hashlib.sha256(name.encode()).hexdigest()[:3], 16)


def uplink_mac(name: str) -> str:
    """The router's MAC on uplink ``name``: :data:`GATEWAY_MAC_PREFIX`, then ``0x1000`` + its number.

    In the gateways' range (reserved from VMs), never a network's gateway MAC
    (those end in a VLAN id below 0x1000).

    >>> uplink_mac("wan")[:14]
    '0a:56:4d:4e:1'
    """
    n = 0x1000 | uplink_number(name)
    return f"{GATEWAY_MAC_PREFIX}:{n >> 8:02x}:{n & 0xFF:02x}"


def parse_uplinks(
    ctx: Ctx,
    raw: Mapping[str, object],
    known: Known,
    vms: Sequence[Vm],
    link_ports: Mapping[PortSlot, str],
    mirrors: Sequence[Mirror],
) -> list[Uplink]:
    """The valid uplinks of the ``uplinks`` section ``raw`` (name -> mapping), in file order."""
    taken: dict[PortSlot, str] = dict(link_ports)
    taken.update({(vm.switch, vm.port): f"VM {vm.name!r}" for vm in vms})
    taken.update({(m.switch, m.port): f"mirror {m.name!r}" for m in mirrors})
    numbers: dict[int, str] = {}
    out = []
    for name, value in raw.items():
        c = ctx.at(name)
        mark = c.mark()
        m = mapping(c, value, required=("switch", "port", "ip", "gateway"))
        if m is None:
            continue
        switch = required(c, m, "switch", reference(known.switches, "switch"))
        port = port_ref(c.at("port"), m["port"]) if "port" in m else None
        ip = required(c, m, "ip", _outside_address)
        gateway = required(c, m, "gateway", ipv4_address)
        if switch is not None and port is not None:
            holder = taken.setdefault((switch, port), f"uplink {name!r}")
            if holder != f"uplink {name!r}":
                c.at("port").error(f"port {port} on switch {switch!r} is already used by {holder}")
        if ip is not None and gateway is not None:
            _check_gateway(c.at("gateway"), ip, gateway)
        number = uplink_number(name)
        if number in numbers:
            c.error(f"uplinks {numbers[number]!r} and {name!r} get the same MAC and conntrack zone: rename one")
        numbers.setdefault(number, name)
        if c.failed_since(mark) or switch is None or port is None or ip is None or gateway is None:
            continue
        out.append(Uplink(name, switch, port, ip, gateway))
    return out


def _outside_address(ctx: Ctx, value: object) -> ipaddress.IPv4Interface | None:
    """``192.0.2.10/24``: a host address of its subnet, prefix at most /30 (room for the upstream gateway)."""
    iface = host_interface(
        ctx, value, "the address", "192.0.2.10/24", 30, "the subnet must hold the upstream gateway too"
    )
    if iface is None:
        return None
    if iface.ip in (iface.network.network_address, iface.network.broadcast_address):
        ctx.error(f"{iface.ip} is not a host address of {iface.network}")
        return None
    return iface


def _check_gateway(ctx: Ctx, ip: ipaddress.IPv4Interface, gateway: ipaddress.IPv4Address) -> None:
    subnet = ip.network
    if gateway == ip.ip:
        ctx.error(f"{gateway} is the uplink's own address")
    elif gateway not in subnet:
        ctx.error(f"{gateway} is outside the uplink's subnet {subnet}")
    elif gateway in (subnet.network_address, subnet.broadcast_address):
        ctx.error(f"{gateway} is not a host address of {subnet}")


def parse_floating_ips(
    ctx: Ctx,
    raw: Mapping[str, object],
    known: Known,
    vms: Sequence[Vm],
    routers: Sequence[Router],
    uplinks: Sequence[Uplink],
) -> list[FloatingIp]:
    """The valid floating IPs of the ``floating_ips`` section ``raw`` (address -> VM name), sorted by address."""
    vm_by_name = {vm.name: vm for vm in vms}
    by_uplink = {u.name: u for u in uplinks}
    router_of = {net: r for r in routers for net in r.networks}
    own = {u.ip.ip: f"the address of uplink {u.name!r}" for u in uplinks}
    own.update({u.gateway: f"the gateway of uplink {u.name!r}" for u in uplinks})
    given: dict[str, ipaddress.IPv4Address] = {}
    out = []
    for key, value in raw.items():
        c = ctx.at(key)
        fip = ipv4_address(c, key)
        vm_name = reference(known.vms, "VM")(c, value)
        if fip is None or vm_name is None:
            continue
        if fip in own:
            c.error(f"{fip} is {own[fip]}")
            continue
        vm = vm_by_name.get(vm_name)
        if vm is None:
            continue  # invalid VM: already reported
        if vm_name in given:
            c.error(f"VM {vm_name!r} already has floating IP {given[vm_name]} (one per VM)")
            continue
        router = router_of.get(vm.network)
        uplink = by_uplink.get(router.uplink) if router is not None and router.uplink is not None else None
        if uplink is None and router is not None and router.uplink is not None:
            continue  # its uplink is invalid: already reported
        if uplink is None:
            c.error(f"VM {vm_name!r} is in network {vm.network!r}, which is on no router with an uplink")
            continue
        if vm.ip is None:
            c.error(f"VM {vm_name!r} declares no ip: a floating IP maps to the VM's ip")
            continue
        subnet = uplink.ip.network
        if fip not in subnet or fip in (subnet.network_address, subnet.broadcast_address):
            c.error(f"{fip} is not a host address of {subnet}, the subnet of uplink {uplink.name!r}")
            continue
        given[vm_name] = fip
        out.append(FloatingIp(fip, vm_name))
    return sorted(out, key=lambda f: f.ip)
