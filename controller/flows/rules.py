"""Our own flow-rule types: small, frozen, hashable, comparable by value.

Apps return sets of :class:`Rule`; the core diffs sets; only
:mod:`controller.ofmsg` turns them into os-ken messages. A rule's
``cookie`` is derived from its whole content (owner app in the top byte,
a stable 56-bit digest of its OpenFlow encoding below), so a switch's flow dump tells exactly which
rules are present without parsing matches or instructions, and a delete by
exact cookie removes exactly one rule.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
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


def make_match(**fields: MatchValue | None) -> Match:
    """Build a canonical :data:`Match` from keyword fields; ``None`` values are left out.

    >>> make_match(in_port=1, eth_dst=None, vlan_vid=0)
    (('in_port', 1), ('vlan_vid', 0))
    """
    items = [kv for kv in fields.items() if kv[1] is not None]
    items.sort()
    return tuple(items)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Output:
    """Send the packet out of ``port``; ``max_len`` bytes of it when to the controller."""

    port: int
    max_len: int = 0


@dataclass(frozen=True, slots=True)
class PushVlan:
    ethertype: int = 0x8100


@dataclass(frozen=True, slots=True)
class PopVlan:
    pass


@dataclass(frozen=True, slots=True)
class SetField:
    """Set an OXM field; ``vlan_vid`` values carry :data:`OFPVID_PRESENT`."""

    field: str
    value: int | str


@dataclass(frozen=True, slots=True)
class Group:
    group_id: int


@dataclass(frozen=True, slots=True)
class Nat:
    """NAT inside a :class:`Ct`: with ``dst`` set, destination-NAT a new
    connection to ``dst`` (and ``port``, when set); with ``src`` set,
    source-NAT it to ``src``; with nothing set, apply the NAT an established
    connection already has (and un-NAT its replies)."""

    dst: str | None = None
    port: int | None = None
    src: str | None = None


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
class Move:
    """Copy field ``src`` into field ``dst`` (same width), Nicira reg_move."""

    src: str
    dst: str


@dataclass(frozen=True, slots=True)
class CtClear:
    """Nicira ``ct_clear``: forget the packet's conntrack state (``ct_state`` 0), so it can be tracked again."""


@dataclass(frozen=True, slots=True)
class Resubmit:
    """Nicira ``resubmit(,table)``: run ``table`` on the packet now, then go on with the next action.

    Changes made there stay on the packet (wrap it in :class:`Clone` to keep them apart).
    """

    table: int


@dataclass(frozen=True, slots=True)
class Clone:
    """Nicira ``clone(actions)``: run ``actions`` on a copy of the packet; the packet itself is unchanged.

    OVS ``clone`` (ovs-actions(7)); a conntrack recirculation inside it forks the copy.
    """

    actions: tuple[Action, ...]


@dataclass(frozen=True, slots=True)
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


class _RuleCaches:
    """Slots a :class:`Rule` caches into: its hash (set at construction) and its cookie and flow-mod bytes.

    No ``__dict__``: 16 bytes less a rule, and :meth:`Rule.__new__` can turn a
    :class:`_Draft` into a rule (CPython would make the dict of each first).
    """

    __slots__ = ("_hash", "_encoded")
    _hash: int
    _encoded: tuple[int, bytes]


class _Draft(_RuleCaches):
    """A :class:`Rule` being built: its slots, in its order, without the frozen ``__setattr__``."""

    __slots__ = (
        "app",
        "table",
        "priority",
        "match",
        "actions",
        "goto",
        "meter",
        "idle_timeout",
        "flags",
        "write_metadata",
    )
    app: int
    table: int
    priority: int
    match: Match
    actions: tuple[Action, ...]
    goto: int | None
    meter: int | None
    idle_timeout: int
    flags: int
    write_metadata: tuple[int, int] | None


@dataclass(frozen=True, slots=True, init=False)
class Rule(_RuleCaches):
    """One OpenFlow flow entry as we want it on a switch.

    ``actions`` are applied in order (Apply-Actions), then the packet goes to
    ``goto`` if set. A rule with no actions and no goto drops.

    Slotted (about 150 bytes with its hash, against about 400 with a
    ``__dict__``): a large fabric holds hundreds of thousands. Rules are
    values; the apps share one object among the switches that want equal
    rules where that is cheap to see (:meth:`FabricView.intern`).
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

    def __new__(
        cls,
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
    ) -> Rule:
        """The dataclass's ``__init__``, about 3x cheaper (a large compile builds ~240k rules).

        The fields go on a :class:`_Draft` (the same slots, no frozen
        ``__setattr__``: plain slot stores), which then becomes a rule
        (``__class__`` assignment, which CPython allows between classes of
        the same slot layout: checked at import). Copies and pickles come
        back through here (:meth:`__getnewargs__`).
        """
        draft = _Draft()
        draft.app = app
        draft.table = table
        draft.priority = priority
        draft.match = match
        draft.actions = actions
        draft.goto = goto
        draft.meter = meter
        draft.idle_timeout = idle_timeout
        draft.flags = flags
        draft.write_metadata = write_metadata
        draft._hash = hash((app, table, priority, match, goto))
        draft.__class__ = cls  # type: ignore[assignment]
        return draft  # type: ignore[return-value]

    def __getnewargs__(self) -> tuple[object, ...]:
        """:meth:`__new__`'s arguments, for :mod:`copy` and :mod:`pickle` (every field, in order)."""
        return (
            self.app,
            self.table,
            self.priority,
            self.match,
            self.actions,
            self.goto,
            self.meter,
            self.idle_timeout,
            self.flags,
            self.write_metadata,
        )

    def _hash_of(self) -> int:
        """Hash of where the rule sits (app, table, priority, match, goto): equal rules hash alike, and two
        rules of a switch rarely differ only in their actions. Actions are left out: their hash is
        the dearest part (each action's ``__hash__`` runs in Python), about a quarter of a rule's construction."""
        return hash((self.app, self.table, self.priority, self.match, self.goto))

    def __hash__(self) -> int:
        """:meth:`_hash_of`, computed once at construction (sets of rules hash each rule many times)."""
        try:
            return self._hash
        except AttributeError:  # unpickled: the dataclass state holds the fields only
            object.__setattr__(self, "_hash", self._hash_of())
            return self._hash

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if other.__class__ is not Rule:
            return NotImplemented
        assert isinstance(other, Rule)
        if hash(self) != hash(other):
            return False
        # Rules that hash alike sit alike (app, table, priority, match, goto): mostly the actions differ.
        return (
            self.actions == other.actions
            and self.match == other.match
            and self.app == other.app
            and self.table == other.table
            and self.priority == other.priority
            and self.goto == other.goto
            and self.meter == other.meter
            and self.idle_timeout == other.idle_timeout
            and self.flags == other.flags
            and self.write_metadata == other.write_metadata
        )

    @property
    def encoded(self) -> tuple[int, bytes]:
        """(cookie, ``OFPT_FLOW_MOD`` ``OFPFC_ADD`` bytes with xid 0), made once per rule and kept in a slot.

        The cookie digests the rule's OpenFlow encoding (:func:`controller.ofwire.encode`),
        so both come from one pass. Raises what :func:`controller.ofwire.encode` raises
        for a rule it cannot write.
        """
        try:
            return self._encoded
        except AttributeError:
            pass
        from controller import ofwire  # the wire format's one home; it imports this module

        object.__setattr__(self, "_encoded", ofwire.encode(self))
        return self._encoded

    @property
    def cookie(self) -> int:
        """Owner app in bits 56-63, a stable 56-bit digest of the whole rule below (see :attr:`encoded`)."""
        return self.encoded[0]

    @property
    def match_dict(self) -> Mapping[str, MatchValue]:
        """The match as a dict (a new one each time: rules keep no ``__dict__`` to cache it in)."""
        return dict(self.match)


if vars(Rule)["__slots__"] != vars(_Draft)["__slots__"]:  # pragma: no cover (a field added to one class only)
    raise TypeError(f"Rule and _Draft slots differ: {vars(Rule)['__slots__']} != {vars(_Draft)['__slots__']}")


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
