"""Benchmark: routed TCP throughput against the same two VMs in one network, both through VMN.

Two namespace VMs on one userspace bridge (TX checksum offload off, MAC and
IP declared: port security active), addressed 10.205.1.2/24 and
10.205.2.2/24, served in turn by two controllers on the same bridge:

- ``routed``: h1 in network ``a`` (gateway 10.205.1.1), h2 in network ``b``
  (gateway 10.205.2.1), router ``r1`` joining them. Each VM's route to the
  other subnet is its gateway; the bridge routes at the first switch (TTL
  minus one, gateway MAC as source, the VM's MAC as destination, the other
  network's VLAN) and delivers untagged;
- ``same network``: both VMs in one network without a gateway; each VM's
  route to the other subnet is on-link (plain L2 through VMN's pipeline).

No ACLs in either (no conntrack): the row isolates what routing costs.
Rounds alternate the two; each is one iperf3 TCP test (first second
omitted); medians and run-by-run values are reported, and after each test
the datapath flows of the two VM ports (how many passes a data segment
takes) as in :mod:`bench.data_plane`.

``python -m bench.data_plane_routed --private [ROUNDS] [SECONDS]`` runs the
same on a private ``ovs-vswitchd`` (an emulated hypervisor, as
:mod:`bench.data_plane_private`) and also reports Gbit/s per vswitchd core,
which holds still on a shared machine.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from bench.config_forwarding import expected_flows
from bench.data_plane import Plan, Samples, iperf, measure, use_ours
from bench.harness import Options, Row, controller, fmt, median, new_lab, prepare_environment, ratio, spread, write_yaml
from controller.tools.lab import ControllerProcess, Host, Hypervisor, MultiHostLab, wait_until

DPID = 0xD5
METRICS = ("Data plane TCP throughput, routed between two networks",)
VARIANTS = ("routed", "same network")
ADDRESSES = (("10.205.1.2", "10.205.1.1"), ("10.205.2.2", "10.205.2.1"))
"""(VM address, its network's gateway) of h1 and h2; every subnet is a /24."""
MACS = ("02:d5:00:00:00:01", "02:d5:00:00:00:02")


def plan(opts: Options) -> Plan:
    """5 rounds of 10 s tests; quick: 1 round of 1 s (after the omitted second)."""
    return Plan(1, 1) if opts.quick else Plan(10, 5)


def network(bridge: str | None, ports: tuple[int, int], variant: str) -> dict[str, Any]:
    """The network file of ``variant`` for h1 and h2 on ``ports`` of one switch (``bridge``: its OVS name)."""
    routed = variant == "routed"
    names = ("a", "b") if routed else ("bench", "bench")
    vms = {
        f"h{i + 1}": {
            "switch": "s1",
            "port": ports[i],
            "network": names[i],
            "ip": f"{ADDRESSES[i][0]}/24",
            "mac": MACS[i],
        }
        for i in range(2)
    }
    if routed:
        networks = {
            "a": {"vlan": 101, "gateway": f"{ADDRESSES[0][1]}/24"},
            "b": {"vlan": 102, "gateway": f"{ADDRESSES[1][1]}/24"},
        }
    else:
        networks = {"bench": {"vlan": 100}}
    net: dict[str, Any] = {
        "controller": {"metrics_port": 0},
        "switches": {"s1": {"dpid": DPID, **({"bridge": bridge} if bridge else {})}},
        "networks": networks,
        "vms": vms,
    }
    if routed:
        net["routers"] = {"r1": {"networks": ["a", "b"]}}
    return net


def route(hosts: tuple[Host, Host], variant: str) -> None:
    """Point each VM's route to the other's /24 at its gateway (``routed``) or on-link (``same network``)."""
    for i, host in enumerate(hosts):
        other = ADDRESSES[1 - i][0].rsplit(".", 1)[0] + ".0/24"
        via = ["via", ADDRESSES[i][1]] if variant == "routed" else []
        host.run(["ip", "route", "replace", other, *via, "dev", host.iface], check=True)


def _note(samples: dict[str, Samples], p: Plan) -> str:
    return (
        f"Routed {spread(samples['routed'].gbit(), 'Gbit/s', 2)} ({samples['routed'].summary()}); same network "
        f"{spread(samples['same network'].gbit(), 'Gbit/s', 2)} ({samples['same network'].summary()}). "
        f"iperf3 TCP, one stream h1 → h2, {p.seconds} s per test (first second omitted), {p.rounds} round(s) "
        "alternating on the same bridge, one controller per variant. Routed: h1 and h2 in two networks joined by "
        "router r1 (each VM's route via its gateway; the bridge decrements the TTL and rewrites both MACs); same "
        "network: the same VMs and addresses in one network, on-link routes. MAC and IP declared (port security), "
        "no ACLs. Userspace datapath: OVS, iperf3 client and server share the 2 cores; "
        "`python -m bench.data_plane_routed --private` measures the same on a private ovs-vswitchd."
    )


def run(opts: Options) -> list[Row]:
    """Alternating rounds on one bridge of the system OVS (routed, then same network); one row."""
    p = plan(opts)
    samples = {v: Samples() for v in VARIANTS}
    with new_lab() as lab, tempfile.TemporaryDirectory(prefix="vmn-bench-") as tmp:
        br = lab.add_bridge("b1", DPID, controller_port=None)
        h1 = lab.add_host("h1", br, 1, ip=f"{ADDRESSES[0][0]}/24", mac=MACS[0])
        h2 = lab.add_host("h2", br, 2, ip=f"{ADDRESSES[1][0]}/24", mac=MACS[1])
        configs = {v: write_yaml(Path(tmp) / f"net-{i}.yaml", network(br, (1, 2), v)) for i, v in enumerate(VARIANTS)}
        expected = {v: expected_flows(configs[v], DPID) for v in VARIANTS}
        with controller(configs["routed"]) as ctl_routed, controller(configs["same network"]) as ctl_l2:
            ports = {"routed": ctl_routed.port, "same network": ctl_l2.port}
            for _ in range(p.rounds):
                for v in VARIANTS:
                    use_ours(lab, br, ports[v], expected[v])
                    route((h1, h2), v)
                    measure(samples[v], h1, h2, p.seconds, f"({v})")
        lab.set_controller(br, None)
    routed, same = median(samples["routed"].rates), median(samples["same network"].rates)
    return [
        Row(
            f"{METRICS[0]} vs the same VMs in one network, both through VMN (iperf3, Gbit/s)",
            fmt(routed and routed / 1e9, "Gbit/s", 2),
            fmt(same and same / 1e9, "Gbit/s", 2),
            ratio(routed, same, True),
            "≥ 0.95×",
            _note(samples, p),
        )
    ]


def wait_flows(hv: Hypervisor, bridge: str, count: int) -> None:
    """Poll until ``bridge`` of ``hv`` holds at least ``count`` flows (30 s at most)."""
    wait_until(lambda: len(hv.dump_flows(bridge)) >= count, 30, message=f"{count} flows on {bridge}")


def private(rounds: int = 5, seconds: int = 10) -> dict[str, list[tuple[float, float]]]:
    """The same on a private ``ovs-vswitchd``: print and return (Gbit/s, vswitchd cores) per test and variant."""
    from bench.data_plane_private import cpu_seconds

    prepare_environment()
    results: dict[str, list[tuple[float, float]]] = {v: [] for v in VARIANTS}
    with MultiHostLab() as lab, tempfile.TemporaryDirectory(prefix="vmn-bench-") as tmp:
        hv = lab.add_hypervisor("hv1")
        br = hv.add_bridge("br", DPID, None)
        h1 = hv.add_vm("h1", br, 1, ip=f"{ADDRESSES[0][0]}/24", mac=MACS[0])
        h2 = hv.add_vm("h2", br, 2, ip=f"{ADDRESSES[1][0]}/24", mac=MACS[1])
        pid = int((hv.dir / "ovs-vswitchd.pid").read_text())
        controllers: dict[str, ControllerProcess] = {}
        expected: dict[str, int] = {}
        try:
            for i, v in enumerate(VARIANTS):
                cfg = Path(tmp) / f"net-{i}.yaml"
                cfg.write_text(yaml.safe_dump(network(None, (1, 2), v), sort_keys=False))
                expected[v] = expected_flows(cfg, DPID)
                controllers[v] = ControllerProcess(cfg, listen_host=lab.controller_ip).start()
            for _ in range(rounds):
                for v in VARIANTS:
                    hv.vsctl("del-controller", br)
                    hv.ofctl("del-flows", br)
                    hv.vsctl("set-controller", br, controllers[v].target)
                    wait_flows(hv, br, expected[v])
                    route((h1, h2), v)
                    wait_until(lambda: h1.ping(h2), 15, message=f"h1 -> h2 ({v})")
                    cpu0, t0 = cpu_seconds(pid), time.monotonic()
                    rate = iperf(h1, h2, seconds)
                    cores = (cpu_seconds(pid) - cpu0) / (time.monotonic() - t0)
                    results[v].append((rate / 1e9, cores))
                print({k: [f"{g:.2f}@{c:.2f}" for g, c in r[-1:]] for k, r in results.items()}, flush=True)
        finally:
            for ctl in controllers.values():
                ctl.stop()
                ctl.log_path.unlink(missing_ok=True)
    same = results["same network"]
    base_rate = statistics.median(g for g, _ in same)
    base_eff = statistics.median(g / c for g, c in same)
    for v, runs in results.items():
        rate = statistics.median(g for g, _ in runs)
        eff = statistics.median(g / c for g, c in runs)
        print(
            f"{v}: median {rate:.2f} Gbit/s ({rate / base_rate:.2f}x same network; runs "
            f"{', '.join(f'{g:.2f}' for g, _ in runs)}); {eff:.3f} Gbit/s per vswitchd core "
            f"({eff / base_eff:.2f}x same network)"
        )
    return results


if __name__ == "__main__":
    argv = sys.argv[1:]
    if argv[:1] != ["--private"]:
        sys.exit("usage: python -m bench.data_plane_routed --private [ROUNDS] [SECONDS]")
    private(*(int(a) for a in argv[1:3]))
