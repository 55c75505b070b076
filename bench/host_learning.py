"""Benchmark 2: host learning on a real userspace OVS bridge, VMN vs. Faucet, by arrival pattern.

A namespace on VM port 1 sends frames from N fresh source MACs
(:mod:`bench.mac_flood`, AF_PACKET, so an unlearned host keeps talking);
port 2 holds a second namespace. We time from the first frame until the
bridge holds a learn flow (``dl_src=``) for every one of the N MACs,
polling ``ovs-ofctl dump-flows``. Three arrival patterns:

- smooth: round-robin at a fixed frame rate (5,000/s), limits raised;
- burst: a tenth of the MACs sends one frame each, back to back, then 0.1 s
  of silence, then the next tenth (VMs booting together, a host
  reconnecting; a host not learned yet is in a burst again a second
  later); once with each controller's default rate limits, once with them
  raised. A burst is 200 frames: more at once overflow the socket buffer
  of ovs-vswitchd's AF_PACKET port on the veth (about 277 frames of 60
  bytes at the default ``rmem_default``) before either controller sees
  them;
- overload: round-robin at ``packet_in_rate`` (unloaded) and at ten times
  it (overload), our default limits; the row is the learning throughput
  (hosts/s) under overload as a share of the unloaded one.

VMN runs with a network file (one switch, one network, a VM without MAC
on each port; ``max_hosts_per_port`` raised, ``packet_in_rate`` raised or
default) and the bridge set up by ``vmn provision`` (its controller queue
sized from ``packet_in_rate``). Faucet with the equivalent faucet.yaml (one
dp, one VLAN, ``max_hosts`` raised on the VLAN and the ports, and
``ignore_learn_ins: 0`` when limits are raised; its default is 10). Host
caps are raised in every variant: at either controller's default (64, 256)
2,000 hosts cannot be learned on one port at all. Same bridge layout, fresh
bridge and controller per trial, ours and Faucet alternating.
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
    stop_process,
    wait_flows_stable,
    write_yaml,
)
from controller.config import load_model
from controller.config.model import ControllerSettings
from controller.tools.lab import Host
from controller.tools.provision import Plan as ProvisionPlan
from controller.tools.provision import provision

DPID = 0xB2
VLAN = 100
PREFIX = "02:b2"
DST_MAC = "02:ee:ee:ee:ee:02"
RAISED_LIMIT = 1_000_000
DEFAULT_RATE = ControllerSettings().packet_in_rate
SENDER = BENCH_DIR / "mac_flood.py"
BURST_PAUSE = 0.1
"""Seconds between bursts of a tenth of the MACs: all have arrived after 1 s, each again 1 s later."""
METRICS = (
    "Host learning on real OVS",
    "Host learning, bursts of new hosts, default limits",
    "Host learning, bursts of new hosts, limits raised",
    "Host learning throughput under 10× overload",
)


@dataclass(frozen=True)
class Arrival:
    """How the N fresh MACs arrive and which limits the controllers run with.

    ``pps``: frames/s of the round-robin (ignored in bursts); ``pause``:
    seconds of silence between bursts of ``burst`` MACs (0: paced round-robin, no bursts);
    ``raised``: rate limits raised (ours ``packet_in_rate``, Faucet
    ``ignore_learn_ins: 0``) or each controller's default.
    """

    macs: int
    pps: int
    pause: float
    raised: bool
    burst: int = 0
    """MACs per burst (0: all of them)."""


@dataclass(frozen=True)
class Plan:
    """Sizes of one run: MACs, trials per variant, the give-up time, the poll interval and the
    pause between bursts (s)."""

    macs: int
    runs: int
    timeout: float
    poll: float = 0.1
    burst_pause: float = BURST_PAUSE


def plan(opts: Options) -> Plan:
    """2,000 MACs, 3 trials each; quick: 50 MACs, 1 trial (ours only, one controller for all patterns)."""
    return Plan(50, 1, 30, 0.05, 0.02) if opts.quick else Plan(2000, 3, 150)


def vmn_file(path: Path, bridge: str, raised: bool) -> Path:
    """The network file for our controller (host cap raised, rate limit raised or default)."""
    limits: dict[str, int] = {"max_hosts_per_port": RAISED_LIMIT}
    if raised:
        limits["packet_in_rate"] = RAISED_LIMIT
    return write_yaml(
        path,
        {
            "controller": {"metrics_port": 0, "api_port": 0, **limits},
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


Launcher = Callable[[Path, str, bool], AbstractContextManager[int]]
"""(temp dir, bridge name, limits raised) -> context yielding the controller's OpenFlow port,
entered after the bridge exists and pointed at the controller before it yields."""


@contextmanager
def ours(tmp: Path, bridge: str, raised: bool) -> Iterator[int]:
    """Our controller for ``bridge``, the bridge's controller settings made by ``vmn provision``."""
    path = vmn_file(tmp / "net.yaml", bridge, raised)
    with controller(path) as ctl:
        provision(ProvisionPlan(load_model(path), f"tcp:127.0.0.1:{ctl.port}", "netdev"))
        yield ctl.port


@contextmanager
def theirs(tmp: Path, bridge: str, raised: bool) -> Iterator[int]:
    """Faucet configured equivalently (``ignore_learn_ins`` 0 when raised, its default 10 otherwise)."""
    dp = faucet_peer.FaucetDp("bench", DPID, VLAN, (1, 2), RAISED_LIMIT, ignore_learn_ins=0 if raised else None)
    cfg = faucet_peer.write_config(tmp / "faucet.yaml", dp)
    with faucet_peer.faucet(cfg) as proc:
        yield proc.port


@dataclass(frozen=True)
class Rig:
    """A bridge with a controller: MACs are sent from ``sender`` (a namespace on port 1)."""

    bridge: str
    sender: Host


@contextmanager
def rig(launch: Launcher, raised: bool) -> Iterator[Rig]:
    """A fresh bridge (VM ports 1 and 2) and controller, its start-up flows in place."""
    with new_lab() as lab, tempfile.TemporaryDirectory(prefix="vmn-bench-") as tmp:
        br = lab.add_bridge("b1", DPID, controller_port=None)
        h1 = lab.add_host("h1", br, 1)
        lab.add_host("h2", br, 2)
        with launch(Path(tmp), br, raised) as port:
            if launch is not ours:
                lab.set_controller(br, port)
            wait_flows_stable(br, quiet=1.0, timeout=60)
            yield Rig(br, h1)


def learn(r: Rig, arrival: Arrival, p: Plan, prefix: str = PREFIX) -> Trial:
    """Send ``arrival``'s fresh MACs (``prefix``:...) and time until the bridge has learned them all."""
    args = [str(arrival.macs), str(arrival.pps), DST_MAC, prefix, str(p.timeout), str(arrival.pause)]
    args.append(str(arrival.burst or arrival.macs))
    sender = r.sender.popen([SYSTEM_PY, str(SENDER), r.sender.iface, *args])
    try:
        first = (sender.stdout.readline() if sender.stdout else "").split()
        if len(first) != 2 or first[0] != "start":
            raise RuntimeError(f"sender did not start: {first} {sender.stderr}")
        t0 = float(first[1])
        learned: set[str] = set()
        while len(learned) < arrival.macs and time.monotonic() - t0 < p.timeout:
            time.sleep(p.poll)
            learned = learned_macs(r.bridge, prefix)
        done = time.monotonic()
    finally:
        stop_process(sender)
    out = sender.stdout.read() if sender.stdout else ""
    sent = int(out.split()[-1]) if out.strip().startswith("sent") else 0
    ok = len(learned) >= arrival.macs
    return Trial(done - t0 if ok else None, len(learned), sent)


def trial(launch: Launcher, arrival: Arrival, p: Plan) -> Trial:
    """One fresh bridge + controller; time until all ``arrival.macs`` MACs are learned."""
    with rig(launch, arrival.raised) as r:
        return learn(r, arrival, p)


@dataclass(frozen=True)
class Measured:
    """Trials of ours and of the peer (empty when skipped) for one arrival pattern."""

    arrival: Arrival
    ours: list[Trial]
    peer: list[Trial]


def measure(arrival: Arrival, p: Plan, peer: bool) -> Measured:
    """``p.runs`` trials of ours and (if ``peer``) Faucet, alternating."""
    mine: list[Trial] = []
    theirs_: list[Trial] = []
    for _ in range(p.runs):
        mine.append(trial(ours, arrival, p))
        if peer:
            theirs_.append(trial(theirs, arrival, p))
    return Measured(arrival, mine, theirs_)


def _cell(trials: list[Trial], p: Plan, who: str = "") -> tuple[float | None, str]:
    t = median(x.seconds for x in trials)
    if t is not None:
        return t, fmt(t, "s", 2)
    return None, f"n/a ({who}learned {max((x.learned for x in trials), default=0):,} of {p.macs:,} in {p.timeout:g} s)"


def _times(trials: list[Trial]) -> str:
    got = [f"{t.seconds:.2f} s" if t.seconds is not None else f"timed out ({t.learned:,} learned)" for t in trials]
    return "runs: " + ", ".join(got) if got else "not run"


def time_row(metric: str, m: Measured, p: Plan, skipped: str | None, goal: str) -> Row:
    """A time-to-learn row: ours vs Faucet for one arrival pattern."""
    t_ours, ours_cell = _cell(m.ours, p)
    t_peer, peer_cell = _cell(m.peer, p, "Faucet ") if skipped is None else (None, f"n/a ({skipped})")
    a = m.arrival
    how = (
        f"bursts of {a.burst or a.macs:,} MACs (one frame each, back to back) every {a.pause:g} s, "
        f"round-robin (a host not learned yet is in a burst again {a.macs / (a.burst or a.macs) * a.pause:g} s later)"
        if a.pause
        else f"round-robin at {a.pps:,} frames/s"
    )
    limits = (
        f"ours packet_in_rate {RAISED_LIMIT:,}, Faucet ignore_learn_ins 0"
        if a.raised
        else f"ours packet_in_rate {DEFAULT_RATE:,} (default), Faucet ignore_learn_ins 10 (default)"
    )
    note = (
        f"N = {a.macs:,} MACs from one namespace, {how}; {limits}; host caps raised to {RAISED_LIMIT:,} "
        f"(max_hosts_per_port; Faucet max_hosts on VLAN and ports); {p.runs} trial(s) each, alternating, "
        f"fresh bridge and controller each; polled every {p.poll:g} s. Ours {_times(m.ours)}; "
        f"peer (Faucet {faucet_peer.version() if skipped is None else ''}) {_times(m.peer)}."
    )
    return Row(
        f"{metric}: {a.macs:,} fresh MACs on one port → all learn flows (s)",
        ours_cell,
        peer_cell,
        ratio(t_ours, t_peer, False),
        goal,
        note,
    )


def _throughput(trials: list[Trial], macs: int) -> float | None:
    t = median(x.seconds for x in trials)
    return macs / t if t else None


def overload_row(unloaded: Measured, loaded: Measured, p: Plan, skipped: str | None) -> Row:
    """Learning throughput at 10x ``packet_in_rate`` as a share of it at 1x, ours and Faucet."""
    macs = unloaded.arrival.macs

    def share(a: list[Trial], b: list[Trial]) -> float | None:
        ta, tb = _throughput(a, macs), _throughput(b, macs)
        return tb / ta if ta and tb else None

    mine = share(unloaded.ours, loaded.ours)
    peer = share(unloaded.peer, loaded.peer) if skipped is None else None
    peer_cell = f"n/a ({skipped})" if skipped is not None else (f"{peer:.0%}" if peer is not None else "n/a")
    note = (
        f"N = {macs:,} MACs round-robin from one namespace, default rate limits (ours packet_in_rate "
        f"{DEFAULT_RATE:,}/s, Faucet ignore_learn_ins 10), host caps raised; unloaded: "
        f"{unloaded.arrival.pps:,} frames/s, overload: {loaded.arrival.pps:,} frames/s. Throughput = N / "
        f"time to learn all, medians of {p.runs} trial(s). Ours unloaded {_times(unloaded.ours)}, "
        f"overload {_times(loaded.ours)}; Faucet unloaded {_times(unloaded.peer)}, overload "
        f"{_times(loaded.peer)}."
    )
    ratio_cell = f"{mine / peer:.2f}×" if mine and peer else "n/a"
    return Row(
        f"{METRICS[3]}: hosts/s at 10× packet_in_rate as a share of 1×",
        f"{mine:.0%}" if mine is not None else "n/a",
        peer_cell,
        ratio_cell,
        "≥ 80 %",
        note,
    )


def run(opts: Options) -> list[Row]:
    """Every arrival pattern, ours and Faucet (unless skipped) alternating; four rows."""
    p = plan(opts)
    skipped = (
        "skipped in quick mode"
        if opts.quick
        else ("skipped (--no-faucet)" if not opts.faucet else faucet_peer.ensure_venv())
    )
    peer = skipped is None
    n = p.macs
    arrivals = (
        Arrival(n, 2000 if opts.quick else 5000, 0, True),  # smooth
        Arrival(n, 0, p.burst_pause, False, n // 10),  # bursts, default limits
        Arrival(n, 0, p.burst_pause, True, n // 10),  # bursts, limits raised
        Arrival(n, DEFAULT_RATE, 0, False),  # unloaded
        Arrival(n, 10 * DEFAULT_RATE, 0, False),  # 10x overload
    )
    if opts.quick:  # harness check: one controller (default limits) for every pattern, fresh MACs each
        with rig(ours, False) as r:
            got = [Measured(a, [learn(r, a, p, f"02:c{i}")], []) for i, a in enumerate(arrivals)]
    else:
        got = [measure(a, p, peer) for a in arrivals]
    smooth, burst_default, burst_raised, unloaded, loaded = got
    return [
        time_row(METRICS[0], smooth, p, skipped, "—"),
        time_row(METRICS[1], burst_default, p, skipped, "≥ 5×"),
        time_row(METRICS[2], burst_raised, p, skipped, "≥ 5×"),
        overload_row(unloaded, loaded, p, skipped),
    ]
