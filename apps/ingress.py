"""Tables ``ingress`` and ``output``: where frames enter and leave the fabric at edge ports.

Table ``output`` ends every delivery to a VM port (see
:func:`controller.fabric.crossing.to_edges`): the frame loses its network's
tag and leaves by the port; table ``egress`` sends deliveries there unless
the ACL app claims the port (``acl_out``, conntrack at delivery).

Per switch, table ``ingress``:

- LLDP (0x88cc) goes to the controller before anything else, except on a
  declared VM port, where it drops: the controller is not probing there, and
  a VM forging our probe would otherwise make the controller see its port
  as a link to another switch and turn it into a trunk carrying every
  network's tagged traffic.
- An edge port accepts untagged frames and priority-tagged ones (an 802.1Q
  tag with VLAN id 0, which 802.1Q treats as untagged), tags them with its
  network's VLAN, writes which ACL lists apply into metadata and goes on to
  the ACL tables (or straight to the load balancer when no ACL applies and
  the network needs no conntrack). A priority tag is popped before the
  network's tag is pushed, so the VM's priority (and a drop-eligible bit)
  never enters the fabric, where VLAN priority 1 marks frames on backup
  paths (:data:`~controller.flows.pipeline.PCP_DETOUR`). Any other tag (a
  VM cannot hop networks by tagging) and a second tag behind a priority tag
  drop. :mod:`apps.portsec` says which frames a declared VM may send.
- A trunk port accepts the VLANs of the networks that use its link; that
  traffic was filtered at its first switch and goes straight to learning.
  A tunnel port accepts them only with the network's VNI as tunnel key
  (:class:`~controller.fabric.crossing.Crossing`).
- Anything else (undeclared port, tagged frame from a VM, spoofed source) drops.

OVS parses one VLAN header (its default ``other_config:vlan-limit=1``) and
OpenFlow cannot match a tag's TPID: a lone 802.1ad tag with VLAN id 0 is
taken for a priority tag and, popped and replaced, delivered like an
untagged frame; 802.1ad tags with another id drop like any tag.
"""

from __future__ import annotations

from apps.acl.plan import AclPlan, PlanCache
from apps.base import AppContext, Segments, per_switch
from apps.portsec import kinds
from controller.config.model import Vm
from controller.fabric.crossing import edge_output
from controller.fabric.view import FabricView, Interner, no_interning
from controller.flows.pipeline import (
    APP_INGRESS,
    METADATA_ALL,
    T_ACL_NET,
    T_ACL_PORT,
    T_EGRESS,
    T_INGRESS,
    T_LB,
    T_LEARN,
    T_OUTPUT,
)
from controller.flows.rules import (
    OFPP_CONTROLLER,
    OFPVID_NONE,
    OFPVID_PRESENT,
    Action,
    Output,
    PopVlan,
    PushVlan,
    Rule,
    SetField,
    make_match,
)
from controller.packets import ETH_LLDP, ETH_QINQ, ETH_VLAN

PRIO_VM_LLDP = 1001
PRIO_LLDP = 1000
PRIO_NESTED_TAG = 130
"""A second tag behind a priority tag (QinQ from a VM): dropped, above every port-security rule."""
PRIO_PORT = 100
PRIO_MISS = 0
LLDP_MAX_LEN = 512
PRIORITY_TAGGED = OFPVID_PRESENT
"""``vlan_vid`` of a frame whose 802.1Q tag carries VLAN id 0 (only a priority)."""
VIDS = (OFPVID_NONE, PRIORITY_TAGGED)
"""What an edge port admits: untagged and priority-tagged frames."""


def _tag(vlan: int, tagged: bool) -> tuple[Action, ...]:
    """Put a frame from an edge port on network ``vlan``: push its tag, or replace a priority tag.

    A pushed tag starts with priority 0, so popping a priority tag first
    also resets the priority (and the TPID to 802.1Q).
    """
    retag = (PopVlan(),) if tagged else ()
    return retag + (PushVlan(), SetField("vlan_vid", OFPVID_PRESENT | vlan))


def edge_port_rules(
    port: int,
    vlan: int,
    vm: Vm | None,
    metadata: int | None = None,
    unfiltered: int = T_LB,
    intern: Interner = no_interning,
) -> list[Rule]:
    """Rules admitting what ``vm`` (or anyone, when undeclared) may send on ``port``.

    Each kind of frame :func:`apps.portsec.kinds` admits is admitted untagged
    and priority-tagged. With ``metadata`` (the port's ACL list ids) admitted
    frames go to the ACL tables carrying it; without, to table ``unfiltered``
    (the first table after the ACL tables: the load balancer's when it is enabled).
    ``intern`` (:meth:`~controller.fabric.view.FabricView.intern`) shares the
    port's field, VLAN fields and tag actions among ports and switches; the
    kinds' fields come shared already (:func:`apps.portsec.kinds`): a VM's ~34
    rules hold its MAC and addresses once, every port's the common fields once.
    """
    rules = [
        Rule(APP_INGRESS, T_INGRESS, PRIO_NESTED_TAG, make_match(in_port=port, vlan_vid=PRIORITY_TAGGED, eth_type=tpid))
        for tpid in (ETH_VLAN, ETH_QINQ)
    ]
    goto, meta = (unfiltered, None) if metadata is None else (T_ACL_PORT, (metadata, METADATA_ALL))
    at_port = intern(("in_port", port))
    tags = {vid: (intern(("vlan_vid", vid)), intern(_tag(vlan, vid == PRIORITY_TAGGED))) for vid in VIDS}
    for kind in kinds(vm):  # its fields already shared: the VM's among its kinds, the constant ones by all
        fields = tuple(sorted(kind.fields + (at_port,)))  # what make_match builds, from shared fields
        if not kind.admit:  # a drop holds for any tag
            rules.append(Rule(APP_INGRESS, T_INGRESS, kind.priority, fields))
            continue
        vid_last = fields[-1][0] < "vlan_vid"  # then the sorted match ends with the VLAN field: no sort
        for vid_field, tag in tags.values():
            match = fields + (vid_field,) if vid_last else tuple(sorted(fields + (vid_field,)))
            # goto, no meter, no idle timeout, no flags, metadata: positional (keywords cost a dict a rule)
            rules.append(Rule(APP_INGRESS, T_INGRESS, kind.priority, match, tag, goto, None, 0, 0, meta))
    if vm is not None:  # no link is discovered on a VM's port (see the module docstring)
        rules.append(Rule(APP_INGRESS, T_INGRESS, PRIO_VM_LLDP, make_match(in_port=port, eth_type=ETH_LLDP)))
    return rules


def ingress_rules(view: FabricView, dpid: int, plan: AclPlan | None, unfiltered: int) -> list[Rule]:
    """All ingress-table rules of one switch.

    ``plan`` says which ACL lists apply where (None: the ACL app is off);
    ``unfiltered`` is where frames no ACL table must see go.
    """
    rules = [
        Rule(
            APP_INGRESS, T_INGRESS, PRIO_LLDP, make_match(eth_type=ETH_LLDP), (Output(OFPP_CONTROLLER, LLDP_MAX_LEN),)
        ),
        Rule(APP_INGRESS, T_INGRESS, PRIO_MISS),
        Rule(APP_INGRESS, T_EGRESS, PRIO_MISS, goto=T_OUTPUT),
        Rule(APP_INGRESS, T_OUTPUT, PRIO_MISS),
    ]
    for port, (net, vm) in view.edge_ports(dpid).items():
        metadata = plan.metadata(vm, net) if plan is not None else None
        rules += edge_port_rules(port, net.vlan, vm, metadata, unfiltered, view.intern)
        rules.append(edge_output(port, net.vlan))
    cross = view.crossing(dpid)
    for port in sorted(view.trunk_ports(dpid)):
        rules += [
            Rule(APP_INGRESS, T_INGRESS, PRIO_PORT, cross.from_trunk(port, vlan), goto=T_LEARN)
            for vlan in view.trunk_vlans(dpid, port)
        ]
    return rules


class Ingress:
    """Table ``ingress`` of every switch."""

    name = "ingress"
    app_id = APP_INGRESS
    static_compile = True
    """``compile`` reads only the view: the core may reuse its rules for an equal view (:mod:`controller.precompile`)."""

    def __init__(self, ctx: AppContext) -> None:
        self._plan = PlanCache()
        self.filtering = ctx.pipeline.has("acl_port")
        unfiltered = ctx.pipeline.next_table(T_ACL_NET)
        assert unfiltered is not None, "the pipeline has no table after the ACL tables"
        self.unfiltered = unfiltered

    def compile(self, view: FabricView) -> Segments:
        plan = None
        if self.filtering:
            plan = self._plan(view.model)
        return per_switch("ingress", view, lambda v, d: ingress_rules(v, d, plan, self.unfiltered))
