"""Port mirroring rules: copies of mirrored VMs' frames toward their tap port.

Where a mirrored VM's switch forwards its frames (table ``mirror``, between
``learn`` and ``forward``), matching frames are copied and then go on
unchanged:

- ``out`` (what the VM sends): frames from the VM's port;
- ``in`` (what is delivered to it): frames to its MAC, and broadcast or
  multicast frames of its network not sent by itself.

A copy for a tap on the same switch leaves the tap port untagged. A copy
for a tap on another switch is re-tagged with the mirror's own VLAN
(:func:`mirror_vlans`) and follows the shortest path there: each switch on
the way accepts that VLAN on the trunk it arrives on (table ``ingress``)
and passes it on (table ``mirror``); the tap's switch pops the tag and
outputs it on the tap port. The tap port itself can send nothing: every
frame from it drops in ``ingress``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from controller.config.model import Model
from controller.fabric.labels import label_mac
from controller.fabric.view import FabricView
from controller.flows.pipeline import APP_MIRROR, T_INGRESS, T_MIRROR
from controller.flows.rules import (
    OFPP_IN_PORT,
    OFPVID_PRESENT,
    Action,
    Match,
    Output,
    PopVlan,
    PushVlan,
    Rule,
    SetField,
    make_match,
)

PRIO_TAP_DROP = 1002
PRIO_TRANSIT_IN = 200
PRIO_TRANSIT = 50
PRIO_PAIR = 40
PRIO_FROM_VM_GROUP = 35
PRIO_FROM_VM = 30
PRIO_TO_VM = 20
PRIO_TO_GROUP = 10
GROUP_MAC = ("01:00:00:00:00:00", "01:00:00:00:00:00")
"""Ethernet destination with the group (I/G) bit set: broadcast and multicast (IEEE 802)."""
TOP_VLAN = 4094


@dataclass(frozen=True)
class Tap:
    """A mirror as the fabric sees it: its switch, port and VLAN across trunks."""

    name: str
    dpid: int
    port: int
    vlan: int


@dataclass(frozen=True)
class Mirrored:
    """A mirrored VM on a connected switch, with the taps of each direction."""

    dpid: int
    port: int
    vlan: int
    mac: str | None
    out: tuple[Tap, ...]
    into: tuple[Tap, ...]


def mirror_vlans(model: Model) -> dict[str, int]:
    """A VLAN id per mirror: from 4094 down in mirror-name order, skipping networks' VLANs."""
    used = {net.vlan for net in model.networks}
    out: dict[str, int] = {}
    vlan = TOP_VLAN
    for mirror in model.mirrors:
        while vlan in used:
            vlan -= 1
        out[mirror.name] = vlan
        used.add(vlan)
    return out


def taps(view: FabricView) -> list[Tap]:
    """The mirrors whose switch is connected and port known."""
    vlans = mirror_vlans(view.model)
    out = []
    for mirror in view.model.mirrors:
        dpid = view.model.switch_by_name[mirror.switch].dpid
        port = view.port_number(dpid, mirror.port) if dpid in view.ports else None
        if port is not None:
            out.append(Tap(mirror.name, dpid, port, vlans[mirror.name]))
    return out


def mirrored(view: FabricView, found: list[Tap]) -> list[Mirrored]:
    """Every mirrored VM on a connected switch with its taps, in VM-name order."""
    by_name = {t.name: t for t in found}
    wanted: dict[str, tuple[list[Tap], list[Tap]]] = {}
    for mirror in view.model.mirrors:
        tap = by_name.get(mirror.name)
        if tap is None:
            continue
        for vm_name in mirror.vms:
            out, into = wanted.setdefault(vm_name, ([], []))
            if mirror.direction in ("out", "both"):
                out.append(tap)
            if mirror.direction in ("in", "both"):
                into.append(tap)
    result = []
    for vm_name, (out, into) in sorted(wanted.items()):
        vm = view.model.vm_by_name[vm_name]
        dpid = view.model.switch_by_name[vm.switch].dpid
        port = view.port_number(dpid, vm.port) if dpid in view.ports else None
        if port is not None and port in view.edge_ports(dpid):
            vlan = view.model.network_by_name[vm.network].vlan
            result.append(Mirrored(dpid, port, vlan, vm.mac, tuple(out), tuple(into)))
    return result


def copy_to(view: FabricView, dpid: int, vlan: int, tap: Tap, in_port: int | None = None) -> tuple[Action, ...]:
    """Actions copying a frame of network ``vlan`` (tagged, in the pipeline of ``dpid``) to ``tap``.

    They restore the frame's tag afterwards, so the original goes on
    unchanged. ``in_port`` (when known) lets a copy leave through the port
    the frame came in on. Empty when no path leads to the tap's switch.
    """
    tag = SetField("vlan_vid", OFPVID_PRESENT | vlan)
    if tap.dpid == dpid:
        return (PopVlan(), Output(tap.port), PushVlan(), tag)
    port = view.next_hop_port(dpid, tap.dpid)
    if port is None:
        return ()
    out = Output(OFPP_IN_PORT if port == in_port else port)
    keyed = view.crossing(dpid).keyed(tap.vlan, [port])
    return (SetField("vlan_vid", OFPVID_PRESENT | tap.vlan), *keyed, out, tag)


def _copy_rule(
    view: FabricView,
    dpid: int,
    vlan: int,
    priority: int,
    match: Match,
    targets: Iterable[Tap],
    after: int,
    in_port: int | None = None,
    first: tuple[Action, ...] = (),
) -> Rule:
    actions = first + tuple(
        a for tap in sorted(set(targets), key=lambda t: t.name) for a in copy_to(view, dpid, vlan, tap, in_port)
    )
    return Rule(APP_MIRROR, T_MIRROR, priority, match, actions, goto=after)


def vm_rules(view: FabricView, vms: list[Mirrored], dpid: int, after: int) -> list[Rule]:
    """Table ``mirror`` rules on ``dpid`` for the mirrored VMs there."""
    here = [m for m in vms if m.dpid == dpid]
    rules: list[Rule] = []
    for a in here:
        vid = OFPVID_PRESENT | a.vlan
        others = [b for b in here if b is not a and b.vlan == a.vlan]
        group = a.out + tuple(t for b in others for t in b.into)
        rules.append(
            _copy_rule(
                view,
                dpid,
                a.vlan,
                PRIO_FROM_VM_GROUP,
                make_match(in_port=a.port, vlan_vid=vid, eth_dst=GROUP_MAC),
                group,
                after,
            )
        )
        if a.out:
            rules.append(
                _copy_rule(view, dpid, a.vlan, PRIO_FROM_VM, make_match(in_port=a.port, vlan_vid=vid), a.out, after)
            )
            rules += [
                _copy_rule(
                    view,
                    dpid,
                    a.vlan,
                    PRIO_PAIR,
                    make_match(in_port=a.port, vlan_vid=vid, eth_dst=b.mac),
                    a.out + b.into,
                    after,
                )
                for b in others
                if b.into and b.mac
            ]
    by_vlan: dict[int, list[Tap]] = {}
    for b in here:
        if b.into and b.mac:
            by_vlan.setdefault(b.vlan, []).extend(b.into)
            rules += _to_vm(
                view,
                dpid,
                b.vlan,
                PRIO_TO_VM,
                make_match(vlan_vid=OFPVID_PRESENT | b.vlan, eth_dst=b.mac),
                b.into,
                after,
            )
            label = view.labels.get(dpid)
            if label is not None:  # from another switch its frames carry its label MAC: the MAC back first
                rules += _to_vm(
                    view,
                    dpid,
                    b.vlan,
                    PRIO_TO_VM,
                    make_match(vlan_vid=OFPVID_PRESENT | b.vlan, eth_dst=label_mac(label, b.mac)),
                    b.into,
                    after,
                    (SetField("eth_dst", b.mac),),
                )
    for vlan, group_taps in sorted(by_vlan.items()):
        rules += _to_vm(
            view,
            dpid,
            vlan,
            PRIO_TO_GROUP,
            make_match(vlan_vid=OFPVID_PRESENT | vlan, eth_dst=GROUP_MAC),
            group_taps,
            after,
        )
    return rules


def _to_vm(
    view: FabricView,
    dpid: int,
    vlan: int,
    priority: int,
    match: Match,
    targets: Iterable[Tap],
    after: int,
    first: tuple[Action, ...] = (),
) -> list[Rule]:
    """A copy rule for frames that may come from any port, plus variants for trunks toward a tap.

    ``first`` are actions before the copies (which the frame keeps as it goes on).
    """
    targets = list(targets)
    rules = [_copy_rule(view, dpid, vlan, priority, match, targets, after, first=first)]
    toward = sorted({p for t in targets if t.dpid != dpid for p in [view.next_hop_port(dpid, t.dpid)] if p is not None})
    for port in toward:
        rules.append(
            _copy_rule(
                view,
                dpid,
                vlan,
                priority + 1,
                tuple(sorted(match + (("in_port", port),))),
                targets,
                after,
                in_port=port,
                first=first,
            )
        )
    return rules


def tap_rules(view: FabricView, found: list[Tap], dpid: int) -> list[Rule]:
    """Rules carrying mirror VLANs through ``dpid`` to their tap, and the taps' drop there."""
    rules = [Rule(APP_MIRROR, T_INGRESS, PRIO_TAP_DROP, make_match(in_port=t.port)) for t in found if t.dpid == dpid]
    trunks = sorted(view.trunk_ports(dpid))
    cross = view.crossing(dpid)
    for tap in found:
        vid = OFPVID_PRESENT | tap.vlan
        if tap.dpid == dpid:
            actions: tuple[Action, ...] = (PopVlan(), Output(tap.port))
        else:
            port = view.next_hop_port(dpid, tap.dpid)
            if port is None:
                continue
            actions = (*cross.keyed(tap.vlan, [port]), Output(port))
        rules += [
            Rule(APP_MIRROR, T_INGRESS, PRIO_TRANSIT_IN, cross.from_trunk(p, tap.vlan), goto=T_MIRROR) for p in trunks
        ]
        rules.append(Rule(APP_MIRROR, T_MIRROR, PRIO_TRANSIT, make_match(vlan_vid=vid), actions))
    return rules
