"""``vmn trace`` sees the ports the switch has: no made-up number or name may stand for another port.

Field report 9 and its siblings: every file here is valid, and on a switch
each declared port is its own port; the trace must agree (the right VM
reached, named as the file names its port).
"""

from __future__ import annotations

from controller.config import loads_model
from controller.tools.portplan import FIRST_NAMED_PORT, number_ports, port_numbers
from controller.tools.trace import TraceResult, build_fabric, trace


def run(text: str, src: str, dst_ip: str, proto: str = "icmp", port: int | None = None) -> TraceResult:
    return trace(build_fabric(loads_model(text)), src, dst_ip, proto, port)  # type: ignore[arg-type]


def one_switch(vms: str, extra: str = "") -> str:
    return f"""
switches: {{s1: {{dpid: 1}}}}
networks: {{red: {{vlan: 100}}}}
vms:
{vms}
{extra}
"""


def test_field_report_9_numbered_1000_and_a_named_port_are_two_ports() -> None:
    text = one_switch(
        "  a: {switch: s1, port: 1000, network: red, ip: 10.0.0.1/24}\n"
        "  b: {switch: s1, port: vnet0, network: red, ip: 10.0.0.2/24}"
    )
    result = run(text, "a", "10.0.0.2")
    assert result.connects
    assert result.forward.path == ("s1:1000", "out s1:vnet0 (b)")
    assert result.reply is not None and result.reply.path == ("s1:vnet0", "out s1:1000 (a)")


def test_field_report_9_a_third_vm_is_never_named_for_another() -> None:
    text = one_switch(
        "  a: {switch: s1, port: 1000, network: red, ip: 10.0.0.1/24}\n"
        "  b: {switch: s1, port: vnet0, network: red, ip: 10.0.0.2/24}\n"
        "  c: {switch: s1, port: vnet1, network: red, ip: 10.0.0.3/24}"
    )
    result = run(text, "c", "10.0.0.2")
    assert result.connects
    assert result.forward.path == ("s1:vnet1", "out s1:vnet0 (b)")
    assert run(text, "c", "10.0.0.1").forward.path == ("s1:vnet1", "out s1:1000 (a)")


def test_named_port_does_not_take_the_number_of_a_link_port() -> None:
    text = """
switches: {s1: {dpid: 1}, s2: {dpid: 2}}
links: [[s1:1000, s2:10]]
networks: {red: {vlan: 100}}
vms:
  a: {switch: s1, port: vnet0, network: red, ip: 10.0.0.1/24}
  b: {switch: s2, port: 1, network: red, ip: 10.0.0.2/24}
"""
    result = run(text, "a", "10.0.0.2")
    assert result.connects
    assert result.forward.path == ("s1:vnet0", "s2:10", "out s2:1 (b)")


def test_named_link_end_does_not_take_the_number_of_a_vm_port_on_the_peer() -> None:
    text = """
switches: {s1: {dpid: 1}, s2: {dpid: 2}}
links: [[s1:10, s2:trunk0]]
networks: {red: {vlan: 100}}
vms:
  a: {switch: s1, port: 1, network: red, ip: 10.0.0.1/24}
  b: {switch: s2, port: 1000, network: red, ip: 10.0.0.2/24}
"""
    result = run(text, "a", "10.0.0.2")
    assert result.connects
    assert result.forward.path == ("s1:1", "s2:trunk0", "out s2:1000 (b)")


def test_named_vm_port_does_not_take_the_number_of_a_mirror_tap() -> None:
    text = one_switch(
        "  a: {switch: s1, port: vnet0, network: red, ip: 10.0.0.1/24}\n"
        "  b: {switch: s1, port: 2, network: red, ip: 10.0.0.2/24}",
        "mirrors: {tap: {switch: s1, port: 1000, vms: [b], direction: out}}",
    )
    result = run(text, "a", "10.0.0.2")
    assert result.connects
    assert result.forward.path == ("s1:vnet0", "out s1:2 (b)")


def test_named_mirror_tap_does_not_take_the_number_of_a_vm_port() -> None:
    text = one_switch(
        "  a: {switch: s1, port: 1000, network: red, ip: 10.0.0.1/24}\n"
        "  b: {switch: s1, port: 2, network: red, ip: 10.0.0.2/24}",
        "mirrors: {tap: {switch: s1, port: tap0, vms: [b], direction: out}}",
    )
    result = run(text, "a", "10.0.0.2")
    assert result.connects
    assert result.reply is not None and result.reply.path == ("s1:2", "out s1:1000 (a)", "out s1:tap0")


def test_a_numbered_port_is_not_called_like_an_interface_the_file_names() -> None:
    # the fake switch used to call port 1 "p1": a VM declared on interface p1 then resolved to port 1
    text = one_switch(
        "  a: {switch: s1, port: 1, network: red, ip: 10.0.0.1/24}\n"
        "  b: {switch: s1, port: p1, network: red, ip: 10.0.0.2/24}"
    )
    result = run(text, "a", "10.0.0.2")
    assert result.connects
    assert result.forward.path == ("s1:1", "out s1:p1 (b)")


def test_names_that_sort_unlike_their_numbers_get_distinct_free_numbers_per_switch() -> None:
    text = """
switches: {s1: {dpid: 1}, s2: {dpid: 2}}
links: [[s1:1001, s2:1000]]
networks: {red: {vlan: 100}}
vms:
  a: {switch: s1, port: vnet9, network: red, ip: 10.0.0.1/24}
  b: {switch: s1, port: vnet10, network: red, ip: 10.0.0.2/24}
  c: {switch: s1, port: Vnet, network: red, ip: 10.0.0.3/24}
  d: {switch: s1, port: 1000, network: red, ip: 10.0.0.4/24}
  e: {switch: s2, port: vnet9, network: red, ip: 10.0.0.5/24}
"""
    numbers = port_numbers(loads_model(text))
    assert {ref: no for (sw, ref), (_, no) in numbers.items() if sw == "s1"} == {
        1000: 1000,
        1001: 1001,
        "Vnet": 1002,
        "vnet10": 1003,
        "vnet9": 1004,
    }
    assert numbers[("s2", "vnet9")] == (2, 1001) and numbers[("s2", 1000)] == (2, 1000)
    for src, dst, path in (
        ("a", "10.0.0.2", ("s1:vnet9", "out s1:vnet10 (b)")),
        ("c", "10.0.0.4", ("s1:Vnet", "out s1:1000 (d)")),
        ("e", "10.0.0.1", ("s2:vnet9", "s1:1001", "out s1:vnet9 (a)")),
    ):
        result = run(text, src, dst)
        assert result.connects and result.forward.path == path, (src, dst, result.render())


def test_number_ports_skips_every_declared_number() -> None:
    assert number_ports(frozenset({FIRST_NAMED_PORT, FIRST_NAMED_PORT + 2, "a", "b", "c"})) == {
        1000: 1000,
        1002: 1002,
        "a": 1001,
        "b": 1003,
        "c": 1004,
    }


def test_vms_without_ip_or_mac_on_named_ports_are_learned_where_they_are() -> None:
    # a and c declare neither ip nor mac: the trace makes up their MACs and learns them on their own ports
    text = one_switch(
        "  a: {switch: s1, port: 1000, network: red}\n"
        "  b: {switch: s1, port: vnet0, network: red, ip: 10.0.0.2/24}\n"
        "  c: {switch: s1, port: vnet1, network: red}\n"
        "  d: {switch: s1, port: 1001, network: red, ip: 10.0.0.4/24}"
    )
    result = run(text, "d", "10.0.0.2")
    assert result.connects and result.forward.path == ("s1:1001", "out s1:vnet0 (b)")


LB = """
switches: {s1: {dpid: 1}, s2: {dpid: 2}}
links: [[s1:10, s2:10]]
networks: {red: {vlan: 100}, blue: {vlan: 200}}
vms:
  client: {switch: s1, port: 1, network: red, ip: 10.0.0.1/24}
  aaa: {switch: s1, port: 1000, network: blue, ip: 10.0.0.11/24}
  bbb: {switch: s1, port: 2, network: red, ip: 10.0.0.2/24}
  web1: {switch: s2, port: vnet-web1, network: red, ip: 10.0.0.11/24}
load_balancers:
  web: {vip: 10.0.0.100, network: red, protocol: tcp, port: 80, backends: [10.0.0.11]}
"""


def test_vip_backend_is_the_vm_of_the_balancers_network() -> None:
    # aaa (blue) has the backend's address too and sorts first: the VIP must still reach web1 (red)
    # and only web1 (located at aaa, the trace used to flood aaa's MAC through red, bbb included)
    result = run(LB, "client", "10.0.0.100", "tcp", 80)
    assert result.connects
    assert result.forward.path == ("s1:1", "s2:10", "out s2:vnet-web1 (web1)")
    assert result.reply is not None and result.reply.path == ("s2:vnet-web1", "s1:10", "out s1:1 (client)")
