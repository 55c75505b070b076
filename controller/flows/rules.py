"""Our own flow-rule types: small, frozen, hashable, comparable by value.

Apps return sets of :class:`Rule`; the core diffs sets; only
:mod:`controller.ofmsg` turns them into os-ken messages. A rule's
``cookie`` is derived from its whole content (owner app in the top byte,
a stable 56-bit digest below), so a switch's flow dump tells exactly which
rules are present without parsing matches or instructions, and a delete by
exact cookie removes exactly one rule.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

MatchValue = int | str | tuple[int, int] | tuple[str, str]
"""An exact value, or ``(value, mask)`` for maskable fields (IPv4 as dotted strings)."""

Match = tuple[tuple[str, MatchValue], ...]
"""Match fields as sorted ``(oxm_field_name, value)`` pairs (os-ken OXM names)."""

OFPP_CONTROLLER = 0xFFFFFFFD
OFPP_LOCAL = 0xFFFFFFFE
OFPP_IN_PORT = 0xFFFFFFF8
OFPVID_PRESENT = 0x1000
OFPVID_NONE = 0x0000
FLAG_SEND_FLOW_REM = 1
COOKIE_DIGEST_MASK = (1 << 56) - 1
_DIGEST = hashlib.blake2b(digest_size=7)
"""The cookie digest's initial state (copied: cheaper than a new ``blake2b`` per rule)."""
_ACTION_REPRS: dict[tuple[object, ...], str] = {}
"""Action tuple -> its repr, for cookies (bounded: cleared at :data:`_ACTION_REPRS_MAX`)."""
_ACTION_REPRS_MAX = 8192


def make_match(**fields: MatchValue | None) -> Match:
    """Build a canonical :data:`Match` from keyword fields; ``None`` values are left out.

    >>> make_match(in_port=1, eth_dst=None, vlan_vid=0)
    (('in_port', 1), ('vlan_vid', 0))
    """
    return tuple(sorted((k, v) for k, v in fields.items() if v is not None))


@dataclass(frozen=True)
class Output:
    """Send the packet out of ``port``; ``max_len`` bytes of it when to the controller."""

    port: int
    max_len: int = 0


@dataclass(frozen=True)
class PushVlan:
    ethertype: int = 0x8100


@dataclass(frozen=True)
class PopVlan:
    pass


@dataclass(frozen=True)
class SetField:
    """Set an OXM field; ``vlan_vid`` values carry :data:`OFPVID_PRESENT`."""

    field: str
    value: int | str


@dataclass(frozen=True)
class Group:
    group_id: int


@dataclass(frozen=True)
class Nat:
    """NAT inside a :class:`Ct`: with ``dst`` set, destination-NAT a new
    connection to ``dst`` (and ``port``, when set); with ``src`` set,
    source-NAT it to ``src``; with nothing set, apply the NAT an established
    connection already has (and un-NAT its replies)."""

    dst: str | None = None
    port: int | None = None
    src: str | None = None


@dataclass(frozen=True)
class Ct:
    """Nicira conntrack action: send through conntrack in ``zone``.

    ``commit`` commits the connection; ``recirc_table`` resubmits the packet,
    with its ``ct_state`` filled in, to that table (the rule's last action);
    ``nat`` applies NAT as described there; ``mark`` (with ``commit``) sets
    the connection's ``ct_mark``.
    """

    zone: int
    commit: bool = False
    recirc_table: int | None = None
    nat: Nat | None = None
    mark: int | None = None


@dataclass(frozen=True)
class Move:
    """Copy field ``src`` into field ``dst`` (same width), Nicira reg_move."""

    src: str
    dst: str


@dataclass(frozen=True)
class CtClear:
    """Nicira ``ct_clear``: forget the packet's conntrack state (``ct_state`` 0), so it can be tracked again."""


@dataclass(frozen=True)
class Resubmit:
    """Nicira ``resubmit(,table)``: run ``table`` on the packet now, then go on with the next action.

    Changes made there stay on the packet (wrap it in :class:`Clone` to keep them apart).
    """

    table: int


@dataclass(frozen=True)
class Clone:
    """Nicira ``clone(actions)``: run ``actions`` on a copy of the packet; the packet itself is unchanged.

    OVS ``clone`` (ovs-actions(7)); a conntrack recirculation inside it forks the copy.
    """

    actions: tuple[Action, ...]


@dataclass(frozen=True)
class DecTtl:
    """Decrement the IPv4 TTL (OpenFlow ``dec_nw_ttl``); a packet whose TTL is 0 or 1 is dropped
    (OVS stops applying actions to it; its invalid-TTL packet-in is off by default)."""


Action = Output | PushVlan | PopVlan | SetField | Group | Ct | Move | CtClear | Resubmit | Clone | DecTtl

CT_NEW, CT_EST, CT_REL, CT_RPL, CT_INV, CT_TRK, CT_SNAT, CT_DNAT = (1 << i for i in range(8))
"""``ct_state`` bits, as OVS numbers them."""


def ct_state(plus: int = 0, minus: int = 0) -> tuple[int, int]:
    """A masked ``ct_state`` match: bits in ``plus`` set, bits in ``minus`` clear.

    >>> ct_state(CT_TRK | CT_EST, CT_INV)
    (34, 50)
    """
    return (plus, plus | minus)


@dataclass(frozen=True, init=False)
class Rule:
    """One OpenFlow flow entry as we want it on a switch.

    ``actions`` are applied in order (Apply-Actions), then the packet goes to
    ``goto`` if set. A rule with no actions and no goto drops.

    Its hash and :attr:`cookie` are computed once; its ``__init__`` stores
    the fields in one go (a frozen dataclass's generated one sets each
    through ``object.__setattr__``, which made building the rules of every
    learned host a visible cost).
    """

    app: int
    """Owner app id (0-255): the top byte of the cookie."""
    table: int
    priority: int
    match: Match = ()
    actions: tuple[Action, ...] = ()
    goto: int | None = None
    meter: int | None = None
    idle_timeout: int = 0
    flags: int = 0
    write_metadata: tuple[int, int] | None = None
    """``(value, mask)`` written to the metadata register before ``goto``."""

    def __init__(
        self,
        app: int,
        table: int,
        priority: int,
        match: Match = (),
        actions: tuple[Action, ...] = (),
        goto: int | None = None,
        meter: int | None = None,
        idle_timeout: int = 0,
        flags: int = 0,
        write_metadata: tuple[int, int] | None = None,
    ) -> None:
        self.__dict__.update(
            app=app,
            table=table,
            priority=priority,
            match=match,
            actions=actions,
            goto=goto,
            meter=meter,
            idle_timeout=idle_timeout,
            flags=flags,
            write_metadata=write_metadata,
        )

    def __hash__(self) -> int:
        """The hash of the rule's content, computed once (rules are hashed many times in sets and counters)."""
        cached = self.__dict__.get("_hash")
        if cached is None:
            cached = self.__dict__["_hash"] = hash(self._content())
        return cached

    @property
    def cookie(self) -> int:
        """Owner app in bits 56-63, a stable digest of the whole rule below (computed once)."""
        cached = self.__dict__.get("_cookie")
        if cached is None:
            digest = _DIGEST.copy()
            digest.update(self._content_repr().encode())
            cached = self.__dict__["_cookie"] = (self.app << 56) | int.from_bytes(digest.digest(), "big")
        return cached

    def _content_repr(self) -> str:
        """``repr(self._content())``, with the actions' repr looked up (dataclass reprs are slow; rules share
        action tuples)."""
        actions = _ACTION_REPRS.get(self.actions)
        if actions is None:
            if len(_ACTION_REPRS) >= _ACTION_REPRS_MAX:
                _ACTION_REPRS.clear()
            actions = _ACTION_REPRS[self.actions] = repr(self.actions)
        head = f"({self.app!r}, {self.table!r}, {self.priority!r}, {self.match!r}, {actions}, {self.goto!r}, "
        tail = f"{self.meter!r}, {self.idle_timeout!r}, {self.flags!r}"
        if self.write_metadata is not None:
            return f"{head}{tail}, {self.write_metadata!r})"
        return f"{head}{tail})"

    def _content(self) -> tuple[object, ...]:
        content: tuple[object, ...] = (
            self.app,
            self.table,
            self.priority,
            self.match,
            self.actions,
            self.goto,
            self.meter,
            self.idle_timeout,
            self.flags,
        )
        if self.write_metadata is not None:  # absent from older rules: their cookies stay
            content += (self.write_metadata,)
        return content

    @cached_property
    def match_dict(self) -> Mapping[str, MatchValue]:
        return dict(self.match)


GroupType = Literal["all", "select", "ff"]
"""OpenFlow group types: all (flood), select (one bucket by hash, weighted), ff (fast failover)."""


@dataclass(frozen=True)
class GroupEntry:
    """An OpenFlow group. ``buckets`` are (weight, watch_port, actions)."""

    app: int
    group_id: int
    type: GroupType
    buckets: tuple[tuple[int, int, tuple[Action, ...]], ...] = field(default=())


def app_of_cookie(cookie: int) -> int:
    """The owner app id encoded in a cookie."""
    return cookie >> 56
