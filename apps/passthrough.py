"""Table-miss rule for the load-balancer table while no balancer is declared.

Traffic passes on to ``acl_commit``; the app owns its miss rule so its
cookie space stays its own.
"""

from __future__ import annotations

from typing import Mapping

from apps.base import Segments, per_switch
from controller.fabric import FabricView, Host
from controller.pipeline import APP_LB, T_ACL_COMMIT, T_LB
from controller.rules import Rule


class LbPassthrough:
    """Table ``lb``: everything goes on to ``acl_commit``."""

    name = "lb"

    def compile(self, view: FabricView, hosts: Mapping[tuple[int, str], Host]) -> Segments:
        return per_switch("lb", view, lambda v, d: [Rule(APP_LB, T_LB, 0, goto=T_ACL_COMMIT)])
