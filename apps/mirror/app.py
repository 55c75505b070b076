"""The port mirroring app (``mirrors`` in the network file): a tap port gets copies of VMs' traffic.

Rules: :mod:`apps.mirror.rules`. The app has no runtime state: it only
compiles. It was added without a change to the core or the shim: its
table and bands are declared in the pipeline, its class in :data:`apps.BUILTIN`.
"""

from __future__ import annotations

from apps.base import AppContext, Segments
from apps.mirror.rules import mirrored, tap_rules, taps, vm_rules
from controller.fabric.view import FabricView
from controller.flows.pipeline import APP_MIRROR, T_MIRROR
from controller.flows.rules import Rule


class MirrorApp:
    """Table ``mirror`` (and the mirror band of ``ingress``) on every switch."""

    name = "mirror"
    app_id = APP_MIRROR
    static_compile = True
    """``compile`` reads only the view: the core may reuse its rules for an equal view (:mod:`controller.precompile`)."""

    def __init__(self, ctx: AppContext) -> None:
        following = ctx.pipeline.next_table(T_MIRROR)
        assert following is not None, "the pipeline has no table after mirror"
        self.after = following

    def compile(self, view: FabricView) -> Segments:
        found = taps(view)
        vms = mirrored(view, found)
        return {
            ("mirror", dpid): {
                dpid: frozenset(
                    [Rule(APP_MIRROR, T_MIRROR, 0, goto=self.after)]
                    + vm_rules(view, vms, dpid, self.after)
                    + tap_rules(view, found, dpid)
                )
            }
            for dpid in view.dpids
        }
