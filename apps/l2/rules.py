"""L2 switching: MAC learning from packet-ins and proactive forwarding rules.

Table ``learn`` admits a known (VLAN, source MAC, port) straight on;
anything else is copied (truncated, metered) to the controller and still
forwarded, so learning never delays traffic. Frames arriving on trunks are
learned at their edge switch, never here. Table ``forward`` sends a known
destination along the shortest path; a miss goes to the flood table.
Where a backup path exists (see :mod:`controller.fabric.protection`) the frame
goes to a fast-failover group instead of a port: while the primary link is
down the switch itself takes the backup, before the controller knows. The
groups are shared by content (primary and backup port), not per host.

A learned host's source rule carries ``idle_timeout = host_timeout`` and
asks for a flow-removed message: the switch tells us when a host fell
silent, which expires it everywhere.
"""

from __future__ import annotations

from apps.base import SegKey
from controller.fabric.crossing import to_edges
from controller.fabric.labels import label_mac, switch_match
from controller.fabric.protection import BackupKey, Hop
from controller.fabric.view import FabricView, Host
from controller.flows.pipeline import APP_L2, METER_PACKET_IN, PCP_DETOUR, T_FLOOD, T_FORWARD, T_LEARN
from controller.flows.rules import (
    FLAG_SEND_FLOW_REM,
    OFPP_CONTROLLER,
    OFPP_IN_PORT,
    OFPVID_PRESENT,
    Action,
    Group,
    GroupEntry,
    MatchValue,
    Output,
    Rule,
    SetField,
    make_match,
)

PRIO_HOST = 10
PRIO_RETURN = 11
PRIO_MARKED = 12
PRIO_BOUNCE = 13
PRIO_TRUNK = 20
PRIO_PORT_FULL = 30
PACKET_IN_MAX_LEN = 128


PRIO_LABEL = 5
PRIO_LABEL_RETURN = 6
PRIO_LABEL_MARKED = 7
PRIO_LABEL_BOUNCE = 8
PER_HOST = (PRIO_HOST, PRIO_RETURN, PRIO_MARKED, PRIO_BOUNCE)
"""Priorities of a hop's rules for one host's MAC: plain, back from a U-turn, marked, bounced."""
PER_LABEL = (PRIO_LABEL, PRIO_LABEL_RETURN, PRIO_LABEL_MARKED, PRIO_LABEL_BOUNCE)
"""The same for a destination switch's label MACs (below every exact MAC)."""
ANY_VLAN = (OFPVID_PRESENT, OFPVID_PRESENT)


def static_rules(view: FabricView, dpid: int, after_learn: int) -> list[Rule]:
    """Miss rules of the learn and forward tables, trunk bypass of learning, and label forwarding.

    ``after_learn`` is the table after ``learn`` in the pipeline (``forward``
    unless an app inserted one between them); the forward table holds
    :func:`label_rules`.
    """
    rules = [
        Rule(
            APP_L2,
            T_LEARN,
            0,
            (),
            (Output(OFPP_CONTROLLER, PACKET_IN_MAX_LEN),),
            goto=after_learn,
            meter=METER_PACKET_IN,
        ),
        Rule(APP_L2, T_FORWARD, 0, goto=T_FLOOD),
    ]
    rules += [
        Rule(APP_L2, T_LEARN, PRIO_TRUNK, make_match(in_port=p), goto=after_learn)
        for p in sorted(view.trunk_ports(dpid))
    ]
    return rules + label_rules(view, dpid)


def label_rules(view: FabricView, dpid: int) -> list[Rule]:
    """Forwarding of labelled frames on ``dpid``: by destination switch, whatever the host.

    One set of hop rules per destination switch when every network
    forwards there alike and no tunnel is involved (a tunnel needs the
    network's VNI); else one set per network (matching its VLAN id).

    A frame with one of ``dpid``'s own label MACs that no host's rule
    claims (the host expired or moved while the frame was on its way) is
    dropped: flooded, it would go to every port of its network with a
    destination MAC no host has. Every host's own MAC (a host whose MAC
    lies in the label space is forwarded by it, unlabelled) has rules at
    higher priority, so this drops nothing addressed to a known host.
    """
    cross = view.crossing(dpid)
    rules: list[Rule] = []
    own = view.labels.get(dpid)
    if own is not None:
        rules.append(Rule(APP_L2, T_FORWARD, PRIO_LABEL, make_match(eth_dst=switch_match(own))))
    for dst, by_vlan in view.transit_hops(dpid).items():
        label = view.labels.get(dst)
        if label is None:
            continue
        eth_dst = switch_match(label)
        hops = set(
            {id(h): h for h in by_vlan.values()}.values()
        )  # mostly one object: hashed once (Hop's hash is Python)
        tunnel = any(p in cross.tunnels for h in hops for p in (h.port, h.alt) if p is not None)
        if len(hops) == 1 and not tunnel:
            rules += hop_rules(view, dpid, next(iter(hops)), (0, ANY_VLAN), eth_dst, PER_LABEL)
        else:
            for vlan, hop in by_vlan.items():
                rules += hop_rules(view, dpid, hop, (vlan, OFPVID_PRESENT | vlan), eth_dst, PER_LABEL)
    return rules


def host_key(host: Host) -> SegKey:
    return ("host", host.vlan, host.mac)


def host_rules(view: FabricView, host: Host, after_learn: int, labelled: bool = True) -> dict[int, frozenset[Rule]]:
    """Rules of one learned host on every switch its network enters the fabric at (or crosses).

    Labelled (:mod:`controller.fabric.labels`): where the network enters the
    fabric, the host's MAC becomes its label MAC and goes toward its switch;
    there it becomes the host's MAC again and is delivered. Unlabelled (a
    host sharing its label MAC with another): a rule per switch on the way.

    An entry switch's rule labels a frame to the host, then sends it out of
    its hop's port or backup group; entry switches whose hops send alike
    (equal action tails) share one rule object and one set holding it (a
    one-rule frozenset is 216 bytes), built once.
    """
    vid = OFPVID_PRESENT | host.vlan
    timeout = int(round(view.model.controller.host_timeout))
    out: dict[int, frozenset[Rule]] = {}
    if host.dpid not in view.ports:
        return out
    label = view.labels.get(host.dpid) if labelled else None
    here = {
        Rule(
            APP_L2,
            T_LEARN,
            PRIO_HOST,
            make_match(in_port=host.port, vlan_vid=vid, eth_src=host.mac),
            goto=after_learn,
            idle_timeout=timeout,
            flags=FLAG_SEND_FLOW_REM,
        ),
        Rule(APP_L2, T_FORWARD, PRIO_HOST, make_match(vlan_vid=vid, eth_dst=host.mac), to_edges([host.port])),
    }
    routes = view.routes(host.vlan, host.dpid)
    if label is None:
        out[host.dpid] = frozenset(here)
        for dpid, hop in sorted(routes.items()):
            if dpid != host.dpid:
                out[dpid] = frozenset(forward_rules(view, dpid, hop, vid, host.mac))
        return out
    relabel = label_mac(label, host.mac)
    here.add(
        Rule(
            APP_L2,
            T_FORWARD,
            PRIO_HOST,
            make_match(vlan_vid=vid, eth_dst=relabel),
            (SetField("eth_dst", host.mac),) + to_edges([host.port]),
        )
    )
    out[host.dpid] = frozenset(here)
    match = (("eth_dst", host.mac), ("vlan_vid", vid))
    relabelled = (SetField("eth_dst", relabel),)
    for tail, dpids in _entries_toward(view, host.vlan, host.dpid):
        out.update(dict.fromkeys(dpids, frozenset((Rule(APP_L2, T_FORWARD, PRIO_HOST, match, relabelled + tail),))))
    return out


def _entries_toward(view: FabricView, vlan: int, dst: int) -> list[tuple[tuple[Action, ...], tuple[int, ...]]]:
    """The entry switches of network ``vlan`` with a route to its member ``dst``, grouped by their
    entry rule's action tail (:func:`_entry_tail`), in dpid order: computed once per snapshot."""
    memo = view.memo
    key = ("l2-entries", vlan, dst)
    found = memo.get(key)
    if found is None:
        tails: dict[tuple[int, int, int | None], tuple[Action, ...]] = memo.setdefault(("l2-entry", vlan), {})  # type: ignore[assignment]
        groups: dict[int, tuple[tuple[Action, ...], list[int]]] = {}
        for where, hop in _entry_hops(view, vlan, dst):
            tail = tails.get(where)
            if tail is None:
                tail = tails[where] = _entry_tail(view, where[0], hop, vlan)
            group = groups.get(id(tail))
            if group is None:
                groups[id(tail)] = (tail, [where[0]])
            else:
                group[1].append(where[0])
        found = memo[key] = [(tail, tuple(dpids)) for tail, dpids in groups.values()]
    return found  # type: ignore[return-value]


def _entry_hops(view: FabricView, vlan: int, dst: int) -> list[tuple[tuple[int, int, int | None], Hop]]:
    """((dpid, primary port, backup port), hop) of each entry switch of network ``vlan`` (but ``dst``) with
    a route to ``dst``, in dpid order. Networks that route alike (one hops mapping, see
    ``FabricView._routes_memo``) on the same entry switches share one list: computed once per snapshot."""
    routes = view.routes(vlan, dst)
    if not routes:
        return []
    entries = view.fabric(vlan).entries
    key = ("l2-entry-hops", id(routes), dst, entries)  # the view holds ``routes``: its id stays its own
    found = view.memo.get(key)
    if found is None:
        found = view.memo[key] = [
            ((dpid, hop.port, hop.alt), hop)
            for dpid in sorted(entries)
            if dpid != dst and (hop := routes.get(dpid)) is not None
        ]
    return found  # type: ignore[return-value]


def _entry_tail(view: FabricView, dpid: int, hop: Hop, vlan: int) -> tuple[Action, ...]:
    """The actions of an entry rule after its relabelling (all they depend on: ``dpid``, the hop's ports
    and ``vlan``): one tuple object for every equal tail of the snapshot (:meth:`FabricView.intern`)."""
    cross = view.crossing(dpid)
    if hop.alt is None:
        return view.intern(cross.to_trunks([hop.port], vlan))
    group = view.backup_groups(dpid)[("ff", hop.port, hop.alt)]
    return view.intern(cross.keyed(vlan, (hop.port, hop.alt)) + (Group(group),))


def forward_rules(view: FabricView, dpid: int, hop: Hop, vid: int, mac: str, app: int = APP_L2) -> list[Rule]:
    """Forward rules on ``dpid`` for ``mac`` behind another switch (an unlabelled host; owned by ``app``:
    the router's for its gateway MACs on the way to an uplink)."""
    return hop_rules(view, dpid, hop, (vid & 0x0FFF, vid), mac, PER_HOST, app)


def hop_rules(
    view: FabricView,
    dpid: int,
    hop: Hop,
    vlan: tuple[int, MatchValue],
    eth_dst: MatchValue,
    prios: tuple[int, int, int, int],
    app: int = APP_L2,
) -> list[Rule]:
    """Forward rules on ``dpid`` for frames to ``eth_dst`` (a MAC, or a switch's label MACs) along ``hop``.

    ``vlan`` is (network VLAN id for the tunnel key, ``vlan_vid`` match);
    ``prios`` are those of the plain, returned, marked and bounced rules.
    Unprotected: out of the primary port. Protected: to the fast-failover
    group (the primary port while live, else the backup, the frame marked
    ``vlan_pcp`` 1 on the way). A marked frame never takes a backup again:
    it goes out of the primary port or drops, except that a U-turn switch
    sends marked frames from its parent (its primary port) on to its
    backup. A switch whose backup is a U-turn sends frames that come back
    from there to the group that returns them, marked, out of their in-port.
    So a frame makes at most one detour: down a U-turn chain, across one
    link, then up the tree; whatever is cut, it never loops.
    """
    net, vid = vlan
    plain, back, marked, bounce = prios
    match = make_match(vlan_vid=vid, eth_dst=eth_dst)
    cross = view.crossing(dpid)
    if hop.alt is None:
        return [Rule(app, T_FORWARD, plain, match, cross.to_trunks([hop.port], net))]
    groups = view.backup_groups(dpid)
    keyed = cross.keyed(net, (hop.port, hop.alt))
    rules = [
        Rule(app, T_FORWARD, plain, match, keyed + (Group(groups[("ff", hop.port, hop.alt)]),)),
        Rule(
            app,
            T_FORWARD,
            marked,
            make_match(vlan_vid=vid, eth_dst=eth_dst, vlan_pcp=PCP_DETOUR),
            cross.to_trunks([hop.port], net),
        ),
    ]
    if hop.bounce:
        rules.append(
            Rule(
                app,
                T_FORWARD,
                bounce,
                make_match(in_port=hop.port, vlan_vid=vid, eth_dst=eth_dst, vlan_pcp=PCP_DETOUR),
                cross.to_trunks([hop.alt], net),
            )
        )
    if hop.uturn:
        rules.append(
            Rule(
                app,
                T_FORWARD,
                back,
                make_match(in_port=hop.alt, vlan_vid=vid, eth_dst=eth_dst),
                keyed + (Group(groups[("back", hop.port, hop.alt)]),),
            )
        )
    return rules


def backup_group(key: BackupKey, group_id: int) -> GroupEntry:
    """The fast-failover group of ``key``: the primary port while it is live, else the backup, marked."""
    kind, primary, backup = key
    fallback = Output(OFPP_IN_PORT) if kind == "back" else Output(backup)
    return GroupEntry(
        APP_L2,
        group_id,
        "ff",
        ((0, primary, (Output(primary),)), (0, backup, (SetField("vlan_pcp", PCP_DETOUR), fallback))),
    )


def port_full_key(dpid: int, port: int) -> SegKey:
    return ("port-full", dpid, port)


def port_full_rules(dpid: int, port: int, after_learn: int) -> dict[int, frozenset[Rule]]:
    """Stop learning on a port that reached its host cap (a MAC flood).

    Frames from the port skip the learn lookup: no packet-in, and no
    per-source-MAC megaflows in the datapath, so a flood of new MACs costs
    the switch one cached flow instead of one upcall per frame. Hosts already
    learned there keep being forwarded to; their learn rules idle out, and
    learning resumes once the port is below its cap again.
    """
    return {
        dpid: frozenset(
            {
                Rule(APP_L2, T_LEARN, PRIO_PORT_FULL, make_match(in_port=port), goto=after_learn),
            }
        )
    }
