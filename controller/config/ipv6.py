"""Checks for IPv6 values of a network file: a VM's ``ipv6`` and the ACL ``ipv6_*`` matches.

Like the checks of :mod:`controller.config.base`, each returns the converted
value or ``None`` after recording one error at the context's path. Standard
library only.
"""

from __future__ import annotations

import ipaddress

from controller.config.base import Ctx, describe

_QUOTE_HINT = " (quote IPv6 addresses in YAML)"


def _text(ctx: Ctx, value: object, example: str) -> str | None:
    if isinstance(value, str):
        return value
    hint = _QUOTE_HINT if isinstance(value, (int, float)) and not isinstance(value, bool) else ""
    ctx.error(f"expected {example}, got {describe(value)}{hint}")
    return None


def ipv6_interface(ctx: Ctx, value: object) -> ipaddress.IPv6Interface | None:
    """A VM's IPv6 address with prefix, ``2001:db8:0:1::11/64``; a bare address means ``/128``.

    Only a global or unique-local unicast address a host can hold: not
    link-local (a VM's link-local address is derived from its ``mac``),
    multicast, unspecified, loopback or IPv4-mapped, and not the
    subnet-router anycast address of its prefix (RFC 4291 2.6.1).
    """
    text = _text(ctx, value, "an IPv6 address like '2001:db8::11/64'")
    if text is None:
        return None
    try:
        iface = ipaddress.IPv6Interface(text) if "%" not in text else None
    except ValueError:
        iface = None
    if iface is None:
        ctx.error(f"invalid IPv6 address {text!r}")
        return None
    address, net = iface.ip, iface.network
    problem = None
    if address.is_multicast:
        problem = "is a multicast address"
    elif address.is_unspecified or address.is_loopback:
        problem = "is not an address a VM can hold"
    elif address.is_link_local:
        problem = "is link-local (a VM's link-local address is derived from its mac)"
    elif address.ipv4_mapped is not None:
        problem = "is an IPv4-mapped address (declare IPv4 addresses as ip)"
    elif net.prefixlen < 127 and address == net.network_address:
        problem = f"is the subnet-router anycast address of {net}"
    if problem is not None:
        ctx.error(f"{text} {problem}")
        return None
    return iface


def ipv6_network(ctx: Ctx, value: object) -> ipaddress.IPv6Network | None:
    """An IPv6 address or CIDR without host bits; a bare address means ``/128``."""
    text = _text(ctx, value, "an IPv6 address or CIDR")
    if text is None:
        return None
    try:
        return ipaddress.IPv6Network(text)
    except ValueError:
        pass
    try:
        loose = ipaddress.IPv6Network(text, strict=False)
    except ValueError:
        ctx.error(f"invalid IPv6 address or CIDR {text!r}")
        return None
    ctx.error(f"{text} has host bits set (did you mean {loose}?)")
    return None
