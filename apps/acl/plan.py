"""Which ACL list applies where, and how the ingress table tells the ACL tables.

An ACL *list* is the ordered tuple of ACL names a VM (``vms.X.acl_in``,
``vms.X.acl_out``) or a network (``networks.X.acl_in``, ``networks.X.acl_out``)
names. A list's rules are the concatenation of its ACLs' rules, first match
wins, no match denies (as in Faucet's ``acls_in``). A packet must be allowed
by every list on its way: the sender's VM and network ``acl_in`` where it
enters, the receiver's network and VM ``acl_out`` where it is delivered.

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
from dataclasses import dataclass, field

from controller.config.model import LoadBalancer, Model, Network, Vm
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

    ``port_ids``/``net_ids`` are the ``acl_in`` lists of VMs and networks,
    ``out_port_ids``/``out_net_ids`` their ``acl_out`` lists (ids are per
    stage, so one list may have different ids in different stages).
    ``tracked_vlans`` are the networks whose IP traffic goes through
    conntrack, where it enters and where it is delivered: those where a
    stateful rule applies (in any list of the network or its VMs) or whose
    clients reach a load balancer's VIP (``balanced_vlans``: the balancer's
    own network and every network its router joins to it, where replies
    are un-NATed as they are delivered to the client).
    """

    port_ids: Mapping[AclList, int]
    net_ids: Mapping[AclList, int]
    tracked_vlans: frozenset[int]
    out_port_ids: Mapping[AclList, int] = field(default_factory=dict)
    out_net_ids: Mapping[AclList, int] = field(default_factory=dict)
    balanced_vlans: frozenset[int] = frozenset()

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

    def out_metadata(self, vm: Vm | None, net: Network) -> int | None:
        """The metadata the ``egress`` table writes for deliveries to a port of ``net`` (``vm`` if declared).

        ``None`` when deliveries there need no ACL table: no ``acl_out`` list
        applies and the network is not tracked.
        """
        port_id = self.out_port_ids.get(vm.acl_out, 0) if vm is not None and vm.acl_out else 0
        net_id = self.out_net_ids.get(net.acl_out, 0) if net.acl_out else 0
        if not port_id and not net_id and net.vlan not in self.tracked_vlans:
            return None
        return port_id | (net_id << METADATA_NET_SHIFT)


def _served(model: Model, lb: LoadBalancer) -> tuple[str, ...]:
    """Networks whose clients reach ``lb``'s VIP: its own, and every other network its router joins to it."""
    router = model.router_of.get(lb.network)
    return router.networks if router is not None else (lb.network,)


def plan_of(model: Model) -> AclPlan:
    """The :class:`AclPlan` of a validated model."""
    stateful = {acl.name for acl in model.acls if any(r.stateful and r.action == "allow" for r in acl.rules)}
    balanced = {model.network_by_name[name].vlan for lb in model.load_balancers for name in _served(model, lb)}
    tracked = set(balanced)
    for net in model.networks:
        members = [vm for vm in model.vms if vm.network == net.name]
        lists = [net.acl_in, net.acl_out] + [vm.acl_in for vm in members] + [vm.acl_out for vm in members]
        if any(name in stateful for names in lists for name in names):
            tracked.add(net.vlan)
    return AclPlan(
        port_ids=_ids({vm.acl_in for vm in model.vms if vm.acl_in}, 32),
        net_ids=_ids({net.acl_in for net in model.networks if net.acl_in}, 31),
        tracked_vlans=frozenset(tracked),
        out_port_ids=_ids({vm.acl_out for vm in model.vms if vm.acl_out}, 32),
        out_net_ids=_ids({net.acl_out for net in model.networks if net.acl_out}, 31),
        balanced_vlans=frozenset(balanced),
    )


class PlanCache:
    """:func:`plan_of` of the latest model, computed once per model (compared by identity)."""

    def __init__(self) -> None:
        self._last: tuple[Model, AclPlan] | None = None

    def __call__(self, model: Model) -> AclPlan:
        if self._last is None or self._last[0] is not model:
            self._last = (model, plan_of(model))
        return self._last[1]
