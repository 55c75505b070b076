"""The ``ovs-ofctl`` printer shared by ``vmn flows``, the API and ``vmn plan``."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from controller.api.ofctl import _ct_state, flow_line, flow_lines, group_lines, plan_text
from controller.cli import main
from controller.config import loads_model
from controller.flows.rules import CT_EST, CT_INV, CT_TRK, Ct, Move, Nat, Output, Rule, SetField, make_match
from controller.tools.trace import build_fabric

EVERYTHING = """
switches: {s1: {dpid: 1}, s2: {dpid: 2}}
links: [[s1:10, s2:10]]
networks: {red: {vlan: 100, acl_in: [net-in]}, blue: {vlan: 200}}
vms:
  client: {switch: s1, port: 1, network: red, ip: 10.70.0.1/24, mac: "02:00:00:00:01:01", acl_in: [client-out],
           ipv6: "2001:db8::1/64"}
  web1: {switch: s2, port: vnet3, network: red, ip: 10.70.0.3/24}
  web2: {switch: s2, port: 4, network: red, ip: 10.70.0.4/24, mac: "02:00:00:00:02:04"}
  guest: {switch: s2, port: 5, network: blue, ip: 10.70.0.5/24}
acls:
  client-out:
    - {match: {ip_proto: tcp, tcp_dst: 80}, action: allow}
    - {match: {ip_proto: udp, udp_dst: 53, ipv4_dst: 10.70.0.0/24}, action: allow}
    - {match: {ip_proto: icmp, icmp_type: 8}, action: allow}
    - {match: {ip_proto: tcp, tcp_dst: 5432}, action: allow, stateful: true}
    - {match: {ipv6_dst: "2001:db8::/64", ip_proto: icmpv6, icmpv6_type: 128}, action: allow}
  net-in:
    - {match: {eth_type: arp}, action: allow}
    - {match: {eth_src: "02:00:00:00:01:01"}, action: allow}
    - {action: allow}
load_balancers:
  web: {vip: 10.70.0.100, network: red, protocol: tcp, port: 80, backends: [web1, {vm: web2, weight: 2}]}
mirrors:
  tap: {switch: s1, port: 20, vms: [client], direction: both}
"""


def test_actions_and_matches_are_written_as_ovs_ofctl_does() -> None:
    rule = Rule(
        5,
        20,
        300,
        make_match(
            in_port=3, ipv4_dst=("10.0.0.0", "255.255.255.0"), ct_state=(CT_TRK | CT_EST, CT_TRK | CT_EST | CT_INV)
        ),
        (Ct(7, commit=True, recirc_table=30, nat=Nat(dst="10.0.0.5", port=80), mark=1), Move("eth_src", "eth_dst")),
        goto=None,
    )
    assert flow_line(rule) == (
        f"cookie={hex(rule.cookie)},table=20,priority=300,ct_state=+trk+est-inv,in_port=3,"
        "nw_dst=10.0.0.0/255.255.255.0 actions=ct(commit,zone=7,table=30,nat(dst=10.0.0.5:80),"
        "exec(set_field:0x1->ct_mark)),move:eth_src[]->eth_dst[]"
    )
    drop = Rule(1, 0, 0)
    assert flow_line(drop).endswith("table=0,priority=0 actions=drop")
    out = Rule(1, 0, 1, (), (SetField("vlan_vid", 0x1064), Output(0xFFFFFFFD, 128)), goto=5, write_metadata=(1, 3))
    assert flow_line(out).endswith(
        "priority=1 actions=set_field:0x1064->vlan_vid,CONTROLLER:128,write_metadata:0x1/0x3,goto_table:5"
    )
    assert _ct_state(CT_TRK, CT_TRK | CT_INV) == "+trk-inv"


def test_plan_text() -> None:
    assert plan_text([("s1", "01", ["a"], ["b"]), ("s2", "02", [], [])]) == (
        "s1 (01): 1 removed, 1 added\n- a\n+ b\ns2 (02): no change\n"
    )


@pytest.mark.skipif(shutil.which("ovs-ofctl") is None, reason="needs ovs-ofctl (scripts/setup.sh installs it)")
def test_every_flow_of_a_rich_file_parses_with_ovs_ofctl(tmp_path: Path) -> None:
    fabric = build_fabric(loads_model(EVERYTHING))
    lines = [line for rules in fabric.fake.flows.values() for line in flow_lines(rules.values())]
    assert len(lines) > 200
    assert any("ct(commit" in line for line in lines) and any("group:" in line for line in lines)
    path = tmp_path / "flows.txt"
    path.write_text("\n".join(lines) + "\n")
    proc = subprocess.run(
        ["ovs-ofctl", "-O", "OpenFlow13", "parse-flows", str(path)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("OFPT_FLOW_MOD") == len(lines)
    groups = [line for gs in fabric.fake.groups.values() for line in group_lines(gs.values())]
    assert groups and all(line.startswith("group_id=") for line in groups)


def test_vmn_flows_prints_each_switch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "net.yaml"
    path.write_text(EVERYTHING)
    assert main(["flows", str(path), "--switch", "s2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# s2 dpid=0000000000000002 flows=") and "# s1" not in out
    assert "group_id=" in out
    assert main(["flows", str(path), "--switch", "s9"]) == 2
    assert capsys.readouterr().err == "vmn flows: unknown switch 's9' (switches: s1, s2)\n"
    assert main(["flows", str(path)]) == 0
    both = capsys.readouterr().out
    assert both.count("\n# s") == 1 and both.startswith("# s1")
