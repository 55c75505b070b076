"""The ACL firewall app: compiles the model's ACL lists, counts their hits.

Semantics and tables: :mod:`apps.acl.compile`; which list applies where:
:mod:`apps.acl.plan`.
"""

from __future__ import annotations

from collections.abc import Mapping

from apps.acl.compile import (
    NET_STAGE,
    OUT_NET_STAGE,
    OUT_PORT_STAGE,
    PORT_STAGE,
    ListCompiler,
    Origin,
    Stage,
    base_rules,
)
from apps.acl.conntrack import conntrack_rules, delivery_rule, egress_conntrack_rules
from apps.acl.plan import AclList, AclPlan, PlanCache
from apps.base import AppContext, Segments
from controller.config.model import Model
from controller.fabric.view import FabricView
from controller.flows.pipeline import APP_ACL, T_ACL_COMMIT
from controller.metrics import StatCounter


class AclFirewall:
    """Static ACL rules per switch, one shared segment per ACL list, hit counters from flow stats."""

    name = "acl"
    app_id = APP_ACL
    static_compile = True
    """``compile`` reads only the view: the core may reuse its rules for an equal view (:mod:`controller.precompile`)."""

    def __init__(self, ctx: AppContext) -> None:
        self.compiler = ListCompiler()
        self.hits: StatCounter[int] = StatCounter(ctx.metrics.acl_rule_hits)
        self._plan = PlanCache()
        self._origins: tuple[Model, Mapping[int, Origin]] | None = None
        self._model: Model | None = None
        following = ctx.pipeline.next_table(T_ACL_COMMIT)
        assert following is not None, "the pipeline has no table after acl_commit"
        self.after_commit = following

    def plan(self, model: Model) -> AclPlan:
        """The ACL plan of ``model`` (cached for the latest model)."""
        return self._plan(model)

    def compile(self, view: FabricView) -> Segments:
        plan = self.plan(view.model)
        users: dict[tuple[Stage, AclList], set[int]] = {}
        segments: Segments = {}
        for dpid in view.dpids:
            edges = view.edge_ports(dpid)
            deliveries = []
            for port, (net, vm) in edges.items():
                for stage, names in (
                    (PORT_STAGE, vm.acl_in if vm else ()),
                    (NET_STAGE, net.acl_in),
                    (OUT_PORT_STAGE, vm.acl_out if vm else ()),
                    (OUT_NET_STAGE, net.acl_out),
                ):
                    if names:
                        users.setdefault((stage, names), set()).add(dpid)
                meta = plan.out_metadata(vm, net)
                if meta is not None:
                    deliveries.append(delivery_rule(port, meta))
            tracked = {net.vlan for net, _ in edges.values() if net.vlan in plan.tracked_vlans}
            here = base_rules(self.after_commit) + conntrack_rules(tracked, self.after_commit) + deliveries
            here += egress_conntrack_rules(tracked, plan.balanced_vlans)
            segments[("acl", dpid)] = {dpid: frozenset(here)}
        for stage, names, compiled in self.compiler.lists(view.model, plan):
            dpids = users.get((stage, names))
            if dpids:
                rules = frozenset(r for r, _ in compiled)
                segments[("acl-list", stage.table, names)] = {d: rules for d in sorted(dpids)}
        self._model = view.model
        return segments

    def origins(self, model: Model) -> Mapping[int, Origin]:
        """Cookie of every ACL-list flow of ``model`` -> the (ACL, rule) it stands for."""
        if self._origins is None or self._origins[0] is not model:
            self._origins = (model, self.compiler.origins(model, self.plan(model)))
        return self._origins[1]

    def flow_stats(self, dpid: int, packets: Mapping[int, int]) -> None:
        """Packet counts of this switch's ACL flows -> ``vmn_acl_rule_hits_total{acl, rule, direction}``."""
        if self._model is not None:
            self.hits.update(dpid, packets, self.origins(self._model))
