"""controller.fabric.transit: routes turned around per switch, shared hops mappings walked once."""

from __future__ import annotations

from controller.fabric.protection import Hop
from controller.fabric.transit import transit_by_switch


def test_transit_is_per_switch_then_destination_then_vlan_in_order() -> None:
    shared = {1: Hop(10), 2: Hop(20, 21), 3: Hop(0)}
    other = {1: Hop(11), 3: Hop(0)}
    routes = {300: {3: shared}, 100: {3: shared, 2: {1: Hop(12), 2: Hop(0)}}, 200: {3: other}}
    out = transit_by_switch(routes)
    assert out == {
        1: {2: {100: Hop(12)}, 3: {100: Hop(10), 200: Hop(11), 300: Hop(10)}},
        2: {3: {100: Hop(20, 21), 300: Hop(20, 21)}},
    }
    assert list(out[1]) == [2, 3] and list(out[1][3]) == [100, 200, 300]
    assert out[1][3][100] is out[1][3][300] is shared[1]
