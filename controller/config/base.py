"""Path-tracking validation primitives for the network-file loader.

Every check takes a :class:`Ctx` (where in the file we are, plus the list that
errors go to) and one raw value: as the loader returned it (plain scalars that
YAML 1.1 would read as numbers or booleans are still text, see
:mod:`controller.config.scalars`), or as Python code built it (ints, bools).
It returns the converted value, or ``None`` after recording one error at the
context's path. Checks never raise, so a single pass reports every mistake in
a file.

Only the standard library is imported here: the Mininet scripts load the
config with Debian's system Python, which has PyYAML and nothing else.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from controller.config.model import PortRef
from controller.config.scalars import Plain, PlainBool, PlainNumber, leading_zero, to_bool, to_float, to_int

T = TypeVar("T")
Check = Callable[["Ctx", object], T | None]
"""A check: ``check(ctx, raw)`` returns the converted value or ``None`` after an error."""

OFPP_MAX = 0xFFFFFF00
"""Highest physical OpenFlow port number (OpenFlow 1.3 ``OFPP_MAX``)."""

_MAC_RE = re.compile(r"^[0-9a-f]{2}(?::[0-9a-f]{2}){5}$")
_IFNAME_BAD = re.compile(r"[/:\s]")
_IFNAME_MAX = 15


@dataclass(frozen=True, eq=False)
class Ctx:
    """A position in the file and the shared list of errors found so far.

    >>> ctx = Ctx()
    >>> ctx.at("acls").at("web-in").at(2).at("match").error("bad")
    >>> ctx.errors
    ('acls.web-in[2].match: bad',)
    """

    path: str = ""
    sink: list[str] = field(default_factory=list)

    def at(self, key: str | int) -> Ctx:
        """The context of child ``key``: a mapping key, or a list index when an int."""
        if isinstance(key, int):
            return Ctx(f"{self.path}[{key}]", self.sink)
        return Ctx(f"{self.path}.{key}" if self.path else key, self.sink)

    def error(self, message: str) -> None:
        """Record ``message`` as ``"<path>: <message>"``."""
        self.sink.append(f"{self.path or 'top level'}: {message}")

    def mark(self) -> int:
        """A token for :meth:`failed_since`."""
        return len(self.sink)

    def failed_since(self, mark: int) -> bool:
        """Whether any error was recorded (anywhere) since ``mark`` was taken."""
        return len(self.sink) > mark

    @property
    def errors(self) -> tuple[str, ...]:
        return tuple(self.sink)


@dataclass(frozen=True)
class Known:
    """Names declared by each name-keyed section, for reference checks.

    ``None`` means the section itself was malformed (already reported), so
    references into it are not checked rather than all reported as unknown.
    """

    switches: frozenset[str] | None = frozenset()
    networks: frozenset[str] | None = frozenset()
    vms: frozenset[str] | None = frozenset()
    acls: frozenset[str] | None = frozenset()


def describe(value: object) -> str:
    """A YAML-flavoured description of ``value`` for error messages."""
    if value is None:
        return "null"
    if isinstance(value, Plain):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, float):
        return f"number {value}"
    if isinstance(value, str):
        return f"string {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"{type(value).__name__} {value}"


def alternatives(choices: Iterable[str]) -> str:
    """``"a, b or c"``."""
    items = list(choices)
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} or {items[-1]}"


def mapping(
    ctx: Ctx, value: object, required: Iterable[str] = (), optional: Iterable[str] = ()
) -> dict[str, object] | None:
    """Check a mapping with only the given keys; report unknown and missing keys.

    Returns the known entries (even when keys were missing or unknown, so
    the caller still checks what is there), or ``None`` if not a mapping.
    """
    if not isinstance(value, dict):
        ctx.error(f"expected a mapping, got {describe(value)}")
        return None
    needed = tuple(required)
    allowed = set(needed) | set(optional)
    known: dict[str, object] = {}
    for key, item in value.items():
        if isinstance(key, str) and key in allowed:
            known[key] = item
        else:
            ctx.error(f"unknown key {key!r}")
    for key in needed:
        if key not in value:
            ctx.at(key).error("required")
    return known


def named(ctx: Ctx, value: object) -> dict[str, object] | None:
    """Check a mapping keyed by names (non-empty strings); drop and report other keys.

    A plain key such as ``no`` or ``100`` is the name as written.
    """
    if not isinstance(value, dict):
        ctx.error(f"expected a mapping of names, got {describe(value)}")
        return None
    out: dict[str, object] = {}
    for key, item in value.items():
        if isinstance(key, str) and key:
            out[str(key)] = item
        else:
            ctx.error(f"names must be non-empty strings, got {describe(key)}")
    return out


def required(ctx: Ctx, known: Mapping[str, object], key: str, check: Check[T]) -> T | None:
    """Check ``known[key]`` at ``ctx.key``; ``None`` if absent (already reported by :func:`mapping`)."""
    return check(ctx.at(key), known[key]) if key in known else None


def optional(ctx: Ctx, known: Mapping[str, object], key: str, check: Check[T], default: T) -> T:
    """Check ``known[key]`` at ``ctx.key``; ``default`` if absent or invalid (the error is recorded)."""
    if key not in known:
        return default
    value = check(ctx.at(key), known[key])
    return default if value is None else value


def sequence(ctx: Ctx, value: object) -> list[object] | None:
    if not isinstance(value, list):
        ctx.error(f"expected a list, got {describe(value)}")
        return None
    return value


def string(ctx: Ctx, value: object) -> str | None:
    """A non-empty string; a plain scalar is its text (``no``, ``100``)."""
    if not isinstance(value, str):
        ctx.error(f"expected a string, got {describe(value)}")
        return None
    if not value:
        ctx.error("must not be empty")
        return None
    return str(value)


def boolean(ctx: Ctx, value: object) -> bool | None:
    """``true`` or ``false``; not ``yes``, ``no``, ``on``, ``off`` or a quoted string."""
    if isinstance(value, PlainBool):
        try:
            return to_bool(value)
        except ValueError as exc:
            ctx.error(str(exc))
            return None
    if not isinstance(value, bool):
        ctx.error(f"expected true or false, got {describe(value)}")
        return None
    return value


def integer(ctx: Ctx, value: object, expected: str = "an integer", hex_first: bool = False) -> int | None:
    """An integer (not a boolean); a plain scalar by the rules of :mod:`controller.config.scalars`.

    ``expected`` names what was expected in the error message; ``hex_first``
    suggests hex first for a leading zero (for keys usually written in hex).
    """
    if isinstance(value, PlainNumber):
        try:
            return to_int(value, expected, hex_first)
        except ValueError as exc:
            ctx.error(str(exc))
            return None
    if isinstance(value, bool) or not isinstance(value, int):
        ctx.error(f"expected {expected}, got {describe(value)}")
        return None
    return value


def int_in(lo: int, hi: int | None = None) -> Check[int]:
    """A check for an integer (not a boolean) in ``lo..hi`` (no upper bound if ``hi`` is None)."""

    def check(ctx: Ctx, raw: object) -> int | None:
        value = integer(ctx, raw)
        if value is None:
            return None
        if value < lo or (hi is not None and value > hi):
            bounds = f"at least {lo}" if hi is None else f"between {lo} and {hi}"
            ctx.error(f"must be {bounds}, got {value}")
            return None
        return value

    return check


def positive_number(ctx: Ctx, value: object) -> float | None:
    """A finite number (int or float, not a boolean) greater than 0; ``1e3`` and ``.5`` count."""
    if isinstance(value, PlainNumber):
        try:
            number = to_float(value, "a number")
        except ValueError as exc:
            ctx.error(str(exc))
            return None
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        ctx.error(f"expected a number, got {describe(value)}")
        return None
    else:
        number = value
    if not math.isfinite(number) or number <= 0:
        ctx.error(f"must be a number greater than 0, got {value}")
        return None
    return float(number)


def one_of(*choices: str) -> Check[str]:
    """A check for one of the literal strings ``choices``."""

    def check(ctx: Ctx, value: object) -> str | None:
        if not isinstance(value, str) or value not in choices:
            ctx.error(f"expected {alternatives(choices)}, got {describe(value)}")
            return None
        return str(value)

    return check


def reference(names: frozenset[str] | None, kind: str) -> Check[str]:
    """A check for a name declared in a section (``kind`` is e.g. ``"switch"``)."""

    def check(ctx: Ctx, value: object) -> str | None:
        name = string(ctx, value)
        if name is not None and names is not None and name not in names:
            ctx.error(f"unknown {kind} {name!r}")
            return None
        return name

    return check


def references(names: frozenset[str] | None, kind: str) -> Check[tuple[str, ...]]:
    """A check for a list of distinct declared names, in the given order."""
    one = reference(names, kind)

    def check(ctx: Ctx, value: object) -> tuple[str, ...] | None:
        items = sequence(ctx, value)
        if items is None:
            return None
        out: list[str] = []
        mark = ctx.mark()
        for i, item in enumerate(items):
            name = one(ctx.at(i), item)
            if name in out:
                ctx.at(i).error(f"{name!r} is listed twice")
            elif name is not None:
                out.append(name)
        return None if ctx.failed_since(mark) else tuple(out)

    return check


def mac(ctx: Ctx, value: object) -> str | None:
    """A MAC address ``aa:bb:cc:dd:ee:ff`` (any case), returned lower-case."""
    if not isinstance(value, str):
        hint = " (quote MAC addresses in YAML)" if isinstance(value, int) else ""
        ctx.error(f"expected a MAC address like '02:00:00:00:00:01', got {describe(value)}{hint}")
        return None
    if not _MAC_RE.match(value.lower()):
        ctx.error(f"invalid MAC address {value!r}")
        return None
    return value.lower()


def unicast_mac(ctx: Ctx, value: object) -> str | None:
    """A MAC address a host may send from: not multicast, broadcast or all-zero."""
    address = mac(ctx, value)
    if address is not None and (int(address[:2], 16) & 1 or address == "00:00:00:00:00:00"):
        ctx.error(f"must be a unicast MAC address, got {address!r}")
        return None
    return address


def ipv4_address(ctx: Ctx, value: object) -> ipaddress.IPv4Address | None:
    """A plain IPv4 address string (no prefix)."""
    if not isinstance(value, str):
        ctx.error(f"expected an IPv4 address, got {describe(value)}")
        return None
    try:
        return ipaddress.IPv4Address(value)
    except ValueError:
        ctx.error(f"invalid IPv4 address {value!r}")
        return None


def ipv4_interface(ctx: Ctx, value: object) -> ipaddress.IPv4Interface | None:
    """A host address with prefix, ``10.0.0.1/24``; a bare address means ``/32``.

    The network and broadcast addresses of a subnet are rejected.
    """
    if not isinstance(value, str):
        ctx.error(f"expected an IPv4 address like '10.0.0.1/24', got {describe(value)}")
        return None
    try:
        iface = ipaddress.IPv4Interface(value)
    except ValueError:
        ctx.error(f"invalid IPv4 address {value!r}")
        return None
    net = iface.network
    if net.prefixlen <= 30 and iface.ip in (net.network_address, net.broadcast_address):
        which = "network" if iface.ip == net.network_address else "broadcast"
        ctx.error(f"{value} is the {which} address of {net}")
        return None
    return iface


def ipv4_network(ctx: Ctx, value: object) -> ipaddress.IPv4Network | None:
    """An IPv4 address or CIDR without host bits; a bare address means ``/32``."""
    if not isinstance(value, str):
        ctx.error(f"expected an IPv4 address or CIDR, got {describe(value)}")
        return None
    try:
        return ipaddress.IPv4Network(value)
    except ValueError:
        pass
    try:
        loose = ipaddress.IPv4Network(value, strict=False)
    except ValueError:
        ctx.error(f"invalid IPv4 address or CIDR {value!r}")
        return None
    ctx.error(f"{value} has host bits set (did you mean {loose}?)")
    return None


def ifname(ctx: Ctx, value: object) -> str | None:
    """A Linux interface name: 1-15 characters, no '/', ':' or whitespace."""
    name = string(ctx, value)
    if name is None:
        return None
    if len(name) > _IFNAME_MAX or _IFNAME_BAD.search(name) or name in (".", ".."):
        ctx.error(f"invalid interface name {name!r} (at most {_IFNAME_MAX} characters, no '/', ':' or whitespace)")
        return None
    return name


def port_ref(ctx: Ctx, value: object) -> PortRef | None:
    """An OpenFlow port number (1..OFPP_MAX) or an interface name.

    Digit strings (``"10"``, the port of ``s1:10``) are numbers, without a
    leading zero; so is every plain scalar that looks like a number. Other
    plain scalars (``on``) are names.
    """
    if isinstance(value, str) and value.isascii() and value.isdigit():
        if len(value) > 1 and value.startswith("0"):
            ctx.error(leading_zero(value))
            return None
        value = int(value)
    if isinstance(value, PlainNumber) or (isinstance(value, int) and not isinstance(value, bool)):
        return int_in(1, OFPP_MAX)(ctx, value)
    if isinstance(value, str):
        return ifname(ctx, value)
    ctx.error(f"expected a port number or an interface name, got {describe(value)}")
    return None


def port_key(port: PortRef) -> tuple[int, int, str]:
    """A sort key ordering numbered ports (numerically) before named ones."""
    return (0, port, "") if isinstance(port, int) else (1, 0, port)
