"""Benchmark: TCP out through an uplink (source NAT) against routed TCP between two VMs, both through VMN.

One userspace bridge (TX checksum offload off in the namespaces, MAC and IP
declared: port security active) and one controller with one network file:
VMs h1 (network ``a``, 10.206.1.2/24, gateway 10.206.1.1) and h2 (network
``b``, 10.206.2.2/24, gateway 10.206.2.1), router ``r1`` joining ``a`` and
``b`` with uplink ``wan`` on port 9 (192.0.2.10/24, upstream gateway
192.0.2.1). The outside is a namespace on port 9 holding 192.0.2.1; the
controller finds its MAC by ARP. Each VM's default route is its gateway.

- ``nat``: h1 -> the outside (192.0.2.1). At the bridge the packet meets the
  router's default route, then ``uplink_out`` (TTL minus one, conntrack NAT
  in the uplink's zone) and ``snat`` (commit with source NAT to
  192.0.2.10), and leaves untagged to the upstream MAC; replies pass
  conntrack NAT in and are routed to h1;
- ``routed``: h1 -> h2 through the same router on the same bridge (TTL minus
  one, both MACs rewritten, no conntrack).

No ACLs: the row isolates what NAT costs over plain routing. Rounds
alternate the two; each is one iperf3 TCP test (first second omitted);
medians and run-by-run values are reported, and after each test the
datapath flows of the sender's and receiver's ports (how many passes a data
segment takes) as in :mod:`bench.data_plane`.

``python -m bench.data_plane_nat --private [ROUNDS] [SECONDS]`` runs the
same on a private ``ovs-vswitchd`` (an emulated hypervisor, as
:mod:`bench.data_plane_private`) and also reports Gbit/s per vswitchd core,
which holds still on a shared machine.
"""

from __future__ import annotations

import functools
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.data_plane import Plan, Samples, iperf, measure
from bench.data_plane_routed import wait_flows
from bench.harness import (
    Options,
    Row,
    controller,
    fmt,
    median,
    new_lab,
    prepare_environment,
    ratio,
    spread,
    write_yaml,
)
from controller.tools.lab import ControllerProcess, Host, MultiHostLab, wait_until

DPID = 0xD6
METRICS = ("Data plane TCP throughput, out through an uplink (SNAT)",)
VARIANTS = ("nat", "routed")
VMS = (
    ("h1", 1, "10.206.1.2", "10.206.1.1", "02:d6:00:00:00:01"),
    ("h2", 2, "10.206.2.2", "10.206.2.1", "02:d6:00:00:00:02"),
)
"""(name, port, address, its network's gateway, MAC) of the VMs; every subnet is a /24."""
UPLINK_PORT, UPLINK_IP, UPSTREAM = 9, "192.0.2.10", "192.0.2.1"


def plan(opts: Options) -> Plan:
    """3 rounds of 10 s tests; quick: 1 round of 1 s."""
    return Plan(1, 1) if opts.quick else Plan(10, 3)


def network(bridge: str | None) -> dict[str, Any]:
    """The network file: h1 and h2 in networks ``a`` and ``b`` of router ``r1``, whose uplink is port 9."""
    return {
        "controller": {"metrics_port": 0, "api_port": 0},
        "switches": {"s1": {"dpid": DPID, **({"bridge": bridge} if bridge else {})}},
        "networks": {
            name: {"vlan": 110 + i, "gateway": f"{vm[3]}/24"}
            for i, (name, vm) in enumerate(zip("ab", VMS, strict=True))
        },
        "vms": {
            name: {"switch": "s1", "port": port, "network": net, "ip": f"{ip}/24", "mac": mac}
            for net, (name, port, ip, _, mac) in zip("ab", VMS, strict=True)
        },
        "routers": {"r1": {"networks": ["a", "b"], "uplink": "wan"}},
        "uplinks": {"wan": {"switch": "s1", "port": UPLINK_PORT, "ip": f"{UPLINK_IP}/24", "gateway": UPSTREAM}},
    }


def _note(samples: dict[str, Samples], p: Plan) -> str:
    return (
        f"NAT {spread(samples['nat'].gbit(), 'Gbit/s', 2)} ({samples['nat'].summary()}); routed "
        f"{spread(samples['routed'].gbit(), 'Gbit/s', 2)} ({samples['routed'].summary()}). "
        f"iperf3 TCP, one stream, {p.seconds} s per test (first second omitted), {p.rounds} round(s) alternating "
        "on the same bridge and controller. NAT: h1 → an outside namespace on uplink port 9 (router r1's default "
        "route; conntrack NAT in the uplink's zone, commit with source NAT to the uplink address, untagged to the "
        "upstream MAC found by ARP; replies un-NATed and routed back). Routed: h1 → h2 in the router's other "
        "network (TTL minus one, both MACs rewritten, no conntrack). MAC and IP declared (port security), no ACLs. "
        "Userspace datapath: OVS, iperf3 client and server share the 2 cores."
    )


def run(opts: Options) -> list[Row]:
    """Alternating rounds (NAT, then routed) on one bridge of the system OVS and one controller; one row."""
    p = plan(opts)
    samples = {v: Samples() for v in VARIANTS}
    with new_lab() as lab, tempfile.TemporaryDirectory(prefix="vmn-bench-") as tmp:
        config = write_yaml(Path(tmp) / "net.yaml", network(lab.prefix + "b1"))
        with controller(config) as ctl:
            br = lab.add_bridge("b1", DPID, ctl.port)
            hosts: dict[str, Host] = {}
            for name, port, ip, gateway, mac in VMS:
                hosts[name] = lab.add_host(name, br, port, ip=f"{ip}/24", mac=mac)
                hosts[name].run(["ip", "route", "add", "default", "via", gateway], check=True)
            outside = lab.add_host("out", br, UPLINK_PORT, ip=f"{UPSTREAM}/24")
            targets = {"nat": outside, "routed": hosts["h2"]}
            for _ in range(p.rounds):
                for v in VARIANTS:
                    measure(samples[v], hosts["h1"], targets[v], p.seconds, f"({v})")
            lab.set_controller(br, None)
    nat, routed = median(samples["nat"].rates), median(samples["routed"].rates)
    return [
        Row(
            f"{METRICS[0]} vs routed TCP between two VMs on the same host, both through VMN (iperf3, Gbit/s)",
            fmt(nat and nat / 1e9, "Gbit/s", 2),
            fmt(routed and routed / 1e9, "Gbit/s", 2),
            ratio(nat, routed, True),
            "≥ 0.9×",
            _note(samples, p),
        )
    ]


def private(rounds: int = 3, seconds: int = 10) -> dict[str, list[tuple[float, float]]]:
    """The same on a private ``ovs-vswitchd``: print and return (Gbit/s, vswitchd cores) per test and variant."""
    from bench.data_plane_private import cpu_seconds

    prepare_environment()
    results: dict[str, list[tuple[float, float]]] = {v: [] for v in VARIANTS}
    with MultiHostLab() as lab, tempfile.TemporaryDirectory(prefix="vmn-bench-") as tmp:
        hv = lab.add_hypervisor("hv1")
        cfg = write_yaml(Path(tmp) / "net.yaml", network(None))
        ctl = ControllerProcess(cfg, listen_host=lab.controller_ip).start()
        try:
            br = hv.add_bridge("br", DPID, ctl.port)
            hosts = {}
            for name, port, ip, gateway, mac in VMS:
                hosts[name] = hv.add_vm(name, br, port, ip=f"{ip}/24", mac=mac)
                hosts[name].run(["ip", "route", "add", "default", "via", gateway], check=True)
            targets = {"nat": hv.add_vm("out", br, UPLINK_PORT, ip=f"{UPSTREAM}/24"), "routed": hosts["h2"]}
            wait_flows(hv, br, 10)
            pid = int((hv.dir / "ovs-vswitchd.pid").read_text())
            for _ in range(rounds):
                for v in VARIANTS:
                    target = targets[v]
                    wait_until(functools.partial(hosts["h1"].ping, target), 15, message=f"h1 -> {v}")
                    cpu0, t0 = cpu_seconds(pid), time.monotonic()
                    rate = iperf(hosts["h1"], target, seconds)
                    cores = (cpu_seconds(pid) - cpu0) / (time.monotonic() - t0)
                    results[v].append((rate / 1e9, cores))
                print({k: [f"{g:.2f}@{c:.2f}" for g, c in r[-1:]] for k, r in results.items()}, flush=True)
        finally:
            ctl.stop()
            ctl.log_path.unlink(missing_ok=True)
    base_rate = statistics.median(g for g, _ in results["routed"])
    base_eff = statistics.median(g / c for g, c in results["routed"])
    for v, runs in results.items():
        rate = statistics.median(g for g, _ in runs)
        eff = statistics.median(g / c for g, c in runs)
        print(
            f"{v}: median {rate:.2f} Gbit/s ({rate / base_rate:.2f}x routed; runs "
            f"{', '.join(f'{g:.2f}' for g, _ in runs)}); {eff:.3f} Gbit/s per vswitchd core "
            f"({eff / base_eff:.2f}x routed)"
        )
    return results


if __name__ == "__main__":
    argv = sys.argv[1:]
    if argv[:1] != ["--private"]:
        sys.exit("usage: python -m bench.data_plane_nat --private [ROUNDS] [SECONDS]")
    private(*(int(a) for a in argv[1:3]))
