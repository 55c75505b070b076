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
from controller.fabric.protection import BackupKey, Hop
from controller.fabric.view import FabricView, Host
from controller.flows.pipeline import APP_L2, METER_PACKET_IN, PCP_DETOUR, T_FLOOD, T_FORWARD, T_LEARN
from controller.flows.rules import (
    FLAG_SEND_FLOW_REM,
    OFPP_CONTROLLER,
    OFPP_IN_PORT,
    OFPVID_PRESENT,
    Group,
    GroupEntry,
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


def static_rules(view: FabricView, dpid: int, after_learn: int) -> list[Rule]:
    """Miss rules of the learn and forward tables, and trunk bypass of learning.

    ``after_learn`` is the table after ``learn`` in the pipeline (``forward``
    unless an app inserted one between them).
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
    return rules


def host_key(host: Host) -> SegKey:
    return ("host", host.vlan, host.mac)


def host_rules(view: FabricView, host: Host, after_learn: int) -> dict[int, frozenset[Rule]]:
    """Rules of one learned host on every switch its network crosses."""
    vid = OFPVID_PRESENT | host.vlan
    timeout = int(round(view.model.controller.host_timeout))
    out: dict[int, frozenset[Rule]] = {}
    if host.dpid not in view.ports:
        return out
    out[host.dpid] = frozenset(
        {
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
    )
    for dpid, hop in sorted(view.routes(host.vlan, host.dpid).items()):
        if dpid != host.dpid:
            out[dpid] = frozenset(forward_rules(view, dpid, hop, vid, host.mac))
    return out


def forward_rules(view: FabricView, dpid: int, hop: Hop, vid: int, mac: str, app: int = APP_L2) -> list[Rule]:
    """Forward rules on ``dpid`` for ``mac`` behind another switch (owned by ``app``: the router's for its
    gateway MACs on the way to an uplink).

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
    match = make_match(vlan_vid=vid, eth_dst=mac)
    cross, vlan = view.crossing(dpid), vid & 0x0FFF
    if hop.alt is None:
        return [Rule(app, T_FORWARD, PRIO_HOST, match, cross.to_trunks([hop.port], vlan))]
    groups = view.backup_groups(dpid)
    keyed = cross.keyed(vlan, (hop.port, hop.alt))
    rules = [
        Rule(app, T_FORWARD, PRIO_HOST, match, keyed + (Group(groups[("ff", hop.port, hop.alt)]),)),
        Rule(
            app,
            T_FORWARD,
            PRIO_MARKED,
            make_match(vlan_vid=vid, eth_dst=mac, vlan_pcp=PCP_DETOUR),
            cross.to_trunks([hop.port], vlan),
        ),
    ]
    if hop.bounce:
        rules.append(
            Rule(
                app,
                T_FORWARD,
                PRIO_BOUNCE,
                make_match(in_port=hop.port, vlan_vid=vid, eth_dst=mac, vlan_pcp=PCP_DETOUR),
                cross.to_trunks([hop.alt], vlan),
            )
        )
    if hop.uturn:
        rules.append(
            Rule(
                app,
                T_FORWARD,
                PRIO_RETURN,
                make_match(in_port=hop.alt, vlan_vid=vid, eth_dst=mac),
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
    return {dpid: frozenset({Rule(APP_L2, T_LEARN, PRIO_PORT_FULL, make_match(in_port=port), goto=after_learn)})}
