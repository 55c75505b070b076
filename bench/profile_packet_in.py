"""Where a packet-in's time goes: py-spy on a loaded controller, and its parts in-process.

Usage (repo root; needs ``.venv/bin/pip install py-spy`` for the first part)::

    .venv/bin/python -m bench.profile_packet_in [--app controller.app] [--seconds 8]
                                                [--core-hosts 2000] [--top 25] [--all-threads]

1. Starts the controller (VMN with the packet-in benchmark's network file,
   or ``--app bench.textbook_switch``), loads it with :mod:`bench.ofemu`
   and samples it with ``py-spy record --gil`` (the thread holding the
   GIL, i.e. Python work; ``--all-threads`` samples every non-idle
   thread). Prints the functions with the most samples, self and inclusive.
2. Runs it under load again and reads user/system CPU and context
   switches per answered packet-in from ``/proc/PID/task/*``.
3. (VMN only) Drives :class:`controller.core.Core` in-process with
   learning packet-ins from fresh MACs: mean cost per call by how many
   hosts were already learned (flat or growing).
4. (VMN only) Times in-process each piece of work one learning packet-in
   causes in either app (os-ken parsing, core, message building, logging,
   the textbook handler); what the measured CPU leaves over is os-ken's
   per-message machinery.
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.harness import VENV_PY, controller, prepare_environment
from bench.packet_in import DPID, VLAN, network_file
from controller.compose import build_core
from controller.config import load_model
from controller.fabric.topology import PortInfo
from controller.flows.pipeline import T_LEARN


def tagged_frame(src: str, dst: str, vlan: int) -> bytes:
    """A minimum-size 802.1Q frame as the learn table copies it to the controller."""
    return (
        bytes.fromhex(dst.replace(":", ""))
        + bytes.fromhex(src.replace(":", ""))
        + struct.pack("!HHH", 0x8100, vlan, 0x88B5)
        + bytes(46)
    )


def summarize(raw: str, top: int) -> str:
    """Self and inclusive sample shares from py-spy ``--format raw`` output."""
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        total += int(count)
        own[frames[-1]] += int(count)
        for frame in set(frames):
            incl[frame] += int(count)
    if not total:
        return "no samples"
    out = [f"{total} samples", "", "self:"]
    out += [f"  {n / total:6.1%}  {f}" for f, n in own.most_common(top)]
    out += ["", "inclusive:"]
    out += [
        f"  {n / total:6.1%}  {f}"
        for f, n in incl.most_common(top)
        if not f.startswith(("Thread.", "HubThread.", "_bootstrap"))
    ]
    return "\n".join(out)


def sample(app: str, seconds: float, top: int, gil: bool = True) -> str:
    """Run ``app`` under emulator load for ``seconds`` with py-spy attached; the summary.

    ``gil``: sample only the thread holding the GIL (else every non-idle thread).
    """
    spy = shutil.which("py-spy", path=str(VENV_PY.parent)) or shutil.which("py-spy")
    if spy is None:
        return "py-spy not installed: .venv/bin/pip install py-spy"
    with tempfile.TemporaryDirectory(prefix="vmn-bench-") as tmp:
        config = network_file(Path(tmp) / "net.yaml") if app == "controller.app" else None
        raw = Path(tmp) / "profile.raw"
        with controller(config, app=app) as ctl:
            emu = subprocess.Popen(
                [
                    str(VENV_PY),
                    "-m",
                    "bench.ofemu",
                    "--port",
                    str(ctl.port),
                    "--dpid",
                    hex(DPID),
                    "--vlan",
                    str(VLAN),
                    "--pid",
                    str(ctl.pid),
                    "--warmup",
                    "1",
                    "--duration",
                    str(seconds),
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            time.sleep(2.0)  # handshake and warm-up
            subprocess.run(
                [
                    spy,
                    "record",
                    *(["--gil"] if gil else []),
                    "--nonblocking",
                    "-r",
                    "250",
                    "-f",
                    "raw",
                    "-d",
                    str(int(seconds - 1)),
                    "-p",
                    str(ctl.pid),
                    "-o",
                    str(raw),
                ],
                capture_output=True,
                check=True,
                timeout=seconds + 60,
            )
            result, _ = emu.communicate(timeout=seconds + 60)
        return f"emulator: {result.strip()}\n\n{summarize(raw.read_text(), top)}"


def _task_counters(pid: int) -> tuple[float, float, int, int]:
    """Summed over the threads of ``pid``: user s, system s, voluntary, involuntary switches."""
    user = system = vol = invol = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for task in Path(f"/proc/{pid}/task").iterdir():
        stat = (task / "stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        user, system = user + int(fields[11]) / tick, system + int(fields[12]) / tick
        for line in (task / "status").read_text().splitlines():
            if line.startswith("voluntary_ctxt_switches"):
                vol += int(line.split()[1])
            elif line.startswith("nonvoluntary_ctxt_switches"):
                invol += int(line.split()[1])
    return user, system, int(vol), int(invol)


def os_split(app: str, seconds: float = 3.0) -> str:
    """User and system CPU and context switches per answered packet-in of ``app`` under load."""
    with tempfile.TemporaryDirectory(prefix="vmn-bench-") as tmp:
        config = network_file(Path(tmp) / "net.yaml") if app == "controller.app" else None
        with controller(config, app=app) as ctl:
            emu = subprocess.Popen(
                [
                    str(VENV_PY),
                    "-m",
                    "bench.ofemu",
                    "--port",
                    str(ctl.port),
                    "--dpid",
                    hex(DPID),
                    "--vlan",
                    str(VLAN),
                    "--warmup",
                    "1",
                    "--duration",
                    str(seconds + 2),
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            time.sleep(2.5)
            before, t0 = _task_counters(ctl.pid), time.monotonic()
            time.sleep(seconds)
            after, elapsed = _task_counters(ctl.pid), time.monotonic() - t0
            result = json.loads(emu.communicate(timeout=seconds + 60)[0])
    n = result["rate"] * elapsed
    d = [a - b for a, b in zip(after, before, strict=False)]
    return (
        f"{app}: {result['rate']:,.0f} answered/s; per packet-in: user {d[0] / n * 1e6:.0f} µs, "
        f"system {d[1] / n * 1e6:.0f} µs, voluntary switches {d[2] / n:.1f}, "
        f"involuntary {d[3] / n:.2f}"
    )


def core_cost(hosts: int, buckets: int = 4) -> str:
    """Mean wall time of ``Core.packet_in`` per learned host, by hosts already known."""
    with tempfile.TemporaryDirectory(prefix="vmn-bench-") as tmp:
        core = build_core(load_model(network_file(Path(tmp) / "net.yaml")))
    core.switch_up(DPID, [PortInfo(1, "p1"), PortInfo(2, "p2")])
    core.reconcile(DPID, [])
    times: list[float] = []
    for i in range(1, hosts + 1):
        frame = tagged_frame(
            f"02:00:00:{i >> 16 & 0xFF:02x}:{i >> 8 & 0xFF:02x}:{i & 0xFF:02x}", "02:ee:ee:ee:ee:02", VLAN
        )
        t0 = time.perf_counter()
        core.packet_in(DPID, T_LEARN, 1, frame)
        times.append(time.perf_counter() - t0)
    size = max(1, hosts // buckets)
    lines = [f"Core.packet_in alone (no os-ken), {hosts} fresh hosts:"]
    for start in range(0, hosts, size):
        chunk = times[start : start + size]
        lines.append(f"  hosts {start:>5}-{start + len(chunk):<5} mean {sum(chunk) / len(chunk) * 1e6:8.0f} µs")
    return "\n".join(lines)


def _per_call(fn: Callable[[int], object], n: int) -> float:
    """Mean microseconds of ``fn(i)`` over ``i`` in 1..n."""
    t0 = time.perf_counter()
    for i in range(1, n + 1):
        fn(i)
    return (time.perf_counter() - t0) / n * 1e6


def components(n: int = 2000) -> str:
    """In-process cost (µs) of each piece of work one learning packet-in causes, both apps.

    What is left of the measured CPU per packet-in after these is os-ken's
    per-message machinery (recv syscalls, event queue and send-thread
    hand-offs, socket writes), which this cannot time in-process.
    """
    from os_ken.lib.packet import ethernet, packet
    from os_ken.ofproto import ofproto_parser, ofproto_v1_3, ofproto_v1_3_parser

    from bench.ofemu import BUNDLE_COMMIT_REQUEST, packet_in_parts
    from controller import ofmsg
    from controller.flows.rules import Rule

    class Dp:
        ofproto, ofproto_parser, xid, id = ofproto_v1_3, ofproto_v1_3_parser, 0, DPID

        def set_xid(self, msg: object) -> int:
            self.xid += 1
            msg.set_xid(self.xid)  # type: ignore[attr-defined]
            return self.xid

    dp, parser = Dp(), ofproto_v1_3_parser
    head, tail = packet_in_parts(1, VLAN)
    frame = head + bytes.fromhex("020000000001") + tail
    ctrl = ofmsg.bundle_bytes(dp, 1, [], [])[-1]
    reply = bytearray(ctrl)
    struct.pack_into("!H", reply, 20, BUNDLE_COMMIT_REQUEST + 1)

    def parse(buf: bytes) -> object:
        return ofproto_parser.msg(dp, 4, buf[1], len(buf), 0, buf)

    with tempfile.TemporaryDirectory(prefix="vmn-bench-") as tmp:
        core = build_core(load_model(network_file(Path(tmp) / "net.yaml")))
        logfile = open(Path(tmp) / "log", "w")  # noqa: SIM115  (closed below)
        log = logging.getLogger("vmn.bench.components")
        log.propagate = False
        log.addHandler(logging.StreamHandler(logfile))
        log.setLevel(logging.INFO)
        core.switch_up(DPID, [PortInfo(1, "p1"), PortInfo(2, "p2")])
        core.reconcile(DPID, [])
        quiet = logging.getLogger("vmn.core")
        quiet.disabled = True
        macs = [f"02:00:00:{i >> 16 & 0xFF:02x}:{i >> 8 & 0xFF:02x}:{i & 0xFF:02x}" for i in range(n + 1)]
        frames = [tagged_frame(m, "02:ee:ee:ee:ee:02", VLAN) for m in macs]
        batches: list[list[Rule]] = []

        def learn(i: int) -> None:
            for b in core.packet_in(DPID, T_LEARN, 1, frames[i]).batches:
                batches.append(list(b.adds))

        rows = [
            ("os-ken parse: PACKET_IN", _per_call(lambda i: parse(frame), n), "both"),
            ("os-ken parse: 2 bundle replies (open, commit)", 2 * _per_call(lambda i: parse(bytes(reply)), n), "ours"),
            ("Core.packet_in (decision, host rules, diff, gauges; log off)", _per_call(learn, n), "ours"),
            (
                "ofmsg.bundle_bytes for the new host's 2 rules (4 buffers)",
                _per_call(lambda i: ofmsg.bundle_bytes(dp, i, [], batches[i - 1]), n),
                "ours",
            ),
            (
                "one INFO log line to a file",
                _per_call(
                    lambda i: log.info("host %s %s on vlan %d at %016x port %d", macs[i], "learned", VLAN, DPID, 1), n
                ),
                "both",
            ),
            (
                "textbook handler: packet lib parse, dict, FlowMod + PacketOut built and serialised",
                _per_call(lambda i: _textbook_work(dp, parser, frames[i], packet, ethernet), n),
                "peer",
            ),
        ]
        quiet.disabled = False
        logfile.close()
    lines = [f"In-process cost per learning packet-in (mean of {n}, µs):"]
    lines += [f"  {us:7.1f}  [{who}] {what}" for what, us, who in rows]
    return "\n".join(lines)


def _textbook_work(dp: object, parser: object, data: bytes, packet: object, ethernet: object) -> None:
    p = parser  # os-ken's parser module; Any-typed to keep this short
    pkt = packet.Packet(data)  # type: ignore[attr-defined]
    eth = pkt.get_protocols(ethernet.ethernet)[0]  # type: ignore[attr-defined]
    actions = [p.OFPActionOutput(2)]  # type: ignore[attr-defined]
    inst = [p.OFPInstructionActions(4, actions)]  # type: ignore[attr-defined]
    match = p.OFPMatch(in_port=1, eth_dst=eth.dst, eth_src=eth.src)  # type: ignore[attr-defined]
    mod = p.OFPFlowMod(datapath=dp, priority=1, match=match, instructions=inst)  # type: ignore[attr-defined]
    dp.set_xid(mod)  # type: ignore[attr-defined]
    mod.serialize()
    out = p.OFPPacketOut(
        datapath=dp,
        buffer_id=0xFFFFFFFF,
        in_port=1,  # type: ignore[attr-defined]
        actions=actions,
        data=data,
    )
    dp.set_xid(out)  # type: ignore[attr-defined]
    out.serialize()


def main(argv: list[str] | None = None) -> int:
    """Print the py-spy summary and the pure-core cost curve."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--app", default="controller.app")
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--core-hosts", type=int, default=2000)
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--all-threads", action="store_true", help="sample every non-idle thread, not only the GIL holder")
    args = p.parse_args(argv)
    prepare_environment()
    print(sample(args.app, args.seconds, args.top, gil=not args.all_threads))
    print()
    print(os_split(args.app))
    print()
    if args.app == "controller.app":
        print(core_cost(args.core_hosts))
        print()
        print(components())
    return 0


if __name__ == "__main__":
    sys.exit(main())
