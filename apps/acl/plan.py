"""Which ACL list applies where, and how the ingress table tells the ACL tables.

An ACL *list* is the ordered tuple of ACL names a VM (``vms.X.acl_in``) or a
network (``networks.X.acl_in``) names. A list's rules are the concatenation
of its ACLs' rules, first match wins, no match denies (as in Faucet's
``acls_in``). Traffic a VM sends must be allowed by its own list *and* by
its network's list.

Each distinct list is compiled once and shared by every port using it: the
ingress table writes the list ids into the metadata register and the ACL
rules match on them. Ids are a stable digest of the list's names, so adding
or changing one ACL never renumbers another (a reload sends only what the
change touches).

Metadata layout (64 bits, declared in :mod:`controller.flows.pipeline`): bits 0-31 the VM's list id, bits 32-62 the
network's list id, bit 63 "a stateful rule allowed this packet". Id 0 means
"no list".
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from controller.config.model import Model, Network, Vm
from controller.flows.pipeline import METADATA_NET_SHIFT

AclList = tuple[str, ...]


def _ids(lists: set[AclList], width: int) -> dict[AclList, int]:
    """A stable non-zero id of ``width`` bits per list; collisions probe upward in list order."""
    out: dict[AclList, int] = {}
    used: set[int] = set()
    for names in sorted(lists):
        digest = hashlib.blake2b("\0".join(names).encode(), digest_size=8).digest()
        value = int.from_bytes(digest, "big") % ((1 << width) - 1) + 1
        while value in used:
            value = value % ((1 << width) - 1) + 1
        used.add(value)
        out[names] = value
    return out


@dataclass(frozen=True)
class AclPlan:
    """The ACL lists of a model and their ids.

    ``tracked_vlans`` are the networks whose IPv4 traffic goes through
    conntrack: those where a stateful rule applies or a load balancer lives,
    and every network on a router with such a network.
    """

    port_ids: Mapping[AclList, int]
    net_ids: Mapping[AclList, int]
    tracked_vlans: frozenset[int]

    def metadata(self, vm: Vm | None, net: Network) -> int | None:
        """The metadata ingress writes for a port of ``net`` (``vm`` if declared).

        ``None`` when the port's traffic needs no ACL table at all: no list
        applies and its network is not tracked.
        """
        port_id = self.port_ids.get(vm.acl_in, 0) if vm is not None and vm.acl_in else 0
        net_id = self.net_ids.get(net.acl_in, 0) if net.acl_in else 0
        if not port_id and not net_id and net.vlan not in self.tracked_vlans:
            return None
        return port_id | (net_id << METADATA_NET_SHIFT)


def plan_of(model: Model) -> AclPlan:
    """The :class:`AclPlan` of a validated model."""
    port_lists = {vm.acl_in for vm in model.vms if vm.acl_in}
    net_lists = {net.acl_in for net in model.networks if net.acl_in}
    stateful = {acl.name for acl in model.acls if any(r.stateful and r.action == "allow" for r in acl.rules)}
    tracked = {lb_vlan for lb_vlan in (model.network_by_name[lb.network].vlan for lb in model.load_balancers)}
    for net in model.networks:
        lists = [net.acl_in] + [vm.acl_in for vm in model.vms if vm.network == net.name]
        if any(name in stateful for names in lists for name in names):
            tracked.add(net.vlan)
    for router in model.routers:  # a connection crosses the router: both ends must see it in one zone
        vlans = {model.network_by_name[n].vlan for n in router.networks}
        if vlans & tracked:
            tracked |= vlans
    return AclPlan(_ids(port_lists, 32), _ids(net_lists, 31), frozenset(tracked))


def conntrack_zone(model: Model, vlan: int) -> int:
    """The conntrack zone of network ``vlan``: its VLAN id, or for a network on a router the
    smallest VLAN id of the router's networks, so a routed connection is one connection in one
    zone at both ends (a router's subnets do not overlap; a network is on one router at most)."""
    net = model.network_by_vlan.get(vlan)
    router = model.router_of.get(net.name) if net is not None else None
    if router is None:
        return vlan
    return min(model.network_by_name[n].vlan for n in router.networks)


class PlanCache:
    """:func:`plan_of` of the latest model, computed once per model (compared by identity)."""

    def __init__(self) -> None:
        self._last: tuple[Model, AclPlan] | None = None

    def __call__(self, model: Model) -> AclPlan:
        if self._last is None or self._last[0] is not model:
            self._last = (model, plan_of(model))
        return self._last[1]
