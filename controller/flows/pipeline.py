"""The table pipeline: the one registry of tables, owners, priority bands and shared fields.

Tables have stable, gapped ids (a new table takes a free id between two
others: nothing is renumbered, and since a rule's cookie is a digest of its
content, no unrelated rule's cookie changes). Packets visit tables in id
order; :meth:`Pipeline.next_table` names the next *present* table, so an app
that writes "go on" reaches a table inserted after its own.

| id | table      | bands (app: priorities)                  | does                                                         |
|----|------------|------------------------------------------|--------------------------------------------------------------|
| 0  | ingress    | ingress 0-1001, mirror 200-1002, router 1003-1004 | LLDP to controller; port -> network VLAN and ACL ids; port security; mirror port drop, mirror VLAN on trunks; an uplink's frames to ``uplink_in`` |
| 3  | uplink_in  | router                                   | on an uplink port: ARP for the uplink address and floating IPs answered, the upstream gateway's ARP replies to the controller (metered), spoofed inside sources and anything not to our addresses dropped; the rest through conntrack NAT (zone :data:`CT_ZONE_UPLINK` + uplink number) |
| 6  | dnat       | router                                   | replies (un-SNATed) and floating-IP connections (DNATed) routed to the VM: its network's VLAN and gateway MAC, TTL-1 -> past learn |
| 10 | acl_port   | acl 0-65000, lb 65050-65150 (hairpin, probe traps) | conntrack pass; replies of committed connections on; per-VM ACLs |
| 20 | acl_net    | acl                                      | per-network ACLs                                             |
| 30 | lb         | lb                                       | VIP ARP replies, VIP -> backend (select group, conntrack NAT) |
| 40 | acl_commit | acl                                      | commit connections                                           |
| 42 | dhcp       | dhcp                                     | DHCP DISCOVER/REQUEST of ``dhcp: true`` networks to the controller (metered) |
| 45 | route      | router                                   | gateway ARP and ICMP echo answered; routed IPv4 (TTL-1, MACs, VLAN of the destination network) -> past learn; gateway ARP replies to the controller (metered) |
| 50 | learn      | l2                                       | known (vlan, src MAC, port) -> next; unknown -> controller + next; a VM's frame to a label MAC drops |
| 55 | mirror     | mirror                                   | copies of mirrored VMs' traffic toward their mirror port     |
| 60 | forward    | l2, router 10-13                         | (vlan, dst MAC) -> its label MAC, toward its switch (port or fast-failover group); a switch's label MACs -> toward it; own label MACs -> the MAC back, delivered; miss -> flood; (router) a network's gateway MAC -> toward its uplink's switch |
| 70 | flood      | flood                                    | per-network flood along the loop-free tree                   |
| 80 | egress     | ingress 0, acl 100-200                   | delivery to a VM port (reg0): ports with ``acl_out`` lists or conntrack to the ACL, the rest to output |
| 82 | acl_out_net | acl                                     | conntrack pass (zone = VLAN) at delivery; replies of committed connections on; network ``acl_out`` |
| 84 | acl_out_port | acl                                    | the VM's ``acl_out`` list                                     |
| 86 | egress_commit | acl                                  | commit delivered connections; un-NAT load-balanced replies    |
| 87 | uplink_out | router                                   | on an uplink's switch, frames of its router's networks to their gateway MAC (the default route): TTL-1, through conntrack NAT |
| 88 | snat       | router                                   | new connections committed with source NAT (a floating IP, else the uplink address); out of the uplink to the upstream gateway |
| 90 | output     | ingress                                  | pop the network's tag, out of the VM's port (reg0)           |

Delivery: ``forward`` and ``flood`` hand a frame to a VM port by writing the
port into reg0 and resubmitting to ``egress`` (one ``clone`` per port when
flooding, so each copy meets its own port's policy), as OVN's logical
output port (reg15) and egress pipeline.

Shared fields (who writes, who reads), as OVN northd keeps its register table:

| field            | bits   | written by       | read by          | meaning                                        |
|------------------|--------|------------------|------------------|------------------------------------------------|
| metadata         | 0-31   | ingress          | acl (acl_port)   | the VM's ACL list id (0: none)                 |
| metadata         | 32-62  | ingress          | acl (acl_net)    | the network's ACL list id (0: none)            |
| metadata         | 63     | acl (allow)      | acl (acl_commit) | a stateful rule allowed this packet            |
| metadata (egress) | 0-62  | acl (egress)     | acl (acl_out_*)  | the VM's and the network's ``acl_out`` list ids, as above |
| metadata (egress) | 63    | acl (allow)      | acl (egress_commit) | a stateful ``acl_out`` rule allowed this packet |
| reg0             | 0-31   | l2, flood        | ingress, acl     | :data:`REG_OUT_PORT`: the VM port a frame is delivered to |
| vlan_pcp (fabric) | 3     | acl (commit, replies) | acl (egress_commit, acl_out_net) | :data:`PCP_STATEFUL`: a stateful rule on the way allowed this connection (carried across trunks to the delivering switch; a backup path's mark replaces it) |
| ct_mark          | 0-31   | acl, lb (commit) | acl (acl_port)   | :data:`CT_MARK_SKIP_ACL`: replies skip the ACLs |
| ct_zone          | 16     | acl              | acl              | the network's VLAN id: where a connection is tracked at both ends, on every host it crosses |
| ct_zone          | 16     | lb               | lb, acl (egress_commit) | :data:`CT_ZONE_LB` + the client network's VLAN: the balancer's destination NAT (un-NATed where replies are delivered; a routed client's network has its own) |
| ct_zone          | 16     | lb (hairpin)     | lb               | :data:`CT_ZONE_HAIRPIN` + VLAN: backend-to-own-VIP SNAT |
| vlan_pcp (trunk) | 3      | l2 (ff groups)   | l2 (forward)     | :data:`PCP_DETOUR`: the frame is on a backup path (ingress resets a VM's priority to 0) |
| eth_dst (fabric) | 48     | l2 (entry)       | l2 (forward)     | a label MAC (:mod:`controller.fabric.labels`): the destination switch's label and the host MAC's low 28 bits, between the switch where the frame entered the fabric and its destination switch |
| tunnel_id        | 24     | l2, flood, mirror (before a tunnel output) | ingress (tunnel ports) | the network's VNI on a tunnel between hosts (:class:`~controller.fabric.crossing.Crossing`) |

Meters: :data:`METER_PACKET_IN` (rate ``controller.packet_in_rate``) on every
rule that copies packets to the controller (learn, load-balancer probe traps,
DHCP requests, ARP replies to a gateway).
Which app handles the packet-ins of a table is declared here too
(:attr:`TableSpec.trap`); the shim passes packet-ins through by table.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from operator import itemgetter

from controller.flows.rules import Action, Clone, Ct, Resubmit, Rule

# App ids: the top byte of every cookie. A third-party app picks an unused id >= 64.
APP_INGRESS = 1
APP_ACL = 2
APP_LB = 3
APP_L2 = 4
APP_FLOOD = 5
APP_MIRROR = 6
APP_ROUTER = 7
APP_DHCP = 8
BUILTIN_APPS: Mapping[str, int] = {
    "ingress": APP_INGRESS,
    "acl": APP_ACL,
    "lb": APP_LB,
    "l2": APP_L2,
    "flood": APP_FLOOD,
    "mirror": APP_MIRROR,
    "router": APP_ROUTER,
    "dhcp": APP_DHCP,
}

T_INGRESS = 0
T_UPLINK_IN = 3
T_DNAT = 6
T_ACL_PORT = 10
T_ACL_NET = 20
T_LB = 30
T_ACL_COMMIT = 40
T_DHCP = 42
T_ROUTE = 45
T_LEARN = 50
T_MIRROR = 55
T_FORWARD = 60
T_FLOOD = 70
T_EGRESS = 80
T_ACL_OUT_NET = 82
T_ACL_OUT_PORT = 84
T_EGRESS_COMMIT = 86
T_UPLINK_OUT = 87
T_SNAT = 88
T_OUTPUT = 90

METER_PACKET_IN = 1
"""OpenFlow meter on every rule that copies packets to the controller."""
CT_MARK_SKIP_ACL = 1
"""``ct_mark`` of connections whose replies skip the ACLs (stateful allows, load balancing)."""
CT_ZONE_HAIRPIN = 0x1000
"""Added to a network's VLAN id: the conntrack zone where a backend's connections to its own VIP are
source-NATed to the VIP (a zone apart from the network's, as OVN's ``ct_snat_to_vip``)."""
CT_ZONE_LB = 0x2000
"""Added to a client network's VLAN id: the conntrack zone of the load balancer's destination NAT (the
balancer's own network, or a network its router joins to it), apart from the network's own zone so that
the NATed connection can be tracked again where it is delivered."""
CT_ZONE_UPLINK = 0x3000
"""Added to an uplink's number (:func:`~controller.config.uplinks.uplink_number`): the conntrack zone of its
source NAT and floating IPs, on the uplink's switch."""
PCP_DETOUR = 1
"""VLAN priority of a frame on a backup path (0 elsewhere in the fabric)."""
PCP_STATEFUL = 2
"""VLAN priority of a frame whose connection a stateful rule (or the load balancer) allowed on its way."""
REG_OUT_PORT = "reg0"
"""Register holding the VM port a frame is being delivered to (tables ``egress`` to ``output``)."""
ACL_TOP_RULE_PRIORITY = 59999
"""Priority of an ACL list's first rule; the next ones count down (the acl band of acl_port/acl_net)."""
MAX_ACL_LIST_RULES = 59000
"""Rules one ACL list may hold in all, so that they keep their order above the list's default deny."""
METADATA_PORT_LIST = 0x0000_0000_FFFF_FFFF
METADATA_NET_LIST = 0x7FFF_FFFF_0000_0000
METADATA_NET_SHIFT = 32
METADATA_STATEFUL = 1 << 63
METADATA_ALL = (1 << 64) - 1

LINKS = "links"
"""Trap owner of LLDP packet-ins: the core's link discovery, not an app."""


class PipelineError(ValueError):
    """A rule does not fit the declared pipeline."""


@dataclass(frozen=True)
class Trap:
    """Packet-ins from a table: which app handles them and the metric's ``reason`` label.

    ``per_source``: every frame of one source on one port means the same to
    the owner (MAC learning), so the receive loop may shed repeats unparsed
    (:mod:`controller.rx`).
    """

    owner: str
    reason: str
    per_source: bool = False


@dataclass(frozen=True)
class TableSpec:
    """What a table may match, which app may write which priorities, where it may go next.

    ``bands`` maps an app name to the inclusive (lowest, highest) priority
    it may use here; ``next_tables`` are table names (the next present table
    is always allowed).
    """

    table_id: int
    name: str
    bands: Mapping[str, tuple[int, int]]
    match_fields: frozenset[str]
    next_tables: frozenset[str] = frozenset()
    trap: Trap | None = None


_L2 = frozenset({"in_port", "vlan_vid", "eth_src", "eth_dst", "eth_type"})
_TUNNEL = frozenset({"tunnel_id"})
_L3 = frozenset(
    {
        "arp_spa",
        "arp_tpa",
        "arp_sha",
        "arp_op",
        "ip_proto",
        "ipv4_src",
        "ipv4_dst",
        "tcp_src",
        "tcp_dst",
        "udp_src",
        "udp_dst",
        "icmpv4_type",
        "icmpv4_code",
        "ipv6_src",
        "ipv6_dst",
        "icmpv6_type",
        "icmpv6_code",
        "ipv6_nd_target",
        "ipv6_nd_sll",
        "ipv6_nd_tll",
    }
)
_CT = frozenset({"ct_state", "ct_zone", "ct_mark", "metadata"})
_REG = frozenset({REG_OUT_PORT, "vlan_vid"})
_ALL = (0, 65535)

BUILTIN_TABLES: tuple[TableSpec, ...] = (
    TableSpec(
        T_INGRESS,
        "ingress",
        {"ingress": (0, 1001), "mirror": (200, 1002), "router": (1003, 1004)},
        _L2 | _L3 | _TUNNEL,
        frozenset({"acl_port", "lb", "learn", "mirror", "uplink_in"}),
        Trap(LINKS, "lldp"),
    ),
    TableSpec(
        T_UPLINK_IN,
        "uplink_in",
        {"router": _ALL},
        _L2 | _L3,
        frozenset({"dnat"}),
        Trap("router", "uplink-arp"),
    ),
    TableSpec(T_DNAT, "dnat", {"router": _ALL}, _L2 | _L3 | _CT, frozenset({"dnat", "mirror", "forward"})),
    TableSpec(
        T_ACL_PORT,
        "acl_port",
        {"acl": (0, 65000), "lb": (65050, 65150)},
        _L2 | _L3 | _CT,
        frozenset({"acl_port", "acl_net", "lb", "dhcp", "route", "learn"}),
        Trap("lb", "lb-probe"),
    ),
    TableSpec(T_ACL_NET, "acl_net", {"acl": _ALL}, _L2 | _L3 | _CT, frozenset({"lb"})),
    TableSpec(T_LB, "lb", {"lb": _ALL}, _L2 | _L3 | _CT, frozenset({"lb", "acl_commit", "learn"})),
    TableSpec(T_ACL_COMMIT, "acl_commit", {"acl": _ALL}, _L2 | _CT, frozenset({"learn"})),
    TableSpec(T_DHCP, "dhcp", {"dhcp": _ALL}, _L2 | _L3, frozenset(), Trap("dhcp", "dhcp")),
    TableSpec(T_ROUTE, "route", {"router": _ALL}, _L2 | _L3, frozenset({"mirror", "forward"}), Trap("router", "arp")),
    TableSpec(T_LEARN, "learn", {"l2": _ALL}, _L2, frozenset(), Trap("l2", "learn", per_source=True)),
    TableSpec(T_MIRROR, "mirror", {"mirror": _ALL}, _L2, frozenset({"forward"})),
    TableSpec(
        T_FORWARD,
        "forward",
        {"l2": _ALL, "router": (10, 13)},
        _L2 | {"vlan_pcp"},
        frozenset({"flood", "egress", "uplink_out"}),
    ),
    TableSpec(T_FLOOD, "flood", {"flood": _ALL}, _L2, frozenset({"egress"})),
    TableSpec(T_EGRESS, "egress", {"ingress": (0, 0), "acl": (100, 200)}, _REG, frozenset({"acl_out_net", "output"})),
    TableSpec(
        T_ACL_OUT_NET,
        "acl_out_net",
        {"acl": _ALL},
        _L2 | _L3 | _CT | _REG | {"vlan_pcp"},
        frozenset({"acl_out_net", "egress_commit"}),
    ),
    TableSpec(T_ACL_OUT_PORT, "acl_out_port", {"acl": _ALL}, _L2 | _L3 | _CT | _REG),
    TableSpec(T_EGRESS_COMMIT, "egress_commit", {"acl": _ALL}, _L2 | _CT | _REG | {"vlan_pcp"}, frozenset({"output"})),
    TableSpec(T_UPLINK_OUT, "uplink_out", {"router": _ALL}, _L2 | _L3, frozenset({"snat"})),
    TableSpec(T_SNAT, "snat", {"router": _ALL}, _L2 | _L3 | _CT | {"vlan_pcp"}),
    TableSpec(T_OUTPUT, "output", {"ingress": _ALL}, _L2 | _REG),
)


class Pipeline:
    """The tables of the enabled apps, in id order, and the apps' cookie ids.

    Build it with :meth:`of`; every rule an app returns must pass
    :meth:`check_rule` (the core checks them as they are compiled).
    """

    def __init__(self, tables: Iterable[TableSpec], apps: Mapping[str, int]) -> None:
        self.tables = tuple(sorted(tables, key=lambda t: t.table_id))
        self.apps = dict(apps)
        self._by_id = {t.table_id: t for t in self.tables}
        self._by_name = {t.name: t for t in self.tables}
        self._app_names = {i: n for n, i in self.apps.items()}
        self._nexts = {t.table_id: self._allowed_next(t) for t in self.tables}
        self._fit: set[tuple[int, int, int, int | None, tuple[str, ...]]] = set()
        """(table, app, priority, goto, match fields) already found to fit: rules differ in values, rarely in shape."""

    def _allowed_next(self, spec: TableSpec) -> frozenset[int]:
        allowed = {self._by_name[n].table_id for n in spec.next_tables if n in self._by_name}
        following = self.next_table(spec.table_id)
        return frozenset(allowed | ({following} if following is not None else set()))

    @staticmethod
    def of(apps: Mapping[str, int], extra: Iterable[TableSpec] = ()) -> Pipeline:
        """The built-in tables some enabled app writes, plus ``extra`` (tables of third-party apps).

        Raises :class:`PipelineError` when two tables share an id or a name,
        or two apps share a cookie id.
        """
        if len(set(apps.values())) != len(apps):
            raise PipelineError(f"two apps share a cookie id: {dict(sorted(apps.items()))}")
        tables = [t for t in BUILTIN_TABLES if set(t.bands) & set(apps)] + list(extra)
        ids, names = [t.table_id for t in tables], [t.name for t in tables]
        if len(set(ids)) != len(ids) or len(set(names)) != len(names):
            raise PipelineError(f"tables clash: {sorted(zip(ids, names, strict=False))}")
        return Pipeline(tables, apps)

    def table(self, name: str) -> TableSpec:
        """The table called ``name``; raises KeyError if absent."""
        return self._by_name[name]

    def spec(self, table_id: int) -> TableSpec | None:
        return self._by_id.get(table_id)

    def has(self, name: str) -> bool:
        return name in self._by_name

    def next_table(self, table_id: int) -> int | None:
        """The id of the first present table after ``table_id``; None after the last."""
        return next((t.table_id for t in self.tables if t.table_id > table_id), None)

    def trap(self, table_id: int) -> Trap | None:
        spec = self.spec(table_id)
        return spec.trap if spec is not None else None

    def app_name(self, app_id: int) -> str:
        return self._app_names.get(app_id, str(app_id))

    def check_rule(self, rule: Rule) -> None:
        """Raise :class:`PipelineError` unless ``rule`` fits its table's declaration.

        Checks the table exists, the owner app may write it at that
        priority, every match field is allowed there, and ``goto`` /
        conntrack recirculation go only to a declared or the next table.
        """
        shape = (rule.table, rule.app, rule.priority, rule.goto, tuple([k for k, _ in rule.match]))
        if shape in self._fit:
            for nxt in _action_tables(rule.actions) if rule.actions else ():
                if nxt not in self._nexts[rule.table]:
                    raise PipelineError(f"table {self._by_id[rule.table].name} may not go to table {nxt}")
            return
        spec = self.spec(rule.table)
        if spec is None:
            raise PipelineError(f"rule for unknown table {rule.table}: {rule}")
        app = self.app_name(rule.app)
        band = spec.bands.get(app)
        if band is None:
            raise PipelineError(f"app {app} may not write table {spec.name}")
        if not band[0] <= rule.priority <= band[1]:
            raise PipelineError(
                f"app {app} may not use priority {rule.priority} in table {spec.name} (its band is {band[0]}-{band[1]})"
            )
        bad = sorted(k for k, _ in rule.match if k not in spec.match_fields)
        if bad:
            raise PipelineError(f"table {spec.name} does not match on {', '.join(bad)}")
        nexts = [rule.goto] if rule.goto is not None else []
        nexts += _action_tables(rule.actions)
        for nxt in nexts:
            if nxt not in self._nexts[spec.table_id]:
                raise PipelineError(f"table {spec.name} may not go to table {nxt}")
        self._fit.add(shape)

    def check_each(self, rules: Iterable[Rule]) -> None:
        """:meth:`check_rule` of every rule of ``rules``, the same checks for many rules at less cost:
        a rule of a known shape (table, app, priority, goto, match fields) costs one set look-up, and
        the tables an action tuple sends to are found once per tuple object.

        Raises :class:`PipelineError` for the first rule that does not fit (as :meth:`check_rule`).
        """
        fit, nexts = self._fit, self._nexts
        tables_of: dict[int, tuple[tuple[Action, ...], list[int]]] = {}
        """id -> (actions, the tables they go to); holding the tuple keeps its id valid meanwhile."""
        for rule in rules:
            shape = (rule.table, rule.app, rule.priority, rule.goto, tuple(map(_field_name, rule.match)))
            if shape not in fit:
                self.check_rule(rule)
                continue
            actions = rule.actions
            if not actions:
                continue
            known = tables_of.get(id(actions))
            if known is None or known[0] is not actions:
                known = tables_of[id(actions)] = (actions, _action_tables(actions))
            for nxt in known[1]:
                if nxt not in nexts[rule.table]:
                    raise PipelineError(f"table {self._by_id[rule.table].name} may not go to table {nxt}")

    def check_rules(self, rules: Iterable[Rule]) -> None:
        """Check every rule and that no two share (table, priority, match) with different content."""
        seen: dict[tuple[object, ...], Rule] = {}
        for rule in rules:
            self.check_rule(rule)
            key = (rule.table, rule.priority, rule.match)
            other = seen.setdefault(key, rule)
            if other != rule:
                raise PipelineError(f"conflicting rules for one match: {other} and {rule}")


_field_name = itemgetter(0)
"""A match field's name (``("in_port", 1)`` -> ``"in_port"``)."""


def _action_tables(actions: tuple[Action, ...]) -> list[int]:
    """Tables that ``actions`` send the packet to: conntrack recirculation and resubmits, nested ones too."""
    out: list[int] = []
    for a in actions:
        if isinstance(a, Ct) and a.recirc_table is not None:
            out.append(a.recirc_table)
        elif isinstance(a, Resubmit):
            out.append(a.table)
        elif isinstance(a, Clone):
            out += _action_tables(a.actions)
    return out


PIPELINE = Pipeline.of(BUILTIN_APPS)
"""The pipeline of every built-in app."""
