"""Learned hosts follow their port: port down, port deleted, switch gone -> forgotten at once, re-learned where seen."""

from __future__ import annotations

from controller.fabric.topology import LinkKey, PortInfo
from tests.unit.fabric_helpers import BCAST, Harness, mac, model_from, outputs

TWO = """
controller: {host_timeout: 300}
switches: {s1: {dpid: 1}, s2: {dpid: 2}}
links: [[s1:10, s2:10]]
networks: {red: {vlan: 100}}
vms:
  a: {switch: s1, port: 1, network: red}
  b: {switch: s2, port: 1, network: red}
  roam: {switch: s2, port: 2, network: red}
"""


def harness() -> Harness:
    h = Harness(model_from(TWO), {1: [1, 10], 2: [1, 2, 10]}, [LinkKey.of(1, 10, 2, 10)])
    h.send(1, 1, mac(1), BCAST)
    h.send(2, 1, mac(2), BCAST)
    return h


def forward_rules_for(h: Harness, address: str) -> list[int]:
    """Connected switches holding a forward rule toward ``address``."""
    return sorted(
        d
        for d, rules in h.flows.items()
        if d in h.core.ready
        for r in rules.values()
        if ("eth_dst", address) in r.match
    )


def test_port_down_forgets_its_hosts_everywhere_at_once() -> None:
    h = harness()
    assert (100, mac(1)) in h.hosts and forward_rules_for(h, mac(1)) == [1, 2]
    h.port_changed(1, PortInfo(1, "p1", up=False))
    assert (100, mac(1)) not in h.hosts
    assert forward_rules_for(h, mac(1)) == []
    # The same MAC showing up on another port is learned there, as new, at once.
    trace = h.send(2, 2, mac(1), BCAST)
    assert trace.to_controller and h.hosts[(100, mac(1))].dpid == 2
    assert outputs(h.send(2, 1, mac(2), mac(1))) == {(2, 2)}


def test_port_deleted_forgets_its_hosts() -> None:
    h = harness()
    h.port_changed(2, PortInfo(1, "p1"), deleted=True)
    assert (100, mac(2)) not in h.hosts and forward_rules_for(h, mac(2)) == []


def test_switch_disconnected_forgets_its_hosts_and_reconnect_relearns() -> None:
    h = harness()
    h.disconnect(2)
    assert (100, mac(2)) not in h.hosts and forward_rules_for(h, mac(2)) == []
    assert (100, mac(1)) in h.hosts  # others stay
    h.connect(2, [PortInfo(1, "p1"), PortInfo(2, "p2"), PortInfo(10, "p10")])
    h.link_up(LinkKey.of(1, 10, 2, 10))
    h.send(2, 1, mac(2), BCAST)
    assert outputs(h.send(1, 1, mac(1), mac(2))) == {(2, 1)}


def test_port_up_again_does_not_bring_a_host_back_until_it_speaks() -> None:
    h = harness()
    h.port_changed(1, PortInfo(1, "p1", up=False))
    h.port_changed(1, PortInfo(1, "p1", up=True))
    assert (100, mac(1)) not in h.hosts
    assert outputs(h.send(2, 1, mac(2), mac(1), learn=False)) == {(1, 1), (2, 2)}  # flooded: unknown
    h.send(1, 1, mac(1), BCAST)
    assert outputs(h.send(2, 1, mac(2), mac(1))) == {(1, 1)}
