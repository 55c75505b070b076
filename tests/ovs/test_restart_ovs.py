"""A controller crash and restart must not disturb traffic that flows right.

Two bridges joined by one link, a VM on each in one network. While one VM
pings the other 20 times a second across the link, the controller is killed
with SIGKILL and a new one starts on the same port. The switches are in
fail-mode secure, so they keep their flows while no controller is up; the new
controller adopts what it finds (cookie-based reconciliation). Expected: at
most one ping lost, and every flow that was right before the crash is still
there with its age intact on both bridges, including each bridge's forward
rule for the VM behind the other bridge.

When the test fails, its message says which flows were deleted or re-added
(with the moment, from their new age), which identities came and went while
the switches reconnected, and which pings were lost.
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from controller.flows.pipeline import T_FORWARD
from controller.tools.lab import CommandError, ControllerProcess, Host, Lab, flow_durations, wait_until

pytestmark = pytest.mark.ovs

Factory = Callable[..., ControllerProcess]

DPID_A, DPID_B = 0x7E1, 0x7E2
MAC_A, MAC_B = "02:7e:00:00:01:01", "02:7e:00:00:02:01"
TRUNK = 10
PING_INTERVAL = 0.05  # 20 pings a second
PING_COUNT = 200  # 10 s: covers the crash, the reconnects and link rediscovery
MAX_LOST = 1
AGE_SLACK = 0.5  # seconds a kept flow's age may lag the wall clock (dump rounding)

NETWORK = """
controller: {{metrics_port: 0}}  # default lldp_interval (1 s), as users run it
switches:
  sa: {{dpid: {dpid_a:#x}, bridge: {br_a}}}
  sb: {{dpid: {dpid_b:#x}, bridge: {br_b}}}
links:
  - [sa:{trunk}, sb:{trunk}]
networks: {{red: {{vlan: 100}}}}
vms:
  va: {{switch: sa, port: 1, network: red, ip: 10.81.0.1/24, mac: "{mac_a}"}}
  vb: {{switch: sb, port: 1, network: red, ip: 10.81.0.2/24, mac: "{mac_b}"}}
"""


@dataclass
class FlowWatch:
    """Samples the bridges' flow identities in the background and records every change."""

    bridges: list[str]
    events: dict[str, list[str]] = field(default_factory=dict)
    _last: dict[str, set[str]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _t0: float = 0.0

    def start(self, t0: float) -> None:
        self._t0 = t0
        for br in self.bridges:
            self._last[br] = set(flow_durations(br))
            self.events[br] = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            for br in self.bridges:
                try:
                    now = set(flow_durations(br))
                except (CommandError, subprocess.TimeoutExpired):
                    continue  # one failed dump only loses one sample
                at = time.monotonic() - self._t0
                self.events[br] += [f"{at:6.2f}s  - {i}" for i in sorted(self._last[br] - now)]
                self.events[br] += [f"{at:6.2f}s  + {i}" for i in sorted(now - self._last[br])]
                self._last[br] = now

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


@dataclass(frozen=True)
class PingResult:
    sent: int
    received: int
    lost_seqs: list[int]

    @property
    def lost(self) -> int:
        return self.sent - self.received


def parse_ping(out: str) -> PingResult:
    """Counts from ``ping``'s summary and the sequence numbers that got no reply."""
    summary = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    assert summary, f"no ping summary in:\n{out}"
    sent, received = map(int, summary.groups())
    answered = {int(s) for s in re.findall(r"icmp_seq=(\d+) ttl=", out)}
    return PingResult(sent, received, sorted(set(range(1, sent + 1)) - answered))


def forward_rule(bridge: str, mac: str) -> list[str]:
    """Identities of the forward-table rules for destination ``mac``."""
    return [k for k in flow_durations(bridge) if f",table={T_FORWARD}," in k and f"dl_dst={mac}" in k]


def settled(bridges: list[str], quiet: float = 1.5) -> dict[str, dict[str, float]]:
    """Wait until no flow identity changes for ``quiet`` seconds; return the durations."""
    last = {br: set(flow_durations(br)) for br in bridges}
    since = time.monotonic()
    deadline = since + 20
    while time.monotonic() - since < quiet:
        assert time.monotonic() < deadline, "flows did not settle within 20 s"
        time.sleep(0.2)
        now = {br: set(flow_durations(br)) for br in bridges}
        if now != last:
            last, since = now, time.monotonic()
    return {br: flow_durations(br) for br in bridges}


def age_report(
    before: dict[str, float], after: dict[str, float], elapsed: float, t_restart: float
) -> tuple[list[str], list[str], list[str]]:
    """Kept-with-age flows, flows deleted or re-added (with when), and flows that are new."""
    kept, broken = [], []
    for ident, age in sorted(before.items()):
        if ident not in after:
            broken.append(f"DELETED {ident}")
        elif after[ident] < age + elapsed - AGE_SLACK:
            readded_at = elapsed - after[ident] - t_restart
            broken.append(
                f"RE-ADDED {readded_at:+.2f}s after the restart "
                f"(age {age:.2f}s -> {after[ident]:.2f}s, expected >= {age + elapsed:.2f}s) {ident}"
            )
        else:
            kept.append(ident)
    new = [f"NEW {ident} (age {after[ident]:.2f}s)" for ident in sorted(set(after) - set(before))]
    return kept, broken, new


def test_controller_kill9_and_restart_keeps_traffic_and_flow_ages(
    lab: Lab, controller_factory: Factory, tmp_path: Path
) -> None:
    br_a, br_b = f"{lab.prefix}ba", f"{lab.prefix}bb"
    cfg = tmp_path / "net.yaml"
    cfg.write_text(
        NETWORK.format(dpid_a=DPID_A, dpid_b=DPID_B, br_a=br_a, br_b=br_b, trunk=TRUNK, mac_a=MAC_A, mac_b=MAC_B)
    )
    first = controller_factory(cfg)
    lab.add_bridge(br_a, DPID_A, first.port)
    lab.add_bridge(br_b, DPID_B, first.port)
    lab.add_link(br_a, TRUNK, br_b, TRUNK)
    va: Host = lab.add_host("va", br_a, 1, ip="10.81.0.1", mac=MAC_A)
    vb: Host = lab.add_host("vb", br_b, 1, ip="10.81.0.2", mac=MAC_B)
    first.wait_connected(br_a, 20)
    first.wait_connected(br_b, 20)
    wait_until(lambda: va.ping(vb), 20, message="va -> vb across the link")
    wait_until(lambda: vb.ping(va), 10, message="vb -> va across the link")
    wait_until(
        lambda: (
            forward_rule(br_a, MAC_B)
            and forward_rule(br_b, MAC_A)
            and forward_rule(br_a, MAC_A)
            and forward_rule(br_b, MAC_B)
        ),
        10,
        message="both hosts learned: forward rules for each on both bridges",
    )
    before = settled([br_a, br_b])
    t_before = time.monotonic()
    remote = {br_a: forward_rule(br_a, MAC_B), br_b: forward_rule(br_b, MAC_A)}

    ping = va.popen(["ping", "-n", "-i", str(PING_INTERVAL), "-c", str(PING_COUNT), "-W", "1", vb.ip or ""])
    watch = FlowWatch([br_a, br_b])
    watch.start(t_before)
    try:
        time.sleep(1.5)
        first.kill9()
        t_restart = time.monotonic() - t_before
        second = controller_factory(cfg, port=first.port)
        second.wait_connected(br_a, 20)
        second.wait_connected(br_b, 20)
        wait_until(
            lambda: second.log_text().count("reconciled") >= 2,
            10,
            message="both switches reconciled by the new controller",
        )
        t_reconciled = time.monotonic() - t_before
        assert ping.poll() is None, (
            f"the ping run ended before both switches were reconciled ({t_reconciled:.1f}s): raise PING_COUNT"
        )
        out, err = ping.communicate(timeout=PING_COUNT * PING_INTERVAL + 30)
    finally:
        watch.stop()
    after = {br: flow_durations(br) for br in (br_a, br_b)}
    elapsed = time.monotonic() - t_before
    result = parse_ping(out + err)

    lines = [
        (
            f"restart at {t_restart:.2f}s, both reconciled at {t_reconciled:.2f}s, "
            f"ping: {result.lost} of {result.sent} lost, seqs {result.lost_seqs} "
            f"(seq n was sent at ~{PING_INTERVAL:g}*n s)"
        )
    ]
    kept_all: dict[str, list[str]] = {}
    broken_all: list[str] = []
    for br in (br_a, br_b):
        kept, broken, new = age_report(before[br], after[br], elapsed, t_restart)
        kept_all[br] = kept
        broken_all += broken
        lines.append(f"--- {br}: {len(kept)} of {len(before[br])} flows kept their age")
        lines += broken + new
        lines += [f"  seen while restarting: {e}" for e in watch.events[br]]
    lines += [
        "--- new controller log:",
        *[l for l in second.log_text().splitlines() if "reconciled" in l or "link" in l or "adopted" in l],
    ]
    report = "\n".join(lines)
    print(report)

    assert result.lost <= MAX_LOST, report
    for br in (br_a, br_b):
        assert remote[br] and all(k in kept_all[br] for k in remote[br]), (
            f"{br}: the forward rule for the VM behind the other bridge lost its age\n{report}"
        )
    assert not broken_all, report
    assert all(after[br].keys() == before[br].keys() for br in after), report
    assert va.ping(vb) and vb.ping(va), "traffic after the restart"
