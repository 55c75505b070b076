"""Table-miss rules for tables whose app has nothing to say yet.

The ACL and load-balancer tables must pass traffic on when no policy is
declared; each owns its miss rule so its cookie space stays its own.
"""

from __future__ import annotations

from typing import Mapping

from apps.base import Segments, per_switch
from controller.fabric import FabricView, Host
from controller.pipeline import APP_ACL, APP_LB, T_ACL, T_LB, T_LEARN
from controller.rules import Rule


class AclPassthrough:
    """Table ``acl``: everything goes on to the lb table."""

    name = "acl"

    def compile(self, view: FabricView, hosts: Mapping[tuple[int, str], Host]) -> Segments:
        return per_switch("acl", view, lambda v, d: [Rule(APP_ACL, T_ACL, 0, goto=T_LB)])


class LbPassthrough:
    """Table ``lb``: everything goes on to the learn table."""

    name = "lb"

    def compile(self, view: FabricView, hosts: Mapping[tuple[int, str], Host]) -> Segments:
        return per_switch("lb", view, lambda v, d: [Rule(APP_LB, T_LB, 0, goto=T_LEARN)])
