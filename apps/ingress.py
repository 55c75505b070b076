"""Table ``ingress``: classify each port into its network and enforce port security.

Per switch:

- LLDP (0x88cc) goes to the controller before anything else, except on a
  declared VM port, where it drops: the controller is not probing there, and
  a VM forging our probe would otherwise make the controller see its port
  as a link to another switch and turn it into a trunk carrying every
  network's tagged traffic.
- An edge port accepts only untagged frames (a VM cannot hop networks by
  tagging), tags them with its network's VLAN, writes which ACL lists apply
  into metadata and goes on to the ACL tables (or straight to the load
  balancer when no ACL applies and the network needs no conntrack). A declared VM
  with a ``mac`` may send only from that MAC; with an ``ip`` too, only ARP
  whose sender is that MAC and IP, and IPv4 from that IP.
- A trunk port accepts the VLANs of the networks that use its link; that
  traffic was filtered at its first switch and goes straight to learning.
- Anything else (undeclared port, tagged frame from a VM, spoofed source) drops.
"""

from __future__ import annotations

from typing import Optional

from apps.acl.plan import AclPlan, plan_of
from apps.base import AppContext, Segments, per_switch
from controller.config.model import Model, Vm
from controller.fabric.crossing import from_trunk
from controller.fabric.view import FabricView
from controller.flows.pipeline import (APP_INGRESS, METADATA_ALL, T_ACL_NET, T_ACL_PORT, T_INGRESS, T_LB,
                                       T_LEARN)
from controller.flows.rules import (OFPP_CONTROLLER, OFPVID_NONE, OFPVID_PRESENT, Output, PushVlan, Rule,
                                    SetField, make_match)
from controller.packets import ETH_ARP, ETH_IPV4, ETH_LLDP
PRIO_VM_LLDP = 1001
PRIO_LLDP = 1000
PRIO_PORT = 100
PRIO_MISS = 0
LLDP_MAX_LEN = 512


def _tag(vlan: int) -> tuple[PushVlan, SetField]:
    return (PushVlan(), SetField("vlan_vid", OFPVID_PRESENT | vlan))


def edge_port_rules(port: int, vlan: int, vm: Optional[Vm], metadata: Optional[int] = None,
                    unfiltered: int = T_LB) -> list[Rule]:
    """Rules admitting what ``vm`` (or anyone, when undeclared) may send on ``port``.

    With ``metadata`` (the port's ACL list ids) admitted frames go to the ACL
    tables carrying it; without, to table ``unfiltered`` (the first table
    after the ACL tables: the load balancer's when it is enabled).
    """
    base = dict(in_port=port, vlan_vid=OFPVID_NONE)
    mac = vm.mac if vm else None
    ip = str(vm.ip.ip) if vm and vm.ip else None
    if mac and ip:
        matches = [make_match(**base, eth_src=mac, eth_type=ETH_ARP, arp_sha=mac, arp_spa=ip),
                   make_match(**base, eth_src=mac, eth_type=ETH_IPV4, ipv4_src=ip)]
    else:
        matches = [make_match(**base, eth_src=mac)]
    if metadata is None:
        rules = [Rule(APP_INGRESS, T_INGRESS, PRIO_PORT, m, _tag(vlan), goto=unfiltered) for m in matches]
    else:
        rules = [Rule(APP_INGRESS, T_INGRESS, PRIO_PORT, m, _tag(vlan), goto=T_ACL_PORT,
                      write_metadata=(metadata, METADATA_ALL)) for m in matches]
    if vm is not None:  # no link is discovered on a VM's port (see the module docstring)
        rules.append(Rule(APP_INGRESS, T_INGRESS, PRIO_VM_LLDP, make_match(in_port=port, eth_type=ETH_LLDP)))
    return rules


def ingress_rules(view: FabricView, dpid: int, plan: Optional[AclPlan], unfiltered: int) -> list[Rule]:
    """All ingress-table rules of one switch.

    ``plan`` says which ACL lists apply where (None: the ACL app is off);
    ``unfiltered`` is where frames no ACL table must see go.
    """
    rules = [Rule(APP_INGRESS, T_INGRESS, PRIO_LLDP, make_match(eth_type=ETH_LLDP),
                  (Output(OFPP_CONTROLLER, LLDP_MAX_LEN),)),
             Rule(APP_INGRESS, T_INGRESS, PRIO_MISS)]
    for port, (net, vm) in view.edge_ports(dpid).items():
        metadata = plan.metadata(vm, net) if plan is not None else None
        rules += edge_port_rules(port, net.vlan, vm, metadata, unfiltered)
    for port in sorted(view.trunk_ports(dpid)):
        rules += [Rule(APP_INGRESS, T_INGRESS, PRIO_PORT, from_trunk(port, vlan), goto=T_LEARN)
                  for vlan in view.trunk_vlans(dpid, port)]
    return rules


class Ingress:
    """Table ``ingress`` of every switch."""

    name = "ingress"
    app_id = APP_INGRESS

    def __init__(self, ctx: AppContext) -> None:
        self._plan: Optional[tuple[Model, AclPlan]] = None
        self.filtering = ctx.pipeline.has("acl_port")
        unfiltered = ctx.pipeline.next_table(T_ACL_NET)
        assert unfiltered is not None, "the pipeline has no table after the ACL tables"
        self.unfiltered = unfiltered

    def compile(self, view: FabricView) -> Segments:
        plan = None
        if self.filtering:
            if self._plan is None or self._plan[0] is not view.model:
                self._plan = (view.model, plan_of(view.model))
            plan = self._plan[1]
        return per_switch("ingress", view, lambda v, d: ingress_rules(v, d, plan, self.unfiltered))
