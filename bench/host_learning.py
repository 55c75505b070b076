"""Benchmark 2: host learning on a real userspace OVS bridge, VMN vs. Faucet.

A namespace on VM port 1 sends frames from N fresh source MACs
(:mod:`bench.mac_flood`, AF_PACKET, round-robin at a fixed frame rate, so an
unlearned host keeps talking); port 2 holds a second namespace. We time
from the first frame until the bridge holds a learn flow (``dl_src=``) for
every one of the N MACs, polling ``ovs-ofctl dump-flows``.

VMN runs with a network file (one switch, one network, a VM without MAC
on each port) raising ``max_hosts_per_port`` and ``packet_in_rate``; Faucet
with the equivalent faucet.yaml (one dp, one VLAN, ``max_hosts`` raised on
the VLAN and the ports, ``ignore_learn_ins: 0``). Same bridge layout,
fresh bridge and controller per trial.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench import faucet_peer
from bench.harness import (
    BENCH_DIR,
    SYSTEM_PY,
    Options,
    Row,
    controller,
    fmt,
    learned_macs,
    median,
    new_lab,
    ratio,
    spread,
    stop_process,
    wait_flows_stable,
    write_yaml,
)

DPID = 0xB2
VLAN = 100
PREFIX = "02:b2"
DST_MAC = "02:ee:ee:ee:ee:02"
RAISED_LIMIT = 1_000_000
SENDER = BENCH_DIR / "mac_flood.py"
METRICS = ("Host learning on real OVS",)


@dataclass(frozen=True)
class Plan:
    macs: int
    pps: int
    runs: int
    timeout: float
    poll: float = 0.1


def plan(opts: Options) -> Plan:
    """2,000 MACs at 5,000 frames/s, 3 trials each; quick: 100 MACs, 1 trial."""
    return Plan(100, 2000, 1, 30) if opts.quick else Plan(2000, 5000, 3, 150)


def vmn_file(path: Path, bridge: str) -> Path:
    """The network file for our controller (limits raised, VMs without MAC)."""
    return write_yaml(
        path,
        {
            "controller": {"metrics_port": 0, "packet_in_rate": RAISED_LIMIT, "max_hosts_per_port": RAISED_LIMIT},
            "switches": {"s1": {"dpid": DPID, "bridge": bridge}},
            "networks": {"bench": {"vlan": VLAN}},
            "vms": {
                "h1": {"switch": "s1", "port": 1, "network": "bench"},
                "h2": {"switch": "s1", "port": 2, "network": "bench"},
            },
        },
    )


@dataclass(frozen=True)
class Trial:
    seconds: float | None
    learned: int
    frames_sent: int


@contextmanager
def ours(tmp: Path, bridge: str) -> Iterator[int]:
    """Our controller for ``bridge``; yields its OpenFlow port."""
    with controller(vmn_file(tmp / "net.yaml", bridge)) as ctl:
        yield ctl.port


@contextmanager
def theirs(tmp: Path, bridge: str) -> Iterator[int]:
    """Faucet configured equivalently; yields its OpenFlow port."""
    cfg = faucet_peer.write_config(tmp / "faucet.yaml", faucet_peer.FaucetDp("bench", DPID, VLAN, (1, 2), RAISED_LIMIT))
    with faucet_peer.faucet(cfg) as proc:
        yield proc.port


Launcher = Callable[[Path, str], AbstractContextManager[int]]
"""(temp dir, bridge name) -> context yielding the controller's OpenFlow port."""


def trial(launch: Launcher, p: Plan) -> Trial:
    """One fresh bridge + controller; time until all ``p.macs`` MACs are learned."""
    with new_lab() as lab, tempfile.TemporaryDirectory(prefix="vmn-bench-") as tmp:
        br = lab.add_bridge("b1", DPID, controller_port=None)
        h1 = lab.add_host("h1", br, 1)
        lab.add_host("h2", br, 2)
        with launch(Path(tmp), br) as port:
            lab.set_controller(br, port)
            wait_flows_stable(br, quiet=1.0, timeout=60)
            sender = h1.popen(
                [SYSTEM_PY, str(SENDER), h1.iface, str(p.macs), str(p.pps), DST_MAC, PREFIX, str(p.timeout)]
            )
            try:
                first = (sender.stdout.readline() if sender.stdout else "").split()
                if len(first) != 2 or first[0] != "start":
                    raise RuntimeError(f"sender did not start: {first} {sender.stderr}")
                t0 = float(first[1])
                learned: set[str] = set()
                while len(learned) < p.macs and time.monotonic() - t0 < p.timeout:
                    time.sleep(p.poll)
                    learned = learned_macs(br, PREFIX)
                done = time.monotonic()
            finally:
                stop_process(sender)
            out = sender.stdout.read() if sender.stdout else ""
            sent = int(out.split()[-1]) if out.strip().startswith("sent") else 0
            ok = len(learned) >= p.macs
            return Trial(done - t0 if ok else None, len(learned), sent)


def run(opts: Options) -> list[Row]:
    """Trials of ours (and Faucet unless skipped), alternating; one row."""
    p = plan(opts)
    reason = (
        "skipped in quick mode"
        if opts.quick
        else ("skipped (--no-faucet)" if not opts.faucet else faucet_peer.ensure_venv())
    )
    mine: list[Trial] = []
    peer: list[Trial] = []
    for _ in range(p.runs):
        mine.append(trial(ours, p))
        if reason is None:
            peer.append(trial(theirs, p))
    t_ours = median(t.seconds for t in mine)
    t_peer = median(t.seconds for t in peer)
    mine_s = [t.seconds for t in mine if t.seconds is not None]
    peer_s = [t.seconds for t in peer if t.seconds is not None]
    if reason is not None:
        peer_cell = f"n/a ({reason})"
    elif t_peer is None:
        peer_cell = f"n/a (Faucet learned {max(t.learned for t in peer)} of {p.macs} in {p.timeout:g} s)"
    else:
        peer_cell = fmt(t_peer, "s", 2)
    ours_cell = (
        fmt(t_ours, "s", 2)
        if t_ours is not None
        else (f"n/a (learned {max(t.learned for t in mine)} of {p.macs} in {p.timeout:g} s)")
    )
    faucet_v = f"Faucet {faucet_peer.version()}" if reason is None else "Faucet"
    note = (
        f"N = {p.macs:,} MACs at {p.pps:,} frames/s round-robin from one namespace; "
        f"{p.runs} trial(s) each, fresh bridge and controller each; polled every "
        f"{p.poll:g} s. Ours: network file raising max_hosts_per_port and packet_in_rate to "
        f"{RAISED_LIMIT:,}; {spread(mine_s, 's', 2)}. Peer: {faucet_v} (own venv), one dp, "
        f"one VLAN, max_hosts {RAISED_LIMIT:,} on VLAN and ports, ignore_learn_ins 0"
        + (f"; {spread(peer_s, 's', 2)}." if peer_s else ".")
    )
    metric = f"{METRICS[0]}: {p.macs:,} fresh MACs on one port → all learn flows (s)"
    return [Row(metric, ours_cell, peer_cell, ratio(t_ours, t_peer, False), "—", note)]
