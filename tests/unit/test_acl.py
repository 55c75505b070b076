"""The ACL firewall on simulated tables: where packets go under each policy."""

from __future__ import annotations

from typing import Any

import pytest

from controller.config import ConfigError
from controller.config import policy as config_policy
from controller.config.policy import MAX_LIST_RULES
from controller.fabric.topology import LinkKey
from controller.flows.pipeline import APP_ACL, T_ACL_PORT
from controller.tools.sim import Trace
from tests.unit.fabric_helpers import Harness, model_from

NET = """
switches: {s1: {dpid: 1}, s2: {dpid: 2}}
links: [[s1:10, s2:10]]
networks:
  red: {vlan: 100%(net_acl)s}
  blue: {vlan: 200}
vms:
  web1: {switch: s1, port: 1, network: red, ip: 10.0.0.1/24, mac: "02:00:00:00:00:01"%(web1_acl)s}
  web2: {switch: s1, port: 2, network: red, ip: 10.0.0.2/24, mac: "02:00:00:00:00:02"%(web2_acl)s}
  db:   {switch: s2, port: 3, network: red, ip: 10.0.0.3/24, mac: "02:00:00:00:00:03"%(db_acl)s}
  b1:   {switch: s2, port: 4, network: blue, ip: 10.0.1.1/24, mac: "02:00:00:00:00:04"}
acls:
  web-out:
    - {match: {ip_proto: tcp, tcp_dst: 80}, action: allow}
    - {match: {ip_proto: tcp, tcp_dst: 5432, ipv4_dst: 10.0.0.3}, action: allow, stateful: true}
    - {match: {ip_proto: tcp, tcp_dst: 6000, ipv4_dst: 10.0.0.0/24}, action: allow}
    - {match: {ip_proto: icmp, icmp_type: 8}, action: allow, stateful: true}
    - {match: {ip_proto: udp}, action: deny}
    - {match: {ip_proto: tcp, ipv4_dst: 10.0.0.2}, action: allow}
  deny-all:
    - {action: deny}
  no-arp:
    - {match: {eth_type: arp}, action: deny}
    - {action: allow}
  no-telnet:
    - {match: {ip_proto: tcp, tcp_dst: 23}, action: deny}
    - {action: allow}
"""
VMS = {"web1": (1, 1), "web2": (1, 2), "db": (2, 3), "b1": (2, 4)}
IPS = {"web1": "10.0.0.1", "web2": "10.0.0.2", "db": "10.0.0.3", "b1": "10.0.1.1"}


def mac_of(vm: str) -> str:
    return f"02:00:00:00:00:0{list(VMS).index(vm) + 1}"


def harness(web1: str = "", web2: str = "", db: str = "", net: str = "") -> Harness:
    def acl(names: str) -> str:
        return f", acl_in: [{names}]" if names else ""

    text = NET % {"web1_acl": acl(web1), "web2_acl": acl(web2), "db_acl": acl(db), "net_acl": acl(net)}
    h = Harness(model_from(text), {1: [1, 2, 10], 2: [3, 4, 10]}, [LinkKey.of(1, 10, 2, 10)])
    for vm in VMS:  # everyone ARPs once so every host is learned
        h.send(
            *VMS[vm],
            mac_of(vm),
            "ff:ff:ff:ff:ff:ff",
            eth_type=0x0806,
            arp_op=1,
            arp_sha=mac_of(vm),
            arp_spa=IPS[vm],
            arp_tpa="10.0.0.254",
        )
    return h


def ip(h: Harness, src: str, dst: str, proto: int, sport: int = 0, dport: int = 0, **extra: Any) -> Trace:
    fields: dict[str, Any] = dict(ipv4_src=IPS[src], ipv4_dst=IPS[dst], ip_proto=proto, **extra)
    if proto == 6:
        fields.update(tcp_src=sport, tcp_dst=dport)
    elif proto == 17:
        fields.update(udp_src=sport, udp_dst=dport)
    return h.send(*VMS[src], mac_of(src), mac_of(dst), learn=False, **fields)


def reaches(trace: Trace, vm: str) -> bool:
    return VMS[vm] in trace.delivered()


def test_rules_allow_and_deny_in_order_with_implicit_deny() -> None:
    h = harness(web1="web-out")
    assert reaches(ip(h, "web1", "db", 6, 40000, 80), "db")  # rule 0
    assert not reaches(ip(h, "web1", "db", 6, 40000, 22), "db")  # implicit deny
    assert reaches(ip(h, "web1", "web2", 6, 40000, 22), "web2")  # rule 5 (ipv4_dst /32)
    assert not reaches(ip(h, "web1", "web2", 17, 5000, 53), "web2")  # rule 4 deny beats nothing
    assert reaches(ip(h, "web1", "db", 6, 1, 6000), "db")  # CIDR match
    assert reaches(ip(h, "web1", "db", 1, icmpv4_type=8), "db")
    assert not reaches(ip(h, "web1", "db", 1, icmpv4_type=13), "db")
    # the other VMs have no ACL: everything they send passes
    assert reaches(ip(h, "db", "web1", 17, 5000, 53), "web1")


def test_arp_is_allowed_unless_a_rule_names_it() -> None:
    h = harness(web1="deny-all", web2="no-arp")
    arp = dict(eth_type=0x0806, arp_op=1, arp_tpa="10.0.0.3")
    t = h.send(
        1, 1, mac_of("web1"), "ff:ff:ff:ff:ff:ff", learn=False, arp_sha=mac_of("web1"), arp_spa="10.0.0.1", **arp
    )
    assert reaches(t, "db") and not reaches(ip(h, "web1", "db", 6, 1, 80), "db")
    t = h.send(
        1, 2, mac_of("web2"), "ff:ff:ff:ff:ff:ff", learn=False, arp_sha=mac_of("web2"), arp_spa="10.0.0.2", **arp
    )
    assert t.delivered() == set()
    assert reaches(ip(h, "web2", "db", 6, 1, 80), "db")


def test_vm_and_network_lists_must_both_allow() -> None:
    h = harness(web1="web-out", net="no-telnet")
    assert reaches(ip(h, "web1", "db", 6, 1, 80), "db")
    assert not reaches(ip(h, "web1", "web2", 6, 1, 23), "web2")  # VM list allows, network denies
    assert not reaches(ip(h, "db", "web1", 6, 1, 23), "web1")  # network list alone
    assert reaches(ip(h, "db", "web1", 6, 1, 24), "web1")
    assert not reaches(ip(h, "b1", "db", 6, 1, 80), "db")  # isolation still holds


def test_stateful_allow_admits_replies_and_nothing_else() -> None:
    h = harness(web1="web-out", db="deny-all")
    assert reaches(ip(h, "web1", "db", 6, 40000, 5432), "db")
    assert reaches(ip(h, "db", "web1", 6, 5432, 40000), "web1")  # reply of an allowed connection
    assert reaches(ip(h, "web1", "db", 6, 40000, 5432), "db")  # and on it goes
    assert not reaches(ip(h, "db", "web1", 6, 5432, 40001), "web1")  # not a reply: denied
    assert not reaches(ip(h, "db", "web1", 6, 40000, 5432), "web1")  # db initiating: denied
    assert reaches(ip(h, "web1", "db", 1, icmpv4_type=8), "db")
    assert reaches(ip(h, "db", "web1", 1, icmpv4_type=0), "web1")


def test_a_stateless_allow_admits_no_reply() -> None:
    h = harness(web1="web-out", db="deny-all")
    assert reaches(ip(h, "web1", "db", 6, 40000, 80), "db")
    assert not reaches(ip(h, "db", "web1", 6, 80, 40000), "web1")


def test_a_connection_denied_later_in_the_chain_is_not_committed() -> None:
    h = harness(web1="web-out", db="deny-all", net="deny-all")
    assert not reaches(ip(h, "web1", "db", 6, 40000, 5432), "db")  # the network list denies it
    assert not h.conntrack.replies
    assert not reaches(ip(h, "db", "web1", 6, 5432, 40000), "web1")


def test_one_list_is_compiled_once_per_switch() -> None:
    h = harness(web1="web-out", web2="web-out")
    acl_port = [r for r in h.core.flows.rules(1) if r.app == APP_ACL and r.table == T_ACL_PORT]
    listed = [r for r in acl_port if any(k == "metadata" and v[0] for k, v in r.match)]  # type: ignore[index]
    assert len(listed) == 6 + 4  # six rules, arp allow, nd allow (NS, NA), implicit deny: shared by both VMs
    on_s2 = [r for r in h.core.flows.rules(2) if r.app == APP_ACL and r.table == T_ACL_PORT]
    assert not [r for r in on_s2 if any(k == "metadata" and v[0] for k, v in r.match)]  # type: ignore[index]
    origins = h.core.app("acl").origins(h.core.model)  # type: ignore[attr-defined]
    assert sorted(o for r, o in ((r, origins.get(r.cookie)) for r in listed) if o) == sorted(
        [("web-out", str(i), "in") for i in range(6)]
        + [("web-out", "arp-allow", "in"), ("web-out", "implicit-deny", "in")]
        + [("web-out", "nd-allow", "in")] * 2
    )


def test_changing_one_rule_changes_one_flow_per_switch() -> None:
    h = harness(web1="web-out", db="web-out")
    text = (
        NET % {"web1_acl": ", acl_in: [web-out]", "web2_acl": "", "db_acl": ", acl_in: [web-out]", "net_acl": ""}
    ).replace("tcp_dst: 6000", "tcp_dst: 6001")
    batches = h.reload(model_from(text)).batches
    assert {b.dpid: (len(b.deletes), len(b.adds)) for b in batches} == {1: (1, 1), 2: (1, 1)}


def test_list_size_is_bounded_by_the_priority_space(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config_policy, "MAX_LIST_RULES", 30)
    rules = "\n".join("    - {match: {ip_proto: tcp, tcp_dst: %d}, action: allow}" % i for i in range(25))
    text = (
        (NET % {"web1_acl": ", acl_in: [big, big2]", "web2_acl": ", acl_in: [big]", "db_acl": "", "net_acl": ""})
        + "  big:\n"
        + rules
        + "\n  big2:\n"
        + rules
        + "\n"
    )
    with pytest.raises(ConfigError) as err:
        model_from(text)
    assert err.value.errors == (
        "vms.web1.acl_in: ACLs big, big2 have 50 rules in all; more than 30 cannot keep their order",
    )
    assert MAX_LIST_RULES == 59000
