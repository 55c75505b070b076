"""Benchmark 4: TCP throughput through our pipeline vs. the same bridge doing ``NORMAL``.

Two namespace VMs on one userspace bridge (TX checksum offload off inside
the namespaces, as :meth:`controller.tools.lab.Lab.add_host` does), declared in a
network file with MAC and IP (port security), in two variants served by
two controllers on the same bridge:

- ``lb``: each VM with an ``acl_in`` whose stateful rule admits the iperf3
  connection, and a load balancer in the same network: traffic crosses
  ingress (port security), conntrack, both ACL tables, the lb table, the
  commit table, learn and forward, and where it is delivered conntrack
  again and, for replies, the balancer's un-NAT zone;
- ``both ends``: no balancer; the VMs and their network each have an
  ``acl_in`` and an ``acl_out`` list (stateful): conntrack where the
  packet enters (``acl_port``, ``acl_net``, ``acl_commit``) and where it is
  delivered (``acl_out_net``, ``acl_out_port``, ``egress_commit``), all
  four lists on the way.

The peer is the same bridge with the controller removed and one
``actions=NORMAL`` flow. Rounds alternate ours (each variant) / NORMAL;
each is one iperf3 TCP test (first second omitted); medians are reported.
After each test the datapath flows of the two VM ports are read
(``dpctl/dump-flows``): how many megaflows, and how many datapath passes
(recirculations + 1) a data segment takes.
"""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
METRICS = ("Data plane TCP throughput", "Data plane TCP throughput, conntrack at both ends")
VARIANTS = ("lb", "both ends")
HEAVY = 1000
"""Packets a datapath flow must have carried in one test to count as a pass of the bulk direction."""


@dataclass(frozen=True)
class Plan:
    seconds: int
    rounds: int


@dataclass
class Datapath:
    """What one test used of the datapath (flows of the VMs' ports whose counters grew)."""

    flows: int
    passes: int
    """Datapath flows of the sender's port that carried the bulk of the test: passes per data segment."""


@dataclass
class Samples:
    """Throughputs (bit/s) and datapath readings of one configuration, one per round."""

    rates: list[float] = field(default_factory=list)
    datapath: list[Datapath] = field(default_factory=list)

    def gbit(self) -> list[float]:
        """The throughputs in Gbit/s."""
        return [v / 1e9 for v in self.rates]

    def summary(self) -> str:
        """Megaflows and passes per data segment, as ``a-b`` ranges over the rounds."""

        def span(values: list[int]) -> str:
            lo, hi = min(values, default=0), max(values, default=0)
            return str(lo) if lo == hi else f"{lo}-{hi}"

        return (
            f"{span([d.flows for d in self.datapath])} datapath flows used, "
            f"{span([d.passes for d in self.datapath])} datapath pass(es) per data segment"
        )


def plan(opts: Options) -> Plan:
    """3 rounds of 10 s tests; quick: 1 round of 1 s (after the omitted second)."""
    return Plan(1, 1) if opts.quick else Plan(10, 3)


ACL = [
    {"match": {"ip_proto": "tcp", "tcp_dst": IPERF_PORT}, "action": "allow", "stateful": True},
    {"match": {"ip_proto": "icmp"}, "action": "allow", "stateful": True},
]


def network_file(path: Path, bridge: str, hosts: list[Host], variant: str = "lb") -> Path:
    """One switch, one network, each host a VM with its MAC, IP and ACL lists.

    ``lb``: ``acl_in`` on each VM, a balancer beside them. ``both ends``:
    ``acl_in`` and ``acl_out`` on each VM and on the network, no balancer.
    """
    both = variant == "both ends"
    lists = {"acl_in": ["iperf"], "acl_out": ["iperf"]} if both else {"acl_in": ["iperf"]}
    net: dict[str, Any] = {
        "controller": {"metrics_port": 0},
        "switches": {"s1": {"dpid": DPID, "bridge": bridge}},
        "networks": {"bench": {"vlan": VLAN, **(lists if both else {})}},
        "vms": {
            h.name: {"switch": "s1", "port": h.ofport, "network": "bench", "mac": h.mac, "ip": f"{h.ip}/24", **lists}
            for h in hosts
        },
        "acls": {"iperf": ACL},
    }
    if not both:
        vip = ".".join((hosts[0].ip or "").split(".")[:3] + ["200"])
        net["load_balancers"] = {
            "web": {
                "vip": vip,
                "network": "bench",
                "protocol": "tcp",
                "port": 80,
                "backends": [hosts[-1].name],
                "health_check": {"type": "icmp", "interval": 1.0},
            }
        }
    return write_yaml(path, net)


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


_PACKETS = re.compile(r", packets:(\d+),")


def datapath_packets(hosts: tuple[Host, ...]) -> dict[str, int]:
    """Packet count of every datapath flow whose ``in_port`` is one of ``hosts``' bridge ports.

    Keyed by the flow's match and actions. The userspace datapath is shared
    by every bridge of the system OVS, so lines are picked by port name.
    """
    out = sh(["ovs-appctl", "dpctl/dump-flows", "--names"], check=False).stdout
    ports = tuple(f"in_port({h.port})" for h in hosts)
    counts = {}
    for line in out.splitlines():
        found = _PACKETS.search(line)
        if found and any(p in line for p in ports):
            key = line[: found.start()] + line[line.find(" actions:") :]
            counts[key] = int(found.group(1))
    return counts


def datapath_used(before: dict[str, int], after: dict[str, int], sender: Host) -> Datapath:
    """The flows a test used (their count grew), and the passes of its bulk direction.

    A data segment of the sender takes one datapath flow per pass (the
    first, then one per recirculation): the sender's flows that carried at
    least :data:`HEAVY` packets in the test.
    """
    grown = {key: n - before.get(key, 0) for key, n in after.items() if n > before.get(key, 0)}
    heavy = [key for key, n in grown.items() if n >= HEAVY and f"in_port({sender.port})" in key]
    return Datapath(len(grown), len(heavy))


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


def measure(samples: Samples, h1: Host, h2: Host, seconds: int, what: str) -> None:
    """Ping until ``h1`` reaches ``h2``, run one iperf3 test, read the datapath; append to ``samples``."""
    wait_until(lambda: h1.ping(h2), 15, message=f"h1 -> h2 {what}")
    before = datapath_packets((h1, h2))
    samples.rates.append(iperf(h1, h2, seconds))
    samples.datapath.append(datapath_used(before, datapath_packets((h1, h2)), h1))


def run(opts: Options) -> list[Row]:
    """Alternating rounds on one bridge (each variant of ours, then NORMAL); one row per variant."""
    p = plan(opts)
    ours = {v: Samples() for v in VARIANTS}
    normal = Samples()
    with new_lab() as lab, tempfile.TemporaryDirectory(prefix="vmn-bench-") as tmp:
        br = lab.add_bridge("b1", DPID, controller_port=None)
        h1 = lab.add_host("h1", br, 1, ip="10.204.0.1", mac="02:d4:00:00:00:01")
        h2 = lab.add_host("h2", br, 2, ip="10.204.0.2", mac="02:d4:00:00:00:02")
        configs = {v: network_file(Path(tmp) / f"net-{i}.yaml", br, [h1, h2], v) for i, v in enumerate(VARIANTS)}
        expected = {v: expected_flows(configs[v], DPID) for v in VARIANTS}
        with controller(configs["lb"]) as ctl_lb, controller(configs["both ends"]) as ctl_both:
            ports = {"lb": ctl_lb.port, "both ends": ctl_both.port}
            for _ in range(p.rounds):
                for v in VARIANTS:
                    use_ours(lab, br, ports[v], expected[v])
                    measure(ours[v], h1, h2, p.seconds, f"through our pipeline ({v})")
                use_normal(lab, br)
                measure(normal, h1, h2, p.seconds, "with NORMAL")
        use_normal(lab, br)
    g_normal = median(normal.rates)
    common = (
        f"iperf3 TCP, one stream h1 → h2, {p.seconds} s per test (first second omitted), "
        f"{p.rounds} round(s) alternating on the same bridge (ours as in the other data-plane row, ours as here, "
        f"NORMAL); NORMAL {spread(normal.gbit(), 'Gbit/s', 2)} ({normal.summary()}). Userspace datapath: OVS, "
        "iperf3 client and server share the 2 cores."
    )
    notes = {
        "lb": (
            f"Ours {spread(ours['lb'].gbit(), 'Gbit/s', 2)} ({ours['lb'].summary()}). Both VMs declared with MAC "
            "and IP (port-security rules active), each with a stateful acl_in (every packet through conntrack "
            "and both ACL tables where it enters, conntrack again where it is delivered), a load balancer in "
            "their network (its un-NAT zone at delivery, for replies only). "
        ),
        "both ends": (
            f"Ours {spread(ours['both ends'].gbit(), 'Gbit/s', 2)} ({ours['both ends'].summary()}). Both VMs "
            "declared with MAC and IP, the VMs and their network each with a stateful acl_in and acl_out: "
            "conntrack and two ACL tables where a packet enters, conntrack and two acl_out tables where it is "
            "delivered, no load balancer. "
        ),
    }
    metrics = {
        "lb": f"{METRICS[0]} (iperf3, Gbit/s): our pipeline vs one NORMAL flow",
        "both ends": f"{METRICS[1]}, acl_in and acl_out (iperf3, Gbit/s): our pipeline vs one NORMAL flow",
    }
    goals = {"lb": "≥ 0.95×", "both ends": "≥ 0.9×"}
    rows = []
    for v in VARIANTS:
        g_ours = median(ours[v].rates)
        rows.append(
            Row(
                metrics[v],
                fmt(g_ours and g_ours / 1e9, "Gbit/s", 2),
                fmt(g_normal and g_normal / 1e9, "Gbit/s", 2),
                ratio(g_ours, g_normal, True),
                goals[v],
                notes[v] + common,
            )
        )
    return rows
