"""Benchmark 4: TCP throughput through our pipeline vs. the same bridge doing ``NORMAL``.

Two namespace VMs on one userspace bridge (TX checksum offload off inside
the namespaces, as :meth:`controller.tools.lab.Lab.add_host` does), declared in a
network file with MAC and IP, each with an ACL whose stateful rule admits
the iperf3 connection, and a load balancer in the same network: traffic
crosses ingress (port security), conntrack, both ACL tables, the lb table,
the commit table, learn and forward. The peer is the same bridge
with the controller removed and one ``actions=NORMAL`` flow. Rounds
alternate ours / NORMAL; each is one iperf3 TCP test (first second
omitted); medians are reported.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.config_forwarding import expected_flows
from bench.harness import (
    Options,
    Row,
    controller,
    flow_count,
    fmt,
    median,
    new_lab,
    ratio,
    spread,
    stop_process,
    write_yaml,
)
from controller.tools.lab import OFCTL, Host, Lab, sh, wait_until

DPID = 0xD4
VLAN = 100
IPERF_PORT = 5201
METRICS = ("Data plane TCP throughput",)


@dataclass(frozen=True)
class Plan:
    seconds: int
    rounds: int


def plan(opts: Options) -> Plan:
    """3 rounds of 10 s tests; quick: 1 round of 5 s."""
    return Plan(5, 1) if opts.quick else Plan(10, 3)


def network_file(path: Path, bridge: str, hosts: list[Host]) -> Path:
    """One switch, one network, each host a VM with its MAC, IP and ACL; a balancer beside them."""
    vip = ".".join((hosts[0].ip or "").split(".")[:3] + ["200"])
    return write_yaml(
        path,
        {
            "controller": {"metrics_port": 0},
            "switches": {"s1": {"dpid": DPID, "bridge": bridge}},
            "networks": {"bench": {"vlan": VLAN}},
            "vms": {
                h.name: {
                    "switch": "s1",
                    "port": h.ofport,
                    "network": "bench",
                    "mac": h.mac,
                    "ip": f"{h.ip}/24",
                    "acl_in": ["iperf"],
                }
                for h in hosts
            },
            "acls": {
                "iperf": [
                    {"match": {"ip_proto": "tcp", "tcp_dst": IPERF_PORT}, "action": "allow", "stateful": True},
                    {"match": {"ip_proto": "icmp"}, "action": "allow", "stateful": True},
                ]
            },
            "load_balancers": {
                "web": {
                    "vip": vip,
                    "network": "bench",
                    "protocol": "tcp",
                    "port": 80,
                    "backends": [hosts[-1].name],
                    "health_check": {"type": "icmp", "interval": 1.0},
                }
            },
        },
    )


def iperf(client: Host, server: Host, seconds: int) -> float:
    """Received TCP throughput (bit/s) of one iperf3 test from ``client`` to ``server``.

    Raises
    ------
    RuntimeError
        If iperf3 fails or prints no result.
    """
    srv = server.popen(["iperf3", "-s", "-1", "-B", server.ip or "", "-p", str(IPERF_PORT)])
    try:
        wait_until(
            lambda: server.run(["ss", "-Hltn", f"sport = :{IPERF_PORT}"]).stdout.strip(),
            10,
            0.05,
            message="iperf3 server listening",
        )
        out = client.run(
            ["iperf3", "-c", server.ip or "", "-p", str(IPERF_PORT), "-t", str(seconds), "-O", "1", "-J"],
            timeout=seconds + 30,
        )
        try:
            result = json.loads(out.stdout)
            return float(result["end"]["sum_received"]["bits_per_second"])
        except (ValueError, KeyError) as err:
            raise RuntimeError(f"iperf3 failed: {out.stdout[-300:]} {out.stderr[-300:]}") from err
    finally:
        stop_process(srv)


def use_ours(lab: Lab, bridge: str, port: int, expected: int) -> None:
    """Empty the bridge and hand it to our controller; wait for its flows.

    ``expected`` is the count without learned hosts; from the second round
    on the controller also reinstalls the hosts it still knows (one atomic
    bundle), so at least that many flows are awaited.
    """
    lab.set_controller(bridge, None)
    sh([*OFCTL, "del-flows", bridge])
    lab.set_controller(bridge, port)
    wait_until(lambda: flow_count(bridge) >= expected, 30, 0.05, message=f"{bridge} holds at least {expected} flows")


def use_normal(lab: Lab, bridge: str) -> None:
    """Remove the controller and leave a single ``actions=NORMAL`` flow."""
    lab.set_controller(bridge, None)
    sh([*OFCTL, "del-flows", bridge])
    sh([*OFCTL, "add-flow", bridge, "priority=0,actions=NORMAL"])


def run(opts: Options) -> list[Row]:
    """Alternating rounds on one bridge; one row."""
    p = plan(opts)
    ours: list[float] = []
    normal: list[float] = []
    with new_lab() as lab, tempfile.TemporaryDirectory(prefix="vmn-bench-") as tmp:
        br = lab.add_bridge("b1", DPID, controller_port=None)
        h1 = lab.add_host("h1", br, 1, ip="10.204.0.1", mac="02:d4:00:00:00:01")
        h2 = lab.add_host("h2", br, 2, ip="10.204.0.2", mac="02:d4:00:00:00:02")
        config = network_file(Path(tmp) / "net.yaml", br, [h1, h2])
        expected = expected_flows(config, DPID)
        with controller(config) as ctl:
            for _ in range(p.rounds):
                use_ours(lab, br, ctl.port, expected)
                wait_until(lambda: h1.ping(h2), 15, message="h1 -> h2 through our pipeline")
                ours.append(iperf(h1, h2, p.seconds))
                use_normal(lab, br)
                wait_until(lambda: h1.ping(h2), 15, message="h1 -> h2 with NORMAL")
                normal.append(iperf(h1, h2, p.seconds))
        use_normal(lab, br)
    g_ours, g_normal = median(ours), median(normal)
    gbit = [v / 1e9 for v in ours], [v / 1e9 for v in normal]
    note = (
        f"iperf3 TCP, one stream h1 → h2, {p.seconds} s per test (first second omitted), "
        f"{p.rounds} round(s) alternating on the same bridge; ours "
        f"{spread(gbit[0], 'Gbit/s', 2)}; NORMAL {spread(gbit[1], 'Gbit/s', 2)}. Both VMs "
        "declared with MAC and IP (port-security rules active), each with a stateful ACL "
        "(every packet through conntrack and both ACL tables), a load balancer in their "
        "network. Userspace datapath: OVS, "
        "iperf3 client and server share the 2 cores."
    )
    return [
        Row(
            f"{METRICS[0]} (iperf3, Gbit/s): our pipeline vs one NORMAL flow",
            fmt(g_ours and g_ours / 1e9, "Gbit/s", 2),
            fmt(g_normal and g_normal / 1e9, "Gbit/s", 2),
            ratio(g_ours, g_normal, True),
            "≥ 0.95×",
            note,
        )
    ]
