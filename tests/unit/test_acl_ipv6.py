"""IPv6 through the ACL firewall on simulated tables: matches, neighbour discovery, conntrack."""

from __future__ import annotations

from typing import Any

from controller.fabric.topology import LinkKey
from controller.packets import link_local
from controller.tools.sim import Trace
from tests.unit.fabric_helpers import Harness, model_from

NET = """
switches: {s1: {dpid: 1}, s2: {dpid: 2}}
links: [[s1:10, s2:10]]
networks:
  red: {vlan: 100%(net_acl)s}
vms:
  web: {switch: s1, port: 1, network: red, mac: "02:00:00:00:00:01", ip: 10.0.0.1/24, ipv6: 2001:db8::1/64%(web_acl)s}
  db:  {switch: s2, port: 2, network: red, mac: "02:00:00:00:00:02", ip: 10.0.0.2/24, ipv6: 2001:db8::2/64%(db_acl)s}
  old: {switch: s2, port: 3, network: red, mac: "02:00:00:00:00:03", ip: 10.0.0.3/24%(old_acl)s}
acls:
  v6-web:
    - {match: {eth_type: ipv6, ip_proto: tcp, tcp_dst: 80}, action: allow}
    - {match: {ipv6_dst: 2001:db8::2, ip_proto: tcp, tcp_dst: 5432}, action: allow, stateful: true}
    - {match: {ipv6_dst: "fe80::/64", ip_proto: udp}, action: allow}
    - {match: {ip_proto: icmpv6, icmpv6_type: 128}, action: allow, stateful: true}
    - {match: {ipv6_src: 2001:db8::/64, ip_proto: udp, udp_dst: 53}, action: allow}
  v4-web:
    - {match: {ip_proto: tcp, tcp_dst: 80}, action: allow}
  any-ipv6:
    - {match: {eth_type: ipv6}, action: allow}
  deny-all:
    - {action: deny}
  no-nd:
    - {match: {ip_proto: icmpv6, icmpv6_type: 135}, action: deny}
    - {match: {eth_type: ipv6}, action: allow}
"""
AT = {"web": (1, 1), "db": (2, 2), "old": (2, 3)}
MAC = {"web": "02:00:00:00:00:01", "db": "02:00:00:00:00:02", "old": "02:00:00:00:00:03"}
V6 = {"web": "2001:db8::1", "db": "2001:db8::2"}
LL = {vm: str(link_local(m)) for vm, m in MAC.items()}


def harness(web: str = "", db: str = "", old: str = "", net: str = "") -> Harness:
    def acl(names: str) -> str:
        return f", acl_in: [{names}]" if names else ""

    text = NET % {"web_acl": acl(web), "db_acl": acl(db), "old_acl": acl(old), "net_acl": acl(net)}
    h = Harness(model_from(text), {1: [1, 10], 2: [2, 3, 10]}, [LinkKey.of(1, 10, 2, 10)])
    for vm, at in AT.items():  # every VM announces its link-local address (an unsolicited NA)
        h.send(
            *at,
            MAC[vm],
            "33:33:00:00:00:01",
            eth_type=0x86DD,
            ipv6_src=LL[vm],
            ipv6_dst="ff02::1",
            ip_proto=58,
            icmpv6_type=136,
            icmpv6_code=0,
            ipv6_nd_target=LL[vm],
            ipv6_nd_tll=MAC[vm],
        )
    assert len(h.hosts) == 3
    return h


def v6(
    h: Harness,
    src: str,
    dst: str,
    proto: int,
    sport: int = 0,
    dport: int = 0,
    src_ip: str = "",
    dst_ip: str = "",
    **extra: Any,
) -> Trace:
    fields: dict[str, Any] = dict(
        eth_type=0x86DD, ipv6_src=src_ip or V6[src], ipv6_dst=dst_ip or V6[dst], ip_proto=proto, **extra
    )
    if proto in (6, 17):
        kind = "tcp" if proto == 6 else "udp"
        fields.update({f"{kind}_src": sport, f"{kind}_dst": dport})
    return h.send(*AT[src], MAC[src], MAC[dst], learn=False, **fields)


def reaches(trace: Trace, vm: str) -> bool:
    return AT[vm] in trace.delivered()


def test_ipv6_rules_match_addresses_prefixes_ports_and_icmpv6_types() -> None:
    h = harness(web="v6-web")
    assert reaches(v6(h, "web", "db", 6, 40000, 80), "db")  # eth_type ipv6 + tcp_dst
    assert not reaches(v6(h, "web", "db", 6, 40000, 22), "db")  # implicit deny
    assert reaches(v6(h, "web", "db", 6, 40000, 5432), "db")  # ipv6_dst exact
    assert reaches(v6(h, "web", "db", 17, 1, 9, src_ip=LL["web"], dst_ip=LL["db"]), "db")  # ipv6_dst prefix
    assert not reaches(v6(h, "web", "db", 17, 1, 9), "db")
    assert reaches(v6(h, "web", "db", 58, icmpv6_type=128, icmpv6_code=0), "db")
    assert not reaches(v6(h, "web", "db", 58, icmpv6_type=129, icmpv6_code=0), "db")
    assert reaches(v6(h, "web", "db", 17, 1, 53), "db")  # ipv6_src prefix


def test_an_ipv4_rule_does_not_admit_ipv6_nor_an_ipv6_rule_ipv4() -> None:
    h = harness(web="v4-web", db="any-ipv6")
    assert not reaches(v6(h, "web", "db", 6, 40000, 80), "db")
    ipv4 = dict(eth_type=0x0800, ipv4_src="10.0.0.1", ipv4_dst="10.0.0.2", ip_proto=6, tcp_src=40000, tcp_dst=80)
    assert reaches(h.send(*AT["web"], MAC["web"], MAC["db"], learn=False, **ipv4), "db")
    assert reaches(v6(h, "db", "web", 6, 1, 2), "web")
    back = dict(ipv4, ipv4_src="10.0.0.2", ipv4_dst="10.0.0.1")
    assert not reaches(h.send(*AT["db"], MAC["db"], MAC["web"], learn=False, **back), "web")


def ndp(h: Harness, vm: str, kind: int, src: str, dst_mac: str, dst: str, **fields: Any) -> Trace:
    return h.send(
        *AT[vm],
        MAC[vm],
        dst_mac,
        learn=False,
        eth_type=0x86DD,
        ipv6_src=src,
        ipv6_dst=dst,
        ip_proto=58,
        icmpv6_type=kind,
        icmpv6_code=0,
        **fields,
    )


def neighbour_discovery(h: Harness, vm: str, peer: str) -> tuple[Trace, Trace, Trace]:
    """``vm``'s DAD probe, its solicitation for ``peer``'s global address and ``peer``'s answer."""
    group = "ff02::1:ff00:" + V6[peer].rsplit(":", 1)[1]
    dad = ndp(
        h,
        vm,
        135,
        "::",
        "33:33:ff:00:00:0" + V6[vm][-1],
        "ff02::1:ff00:" + V6[vm].rsplit(":", 1)[1],
        ipv6_nd_target=V6[vm],
    )
    ns = ndp(h, vm, 135, V6[vm], "33:33:ff:00:00:0" + V6[peer][-1], group, ipv6_nd_target=V6[peer], ipv6_nd_sll=MAC[vm])
    na = ndp(h, peer, 136, V6[peer], MAC[vm], V6[vm], ipv6_nd_target=V6[peer], ipv6_nd_tll=MAC[peer])
    return dad, ns, na


def test_neighbour_discovery_is_allowed_unless_a_rule_names_it() -> None:
    h = harness(web="deny-all", db="deny-all")
    dad, ns, na = neighbour_discovery(h, "web", "db")
    assert reaches(dad, "db") and reaches(ns, "db") and reaches(na, "web")
    assert not reaches(v6(h, "web", "db", 58, icmpv6_type=128, icmpv6_code=0), "db")
    h = harness(web="no-nd", db="no-nd")
    dad, ns, na = neighbour_discovery(h, "web", "db")
    assert not reaches(dad, "db") and not reaches(ns, "db")
    assert reaches(na, "web")  # the list names solicitations only, and allows the rest of IPv6
    assert reaches(v6(h, "web", "db", 6, 1, 2), "db")


def test_stateful_ipv6_rules_admit_replies_and_nothing_else() -> None:
    h = harness(web="v6-web", db="deny-all")
    assert reaches(v6(h, "web", "db", 6, 40000, 5432), "db")
    assert reaches(v6(h, "db", "web", 6, 5432, 40000), "web")  # reply of an allowed connection
    assert not reaches(v6(h, "db", "web", 6, 5432, 40001), "web")  # not a reply
    assert not reaches(v6(h, "db", "web", 6, 40000, 5432), "web")  # db initiating
    assert reaches(v6(h, "web", "db", 6, 40000, 80), "db")  # stateless allow ...
    assert not reaches(v6(h, "db", "web", 6, 80, 40000), "web")  # ... admits no reply
    assert reaches(v6(h, "web", "db", 58, icmpv6_type=128, icmpv6_code=0), "db")
    assert reaches(v6(h, "db", "web", 58, icmpv6_type=129, icmpv6_code=0), "web")


def test_neighbour_discovery_works_in_a_tracked_network() -> None:
    """Conntrack flags ND ``+inv``; in a network with stateful rules it must still reach its ACLs, not drop."""
    h = harness(web="v6-web", db="deny-all")
    assert any(r.actions and type(r.actions[0]).__name__ == "Ct" for r in h.core.flows.rules(1))
    dad, ns, na = neighbour_discovery(h, "web", "db")
    assert reaches(dad, "db") and reaches(ns, "db") and reaches(na, "web")
    h = harness(web="v6-web", db="no-nd")
    dad, ns, na = neighbour_discovery(h, "db", "web")
    assert not reaches(dad, "web") and not reaches(ns, "web")


def test_ipv4_only_vm_talks_link_local_ipv6_under_its_acl() -> None:
    h = harness(old="any-ipv6")
    assert reaches(v6(h, "old", "web", 17, 1, 2, src_ip=LL["old"], dst_ip=LL["web"]), "web")
    assert not reaches(v6(h, "old", "web", 17, 1, 2, src_ip="2001:db8::3", dst_ip=V6["web"]), "web")
