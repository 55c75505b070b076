"""Overlay benchmarks: TCP host-to-host through VMN's tunnels vs a plain VXLAN port with NORMAL; flows per switch.

Run as root: ``PYTHONPATH=. .venv/bin/python -m bench.overlay [--seconds N] [--rounds N]``.

Throughput: two emulated hypervisors (:class:`~controller.tools.lab.MultiHostLab`,
private OVS each, 1600-byte veth underlay), provisioned by ``vmn provision
--host``; one VM on each; one iperf3 TCP stream between them, alternating
VMN's flows and, on the same bridges and tunnel ports, the controller
removed and a single ``actions=NORMAL`` flow (OVS learning over the VXLAN
port). Flows per switch: the flows the controller wants on each switch of
the 3-host fabric of ``tests/ovs/test_overlay_ovs.py`` (every VM learned).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from bench.data_plane import iperf
from controller.config import loads_model
from controller.tools.lab import ControllerProcess, MultiHostLab, wait_until
from controller.tools.trace import build_fabric

FILE = """
controller: {{metrics_port: 0, api_port: 0}}
hosts:
  hv1: {{tunnel_ip: 172.31.0.1, switch: s1}}
  hv2: {{tunnel_ip: 172.31.0.2, switch: s2}}
overlay: {{type: vxlan, mtu: 1600}}
switches:
  s1: {{dpid: 0xb1, bridge: br-int}}
  s2: {{dpid: 0xb2, bridge: br-int}}
networks: {{red: {{vlan: 100}}}}
vms:
  a: {{switch: s1, port: {a}, network: red, ip: 10.95.0.1/24, mac: "02:95:00:00:00:01"}}
  b: {{switch: s2, port: {b}, network: red, ip: 10.95.0.2/24, mac: "02:95:00:00:00:02"}}
"""


def throughput(seconds: int, rounds: int) -> tuple[list[float], list[float]]:
    """Bit/s of each round: (VMN's overlay, plain VXLAN with NORMAL)."""
    ours: list[float] = []
    normal: list[float] = []
    with MultiHostLab() as lab, tempfile.TemporaryDirectory() as tmp:
        hv1, hv2 = lab.add_hypervisor("hv1"), lab.add_hypervisor("hv2")
        lab.underlay(hv1, "172.31.0.1")
        lab.underlay(hv2, "172.31.0.2")
        a = hv1.add_vm("a", "br-int", None, ip="10.95.0.1/24", mac="02:95:00:00:00:01", attach=False)
        b = hv2.add_vm("b", "br-int", None, ip="10.95.0.2/24", mac="02:95:00:00:00:02", attach=False)
        config = Path(tmp) / "net.yaml"
        config.write_text(FILE.format(a=a.port, b=b.port))
        with ControllerProcess(config, listen_host=lab.controller_ip) as ctl:
            for hv in (hv1, hv2):
                done = hv.provision(config, hv.name, ctl.port)
                if done.returncode:
                    raise RuntimeError(done.stderr)
            wait_until(lambda: hv1.ping("172.31.0.2"), 10, message="underlay")
            target = f"tcp:{lab.controller_ip}:{ctl.port}"
            for _ in range(rounds):
                for hv in (hv1, hv2):
                    hv.vsctl("set-controller", "br-int", target)
                wait_until(lambda: a.ping(b), 30, message="a -> b through VMN's flows")
                ours.append(iperf(a, b, seconds))
                for hv in (hv1, hv2):
                    hv.vsctl("del-controller", "br-int")
                    hv.ofctl("del-flows", "br-int")
                    hv.ofctl("add-flow", "br-int", "priority=0,actions=NORMAL")
                wait_until(lambda: a.ping(b), 30, message="a -> b with NORMAL")
                normal.append(iperf(a, b, seconds))
                for hv in (hv1, hv2):
                    hv.ofctl("del-flows", "br-int")
    return ours, normal


def flows_per_switch(vms_per_network: int = 2) -> dict[str, int]:
    """Flows the controller wants per switch of a 3-host fabric, every VM learned.

    Three hosts (one ``br-int`` each), networks ``red`` and ``blue``
    (tracked: a stateful ``acl_out``), ``vms_per_network`` VMs of each
    network on every host.
    """
    lines = []
    for h in (1, 2, 3):
        for n, net in enumerate(("red", "blue")):
            for i in range(vms_per_network):
                port = 1 + n * vms_per_network + i
                extra = ", acl_out: [web]" if net == "blue" else ""
                lines.append(
                    f"  {net}{h}{i}: {{switch: s{h}, port: {port}, network: {net}, "
                    f'ip: 10.{96 + n}.{h}.{i + 1}/16, mac: "02:96:{n:02x}:{h:02x}:00:{i + 1:02x}"{extra}}}'
                )
    text = (
        "hosts:\n"
        + "".join(f"  hv{h}: {{tunnel_ip: 172.31.0.{h}, switch: s{h}}}\n" for h in (1, 2, 3))
        + "switches:\n"
        + "".join(f"  s{h}: {{dpid: {h}, bridge: br-int}}\n" for h in (1, 2, 3))
        + "networks: {red: {vlan: 100}, blue: {vlan: 200}}\n"
        + "acls: {web: [{match: {ip_proto: tcp, tcp_dst: 80}, action: allow, stateful: true}, {action: deny}]}\n"
        + "vms:\n"
        + "\n".join(lines)
    )
    fabric = build_fabric(loads_model(text))
    return {s.name: len(fabric.fake.core.flows.rules(s.dpid)) for s in fabric.model.switches}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    counts = flows_per_switch()
    print("flows per switch (3 hosts, 2 networks, 2 VMs of each per host, a stateful acl_out):", counts)
    ours, normal = throughput(args.seconds, args.rounds)
    mo, mn = statistics.median(ours), statistics.median(normal)
    print(f"overlay TCP: VMN {mo / 1e9:.2f} Gbit/s, VXLAN+NORMAL {mn / 1e9:.2f} Gbit/s, ratio {mo / mn:.2f}x")
    print("rounds (Gbit/s):", [round(x / 1e9, 2) for x in ours], [round(x / 1e9, 2) for x in normal])


if __name__ == "__main__":
    main()
