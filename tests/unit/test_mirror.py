"""Port mirroring on the simulated tables: what the tap sees, across switches, and that it cannot send."""

from __future__ import annotations

import pytest

from controller.config import ConfigError
from controller.fabric.topology import LinkKey
from controller.tools.sim import Trace
from tests.unit.fabric_helpers import BCAST, Harness, model_from, outputs

WEB1, WEB2, DB = "02:00:00:00:01:01", "02:00:00:00:01:02", "02:00:00:00:01:03"

NET = """
switches: {s1: {dpid: 1}, s2: {dpid: 2}, s3: {dpid: 3}}
links: [[s1:10, s2:10], [s2:11, s3:11]]
networks: {red: {vlan: 100}, blue: {vlan: 200}}
vms:
  web1: {switch: s1, port: 1, network: red, mac: "02:00:00:00:01:01"}
  web2: {switch: s1, port: 2, network: red, mac: "02:00:00:00:01:02"}
  db: {switch: s2, port: 1, network: red, mac: "02:00:00:00:01:03"}
  b1: {switch: s1, port: 3, network: blue}
  b2: {switch: s3, port: 1, network: blue}
mirrors:
  tap: {switch: %(switch)s, port: 20, vms: [web1], direction: %(direction)s}
"""


def harness(switch: str = "s3", direction: str = "both") -> Harness:
    model = model_from(NET % {"switch": switch, "direction": direction})
    tap_port = {int(switch[1:]): [20]}
    ports = {1: [1, 2, 3, 10], 2: [1, 10, 11], 3: [1, 11]}
    for dpid, extra in tap_port.items():
        ports[dpid] = ports[dpid] + extra
    h = Harness(model, ports, [LinkKey.of(1, 10, 2, 10), LinkKey.of(2, 11, 3, 11)])
    for dpid, port, mac in ((1, 1, WEB1), (1, 2, WEB2), (2, 1, DB)):
        h.send(dpid, port, mac, BCAST)
    return h


def at_tap(trace: Trace, dpid: int) -> list[dict[str, object]]:
    return [dict(p) for d, port, p in trace.outputs if (d, port) == (dpid, 20)]


@pytest.mark.parametrize("switch", ["s1", "s2", "s3"])
def test_tap_sees_requests_and_replies_of_the_mirrored_vm_untagged(switch: str) -> None:
    h = harness(switch)
    dpid = int(switch[1:])
    request = h.send(1, 1, WEB1, DB, eth_type=0x0800, ipv4_src="10.0.0.1", ipv4_dst="10.0.0.3")
    reply = h.send(2, 1, DB, WEB1, eth_type=0x0800, ipv4_src="10.0.0.3", ipv4_dst="10.0.0.1")
    for trace, src in ((request, WEB1), (reply, DB)):
        copies = at_tap(trace, dpid)
        assert [(c["eth_src"], c["vlan_vid"]) for c in copies] == [(src, 0)]
        assert (2 if src == WEB1 else 1, 1) in outputs(trace)  # the original still arrives
    assert not request.loop and not reply.loop


@pytest.mark.parametrize("switch", ["s1", "s3"])
def test_tap_sees_nothing_of_other_vms(switch: str) -> None:
    h = harness(switch)
    dpid = int(switch[1:])
    assert not at_tap(h.send(1, 2, WEB2, DB), dpid)
    assert not at_tap(h.send(2, 1, DB, WEB2), dpid)
    assert not at_tap(h.send(1, 3, "02:00:00:00:02:01", BCAST), dpid)
    assert not at_tap(h.send(3, 1, "02:00:00:00:02:02", BCAST), dpid)


def test_broadcast_to_the_vm_is_copied_once_and_its_own_broadcast_once() -> None:
    h = harness("s3")
    assert len(at_tap(h.send(2, 1, DB, BCAST), 3)) == 1
    assert len(at_tap(h.send(1, 1, WEB1, BCAST), 3)) == 1


def test_direction_out_copies_only_what_the_vm_sends() -> None:
    h = harness("s2", "out")
    assert len(at_tap(h.send(1, 1, WEB1, DB), 2)) == 1
    assert not at_tap(h.send(2, 1, DB, WEB1), 2)
    assert not at_tap(h.send(1, 2, WEB2, BCAST), 2)


def test_direction_in_copies_only_what_is_delivered_to_the_vm() -> None:
    h = harness("s2", "in")
    assert not at_tap(h.send(1, 1, WEB1, DB), 2)
    assert not at_tap(h.send(1, 1, WEB1, BCAST), 2)
    assert len(at_tap(h.send(2, 1, DB, WEB1), 2)) == 1
    assert len(at_tap(h.send(1, 2, WEB2, BCAST), 2)) == 1


@pytest.mark.parametrize("switch", ["s1", "s3"])
def test_the_tap_port_can_send_nothing(switch: str) -> None:
    h = harness(switch)
    dpid = int(switch[1:])
    for dst in (BCAST, WEB1, DB):
        trace = h.send(dpid, 20, "02:00:00:00:09:09", dst)
        assert outputs(trace) == set() and not trace.to_controller


def test_mirror_config_errors_name_the_path() -> None:
    with pytest.raises(ConfigError) as err:
        model_from(
            NET.replace(
                'web1: {switch: s1, port: 1, network: red, mac: "02:00:00:00:01:01"}',
                "web1: {switch: s1, port: 1, network: red}",
            )
            % {"switch": "s1", "direction": "in"}
        )
    assert err.value.errors == (
        "mirrors.tap.vms[0]: VM 'web1' has no mac: mirroring traffic delivered to it (direction 'in') needs one",
    )
    with pytest.raises(ConfigError) as err:
        model_from((NET % {"switch": "s1", "direction": "both"}).replace("port: 20", "port: 2"))
    assert err.value.errors == ("mirrors.tap.port: port 2 on switch 's1' is already used by VM 'web2'",)
    with pytest.raises(ConfigError) as err:
        model_from(NET % {"switch": "s1", "direction": "sideways"})
    assert len(err.value.errors) == 1 and err.value.errors[0].startswith("mirrors.tap.direction:")
