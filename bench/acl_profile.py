"""Where the ACL benchmark's time goes: in-process step timings and py-spy of the controller.

Usage (repo root, as root, OVS running; py-spy in .venv)::

    .venv/bin/python -m bench.acl_profile [--rules 5000] [--reloads 5] [--top 25]

1. Times in-process, cold (fresh interpreter), each step from network file
   to wire bytes that the controller takes on start and on a reload:
   YAML, validation, core compile, reconcile, serialising the flow_mods.
2. ``py-spy record --gil`` of a real controller from spawn until the
   bridge holds all its flows (:mod:`bench.acl_scale`'s network file,
   100 VMs, one ACL on every VM).
3. ``py-spy record --gil`` attached to that controller during reloads
   that each change one rule's ``tcp_dst`` (as the benchmark does).

Prints the functions with the most samples, self and inclusive.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.acl_scale import (
    DPID,
    RELOAD_PORT,
    RELOAD_RULE,
    acl_rules,
    add_ports,
    expected_flows,
    network_file,
    plan,
    wait_match,
)
from bench.harness import (
    VENV_PY,
    Options,
    new_lab,
    prepare_environment,
    wait_flow_count,
)
from bench.profile_packet_in import summarize
from controller.tools.lab import ControllerProcess, wait_until

STEPS = r"""
import sys, time
t0 = time.perf_counter()
from controller import ofmsg
from controller.config import load as config
from controller.compose import build_core
from controller.fabric.topology import PortInfo
import controller.app  # os-ken and everything the app imports
t_import = time.perf_counter() - t0

class Dp:
    ofproto, ofproto_parser, xid = ofmsg.ofp, ofmsg.parser, 0
    def set_xid(self, msg):
        self.xid += 1
        msg.set_xid(self.xid)

def step(name, fn):
    t = time.perf_counter()
    out = fn()
    print(f"{(time.perf_counter() - t) * 1000:9.1f} ms  {name}")
    return out

first, second, dpid, vms = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
print(f"{t_import * 1000:9.1f} ms  import controller.app (os-ken, prometheus, yaml, ...)")
raw = step("read the file", lambda: open(first, "rb").read())
data = step("YAML (config._load_yaml: pure-Python SafeLoader + duplicate-key check)",
            lambda: config._load_yaml(raw, first))
import yaml
step("  for scale: yaml.CSafeLoader on the same text", lambda: yaml.load(raw, Loader=yaml.CSafeLoader))
model = step("validate (config.parse_model)", lambda: config.parse_model(data))
core = build_core(model)
ports = [PortInfo(n, f"p{n}", True) for n in range(1, vms + 1)]
step("Core.switch_up (compile every app, FlowState diff)", lambda: core.switch_up(dpid, ports))
batch = step("Core.reconcile (empty switch)", lambda: core.reconcile(dpid, []).batches[0])
bufs = step(f"ofmsg.batch_bytes: {len(batch.adds)} flow_mods into one bundle (os-ken objects, cold)",
            lambda: ofmsg.batch_bytes(Dp(), 1, batch.deletes, batch.adds))
print(f"           ({len(bufs):,} bytes)")
print("reload with one rule changed:")
model2 = step("load_model (read + YAML + validate)", lambda: config.load_model(second))
batches = step("Core.reload (recompute, diff)", lambda: core.reload(model2))
b = batches.batches[0]
step(f"ofmsg.batch_bytes: {len(b.deletes)} delete(s), {len(b.adds)} add(s)",
     lambda: ofmsg.batch_bytes(Dp(), 2, b.deletes, b.adds))
"""


def steps(tmp: Path, rules: int, vms: int) -> str:
    """Cold in-process timings of each step (a fresh interpreter)."""
    p = plan(Options())
    body = acl_rules(rules)
    first = network_file(tmp / "first.yaml", "br", p, body)
    body[RELOAD_RULE]["match"]["tcp_dst"] = RELOAD_PORT
    second = network_file(tmp / "second.yaml", "br", p, body)
    proc = subprocess.run(
        [str(VENV_PY), "-c", STEPS, str(first), str(second), str(DPID), str(vms)],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return proc.stdout


FOCUS = (
    "_find_and_load ",
    "_load_yaml ",
    "parse_model ",
    "Core.switch_up ",
    "Core.reconcile ",
    "Core.reload ",
    "batch_bytes ",
    "flow_add ",
    "Datapath._send_loop ",
    "Datapath._recv_loop ",
)
"""Frames (function name and a space, as py-spy prints them) whose inclusive share is listed."""


def focus(raw: str, names: tuple[str, ...] = FOCUS) -> str:
    """Inclusive share of the samples whose stack holds a frame starting with each name."""
    hits = dict.fromkeys(names, 0)
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        total += int(count)
        frames = stack.split(";")
        for name in names:
            if any(f.startswith(name) for f in frames):
                hits[name] += int(count)
    return "\n".join(f"  {n / max(total, 1):6.1%}  {name.strip()}" for name, n in hits.items())


def _child(pid: int) -> int | None:
    """The first child process of ``pid`` (py-spy runs the controller as its child)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        kids = (task / "children").read_text().split()
        if kids:
            return int(kids[0])
    return None


def profiles(tmp: Path, rules: int, reloads: int, top: int, spy: str) -> str:
    """py-spy of a controller from spawn to its flows on OVS, then attached during reloads."""
    p = plan(Options())
    body = acl_rules(rules)
    out: list[str] = []
    with new_lab() as lab:
        br = lab.add_bridge("b1", DPID, controller_port=None)
        ports = add_ports(br, p.vms)
        config = network_file(tmp / "net.yaml", br, p, body)
        expected = expected_flows(config, ports)
        ctl = ControllerProcess(config)
        start_raw, reload_raw = tmp / "start.raw", tmp / "reload.raw"
        ctl.argv = [spy, "record", "--gil", "-r", "500", "-f", "raw", "-o", str(start_raw), "--", *ctl.argv]
        try:
            t0 = time.monotonic()
            ctl.start(wait=True)
            lab.set_controller(br, ctl.port)
            t_conn = time.monotonic()
            done = wait_flow_count(br, expected, 60)
            out.append(
                f"spawn → listening {t_conn - t0:.2f} s, connect → {expected:,} flows "
                f"{done - t_conn:.2f} s (under py-spy)"
            )
            child = _child(ctl.pid)
            if child is None:
                raise RuntimeError("no controller process under py-spy")
            # py-spy writes its profile when the controller ends; the reloads get a fresh one
            os.kill(child, signal.SIGTERM)
            ctl.proc.wait(timeout=60)  # type: ignore[union-attr]
            text = start_raw.read_text()
            out += [
                "",
                "== py-spy --gil, spawn → all flows on the switch ==",
                "steps (inclusive):",
                focus(text),
                "",
                summarize(text, top),
            ]
        finally:
            ctl.stop()
            ctl.log_path.unlink(missing_ok=True)
        with ControllerProcess(config) as plain:
            lab.set_controller(br, plain.port)
            wait_flow_count(br, expected, 60)
            spy_proc = subprocess.Popen(
                [spy, "record", "--gil", "-r", "500", "-f", "raw", "-o", str(reload_raw), "-p", str(plain.pid)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            time.sleep(1.0)
            times = []
            for i in range(reloads):
                new = RELOAD_PORT + 100 + i
                body[RELOAD_RULE]["match"]["tcp_dst"] = new
                # same size and mtime: only the SIGHUP reloads (the file watch misses it)
                network_file(config, br, p, body, mtime_ns=config.stat().st_mtime_ns)
                t = time.monotonic()
                plain.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
                wait_match(br, f"tcp,tp_dst={new}", 30)
                times.append(time.monotonic() - t)
                time.sleep(0.3)
            spy_proc.send_signal(signal.SIGINT)
            spy_proc.wait(timeout=60)
            plain.log_path.unlink(missing_ok=True)
        wait_until(reload_raw.exists, 10, message="py-spy reload profile written")
        out += [
            "",
            f"== py-spy --gil attached, {reloads} reloads ("
            + ", ".join(f"{t:.2f}" for t in times)
            + " s SIGHUP → new flow) ==",
            "steps (inclusive):",
            focus(reload_raw.read_text()),
            "",
            summarize(reload_raw.read_text(), top),
        ]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    """Print the step timings and both profiles."""
    a = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    a.add_argument("--rules", type=int, default=5000)
    a.add_argument("--reloads", type=int, default=5)
    a.add_argument("--top", type=int, default=25)
    args = a.parse_args(argv)
    prepare_environment()
    spy = shutil.which("py-spy", path=str(VENV_PY.parent)) or shutil.which("py-spy")
    with tempfile.TemporaryDirectory(prefix="vmn-bench-") as tmp:
        print(f"== in-process steps, {args.rules:,} rules, cold ==")
        print(steps(Path(tmp), args.rules, plan(Options()).vms))
        if spy is None:
            print("py-spy not installed: .venv/bin/pip install py-spy")
            return 1
        print(profiles(Path(tmp), args.rules, args.reloads, args.top, spy))
    return 0


if __name__ == "__main__":
    sys.exit(main())
