"""Delivery policy (``acl_out``) on simulated tables: where packets go, on one host and across hosts.

Two switches joined by a link; ``web1``/``web2`` on s1, ``db`` on s2. With
:attr:`Harness.host_conntracks` set, s1 and s2 are separate OVS hosts, each
with its own conntrack, as two hypervisors joined by a cable.
"""

from __future__ import annotations

from typing import Any

from controller.fabric.topology import LinkKey
from controller.flows.pipeline import T_ACL_OUT_NET, T_ACL_OUT_PORT, T_EGRESS
from controller.tools.sim import Trace, conntracks_of_hosts
from tests.unit.fabric_helpers import Harness, model_from

NET = """
switches: {s1: {dpid: 1}, s2: {dpid: 2}}
links: [[s1:10, s2:10]]
networks:
  red: {vlan: 100%(net)s}
  blue: {vlan: 200}
vms:
  web1: {switch: s1, port: 1, network: red, ip: 10.0.0.1/24, mac: "02:00:00:00:00:01"%(web1)s}
  web2: {switch: s1, port: 2, network: red, ip: 10.0.0.2/24, mac: "02:00:00:00:00:02"%(web2)s}
  db:   {switch: s2, port: 3, network: red, ip: 10.0.0.3/24, mac: "02:00:00:00:00:03"%(db)s}
  b1:   {switch: s2, port: 4, network: blue, ip: 10.0.1.1/24, mac: "02:00:00:00:00:04"}
acls:
  web-only:
    - {match: {ip_proto: tcp, tcp_dst: 80}, action: allow}
    - {match: {ip_proto: icmp}, action: allow}
  web-stateful:
    - {match: {ip_proto: tcp, tcp_dst: 80}, action: allow, stateful: true}
    - {match: {ip_proto: udp, udp_dst: 53}, action: allow, stateful: true}
  client-stateful:
    - {match: {ip_proto: tcp, tcp_dst: 80}, action: allow, stateful: true}
    - {match: {ip_proto: icmp}, action: allow}
    - {action: deny}
  allow-all:
    - {action: allow}
  allow-stateful:
    - {action: allow, stateful: true}
  deny-all:
    - {action: deny}
  no-ssh:
    - {match: {ip_proto: tcp, tcp_dst: 22}, action: deny}
    - {action: allow}
  no-arp:
    - {match: {eth_type: arp}, action: deny}
    - {action: allow}
"""
VMS = {"web1": (1, 1), "web2": (1, 2), "db": (2, 3), "b1": (2, 4)}
IPS = {"web1": "10.0.0.1", "web2": "10.0.0.2", "db": "10.0.0.3", "b1": "10.0.1.1"}
TWO_HOSTS = {1: "hv1", 2: "hv2"}


def mac_of(vm: str) -> str:
    return f"02:00:00:00:00:0{list(VMS).index(vm) + 1}"


def lists(acl_in: str = "", acl_out: str = "") -> str:
    return (f", acl_in: [{acl_in}]" if acl_in else "") + (f", acl_out: [{acl_out}]" if acl_out else "")


def net_text(**policy: tuple[str, str]) -> str:
    """``NET`` with ``policy``: vm name or ``net`` -> (acl_in, acl_out) names (comma-separated, "" for none)."""
    return NET % {k: lists(*policy.get(k, ("", ""))) for k in ("web1", "web2", "db", "net")}


def harness(hosts: dict[int, str] | None = None, **policy: tuple[str, str]) -> Harness:
    """``policy``: as :func:`net_text`; ``hosts``: dpid -> host name, for separate conntracks."""
    h = Harness(model_from(net_text(**policy)), {1: [1, 2, 10], 2: [3, 4, 10]}, [LinkKey.of(1, 10, 2, 10)])
    if hosts is not None:
        h.host_conntracks = conntracks_of_hosts(hosts)
    for vm in VMS:  # everyone ARPs once so every host is learned
        h.send(*VMS[vm], mac_of(vm), "ff:ff:ff:ff:ff:ff", eth_type=0x0806, arp_op=1, arp_sha=mac_of(vm),
               arp_spa=IPS[vm], arp_tpa="10.0.0.254")  # fmt: skip
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


def tcp_conversation(h: Harness, client: str, server: str, port: int, cport: int = 40000) -> tuple[bool, bool]:
    """(request delivered, reply delivered) for one TCP exchange."""
    there = reaches(ip(h, client, server, 6, cport, port), server)
    back = reaches(ip(h, server, client, 6, port, cport), client) if there else False
    return there, back


def test_a_server_is_reachable_only_where_its_acl_out_allows() -> None:
    h = harness(db=("", "web-only"), web2=("", "web-only"))
    for client, server in (("web1", "db"), ("web2", "db"), ("web1", "web2"), ("db", "web2")):
        assert reaches(ip(h, client, server, 6, 40000, 80), server), (client, server)
        assert not reaches(ip(h, client, server, 6, 40000, 22), server), (client, server)
    # what the servers send is not theirs to police: their acl_in is empty
    assert reaches(ip(h, "db", "web1", 6, 40000, 22), "web1")


def test_a_network_acl_out_applies_to_all_its_vms() -> None:
    h = harness(net=("", "no-ssh"))
    for client, server in (("web1", "db"), ("db", "web2"), ("web2", "web1")):
        assert not reaches(ip(h, client, server, 6, 40000, 22), server)
        assert reaches(ip(h, client, server, 6, 40000, 23), server)
    assert reaches(ip(h, "b1", "b1", 6, 1, 22), "b1") is False  # a frame never returns to its sender


def test_sender_acl_in_and_receiver_acl_out_both_apply() -> None:
    h = harness(web1=("no-ssh", ""), db=("", "web-only"))
    assert reaches(ip(h, "web1", "db", 6, 40000, 80), "db")
    assert not reaches(ip(h, "web1", "db", 6, 40000, 22), "db")  # both deny
    assert not reaches(ip(h, "web1", "db", 6, 40000, 8080), "db")  # acl_in allows, acl_out denies
    h = harness(web1=("deny-all", ""), db=("", "allow-all"))
    assert not reaches(ip(h, "web1", "db", 6, 40000, 80), "db")  # acl_out allows, acl_in denies


def test_flooded_frames_meet_each_ports_own_acl_out() -> None:
    h = harness(web2=("", "no-arp"))
    arp: dict[str, Any] = dict(
        eth_type=0x0806, arp_op=1, arp_sha=mac_of("web1"), arp_spa=IPS["web1"], arp_tpa="10.0.0.9"
    )
    t = h.send(*VMS["web1"], mac_of("web1"), "ff:ff:ff:ff:ff:ff", learn=False, **arp)
    assert t.delivered() == {VMS["db"]}  # web2's acl_out denies ARP; db has none; blue is another network
    t = h.send(
        *VMS["db"],
        mac_of("db"),
        "ff:ff:ff:ff:ff:ff",
        learn=False,
        **{**arp, "arp_sha": mac_of("db"), "arp_spa": IPS["db"]},
    )
    assert t.delivered() == {VMS["web1"]}


def test_a_stateful_acl_out_admits_its_replies_while_the_servers_acl_in_denies_everything() -> None:
    for hosts in (None, TWO_HOSTS):
        h = harness(hosts, db=("deny-all", "web-stateful"))
        assert tcp_conversation(h, "web1", "db", 80) == (True, True), hosts
        assert not reaches(ip(h, "db", "web1", 6, 80, 40001), "web1")  # not a reply
        assert not reaches(ip(h, "db", "web1", 6, 40000, 80), "web1")  # db opening a connection
        assert tcp_conversation(h, "web1", "db", 22) == (False, False)


def test_a_stateful_acl_in_admits_replies_across_hosts_through_the_receivers_lists() -> None:
    h = harness(TWO_HOSTS, web1=("client-stateful", "deny-all"), db=("deny-all", ""))
    assert tcp_conversation(h, "web1", "db", 80) == (True, True)
    assert not reaches(ip(h, "db", "web1", 6, 22, 40000), "web1")


def test_a_stateless_allow_admits_no_reply_across_hosts() -> None:
    h = harness(TWO_HOSTS, web1=("client-stateful", ""), db=("deny-all", ""))
    assert reaches(ip(h, "web1", "db", 1, icmpv4_type=8), "db")  # allowed, statelessly
    assert not reaches(ip(h, "db", "web1", 1, icmpv4_type=0), "web1")  # db's acl_in judges the reply


def test_plain_traffic_of_a_tracked_network_crosses_hosts_both_ways() -> None:
    h = harness(TWO_HOSTS, web2=("", "web-stateful"))  # red is tracked: a stateful rule applies there
    for a, b in (("web1", "db"), ("db", "web1")):
        assert reaches(ip(h, a, b, 1, icmpv4_type=8), b)
        assert reaches(ip(h, b, a, 1, icmpv4_type=0), a)
        assert tcp_conversation(h, a, b, 5000) == (True, True)


def test_ports_without_policy_skip_the_delivery_acl_tables() -> None:
    h = harness(db=("", "web-only"))
    diverted = {r.match_dict.get("reg0") for r in h.core.flows.rules(2) if r.table == T_EGRESS and r.priority > 0}
    assert diverted == {3}  # db's port; b1's network has no policy
    assert not [r for r in h.core.flows.rules(1) if r.table in (T_ACL_OUT_NET, T_ACL_OUT_PORT) and r.priority > 1]


def test_a_connection_refused_at_delivery_admits_no_replies() -> None:
    for hosts in (None, TWO_HOSTS):
        h = harness(hosts, web1=("client-stateful", "deny-all"), db=("", "deny-all"))
        assert tcp_conversation(h, "web1", "db", 80) == (False, False)
        # db answers anyway, guessing the ports: web1's acl_out judges it, the stateful rule admits nothing
        assert not reaches(ip(h, "db", "web1", 6, 80, 40000), "web1"), hosts


def test_a_stateful_allow_that_lets_a_reply_out_does_not_admit_it_past_the_receivers_acl_out() -> None:
    # web1 opens a connection nothing stateful allowed; the server's own acl_in lets its reply out with a
    # stateful rule, but that reply opens no connection: web1's acl_out judges it, and denies it
    for hosts, server in ((None, "web2"), (None, "db"), (TWO_HOSTS, "db")):
        h = harness(hosts, web1=("", "deny-all"), **{server: ("allow-stateful", "")})
        assert tcp_conversation(h, "web1", server, 22) == (True, False), (hosts, server)
        assert not reaches(ip(h, server, "web1", 6, 22, 40000), "web1"), (hosts, server)  # no reply marked it
        assert not reaches(ip(h, server, "web1", 6, 40000, 22), "web1"), (hosts, server)  # nor may it open one


def test_a_stateful_acl_out_that_lets_a_reply_in_marks_nothing() -> None:
    # a reply that a stateful rule admits is judged again after a reload; replies of a connection a stateful
    # rule let out (marked) are not. web2's stateful acl_out keeps red tracked throughout.
    for hosts in (None, TWO_HOSTS):
        for web1_in, back_after_reload in (("", False), ("allow-stateful", True)):
            h = harness(hosts, web1=(web1_in, "allow-stateful"), web2=("", "web-stateful"))
            assert tcp_conversation(h, "web1", "db", 22) == (True, True), (hosts, web1_in)
            h.reload(model_from(net_text(web1=(web1_in, "deny-all"), web2=("", "web-stateful"))))
            assert reaches(ip(h, "db", "web1", 6, 22, 40000), "web1") == back_after_reload, (hosts, web1_in)
