"""The backend health state machine, driven by a fake clock and scripted backends."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import pytest
from os_ken.lib.packet import ethernet, ipv4, packet, tcp

from apps.lb import probe as lbprobe
from apps.lb.health import (
    BackendHealth,
    CheckResult,
    HealthChecker,
    ProbeRequest,
    Transition,
)
from apps.lb.probe import ProbeReply
from controller.config.model import Backend, HealthCheck, LoadBalancer

IP1, IP2, IP3 = (ipaddress.IPv4Address(f"10.0.0.{n}") for n in (1, 2, 3))
VIP = ipaddress.IPv4Address("10.0.0.100")
BACKEND_MAC = "02:00:00:00:01:01"
STEP = 0.05
DEFAULT_CHECK = HealthCheck()

Answer = str | None
"""A scripted backend's answer to a probe: ``syn-ack``, ``rst``, ``echo-reply`` or None."""


def make_lb(
    name: str = "web",
    ips: tuple[ipaddress.IPv4Address, ...] = (IP1, IP2),
    check: HealthCheck = DEFAULT_CHECK,
    port: int = 80,
    vip: ipaddress.IPv4Address = VIP,
) -> LoadBalancer:
    return LoadBalancer(name, vip, "tenant-a", "tcp", port, tuple(Backend(ip) for ip in ips), check)


def answer(probe: ProbeRequest, kind: str, ack: int | None = None) -> ProbeReply:
    """The reply a backend sends to ``probe`` (``ack`` overrides the TCP acknowledgement)."""
    addresses = (BACKEND_MAC, probe.vip_mac, probe.backend, probe.vip)
    if kind == "echo-reply":
        return ProbeReply("echo-reply", *addresses, ident=probe.ident, seq=probe.seq)
    return ProbeReply(
        "rst" if kind == "rst" else "syn-ack",
        *addresses,
        src_port=probe.port,
        dst_port=probe.src_port,
        ack=(probe.seq + 1) if ack is None else ack,
    )


@dataclass
class Sim:
    """Ticks a checker every STEP seconds; each backend answers after ``delay`` per ``script``."""

    checker: HealthChecker
    script: Callable[[float, ipaddress.IPv4Address], Answer]
    delay: float = 0.1
    tick: int = 0
    inflight: list[tuple[float, ProbeReply]] = field(default_factory=list)
    sent: list[ProbeRequest] = field(default_factory=list)
    results: list[CheckResult] = field(default_factory=list)
    transitions: list[tuple[float, Transition]] = field(default_factory=list)

    def run_until(self, end: float) -> None:
        while self.tick * STEP <= end + 1e-9:
            now = round(self.tick * STEP, 6)
            for at, reply in [x for x in self.inflight if x[0] <= now]:
                self.inflight.remove((at, reply))
                result = self.checker.reply(now, reply)
                if result is not None:
                    self.results.append(result)
                    if result.transition is not None:
                        self.transitions.append((now, result.transition))
            self.transitions += [(now, t) for t in self.checker.expire(now)]
            for probe in self.checker.due(now):
                self.sent.append(probe)
                kind = self.script(now, probe.backend)
                if kind is not None:
                    self.inflight.append((round(now + self.delay, 6), answer(probe, kind)))
            self.tick += 1


def alive(now: float, ip: ipaddress.IPv4Address) -> Answer:
    return "syn-ack"


def test_backends_start_up_and_a_dead_one_goes_down_at_its_first_timeout() -> None:
    sim = Sim(HealthChecker([make_lb()], 0.0), lambda now, ip: "syn-ack" if ip == IP1 else None)
    assert sim.checker.up_backends("web") == {IP1, IP2}
    assert sim.checker.health()[("web", IP1)] == BackendHealth(up=True, streak=0, checked=False)
    sim.run_until(5.0)
    assert sim.transitions == [(0.5, Transition("web", IP2, False, "first check failed (timeout)"))]
    assert sim.checker.up_backends("web") == {IP1}


def test_goes_down_after_exactly_fall_consecutive_failures() -> None:
    sim = Sim(HealthChecker([make_lb(ips=(IP1,))], 0.0), lambda now, ip: None if now >= 3 else "syn-ack")
    sim.run_until(5.45)
    assert sim.transitions == [] and sim.checker.health()[("web", IP1)].streak == 2
    sim.run_until(5.5)  # probes sent at 3, 4, 5 (fall=3) each time out 0.5 s later
    assert sim.transitions == [(5.5, Transition("web", IP1, False, "3 consecutive failed checks (last: timeout)"))]


def test_comes_back_after_exactly_rise_consecutive_successes() -> None:
    sim = Sim(HealthChecker([make_lb(ips=(IP1,))], 0.0), lambda now, ip: "syn-ack" if now >= 10 else None)
    sim.run_until(10.05)
    assert [t.up for _, t in sim.transitions] == [False]
    sim.run_until(11.05)  # answers to the probes of 10 and 11 arrive at 10.1 and 11.1 (rise=2)
    assert len(sim.transitions) == 1 and sim.checker.up_backends("web") == frozenset()
    sim.run_until(11.1)
    assert sim.transitions[-1] == (11.1, Transition("web", IP1, True, "2 consecutive passed checks (last: syn-ack)"))


def test_counts_must_be_consecutive() -> None:
    pattern = {0: "syn-ack", 1: None, 2: None, 3: "syn-ack", 4: None, 5: None, 6: "syn-ack"}
    sim = Sim(HealthChecker([make_lb(ips=(IP1,))], 0.0), lambda now, ip: pattern.get(round(now)))
    sim.run_until(6.9)
    assert sim.transitions == []
    check = HealthCheck(fall=1, rise=3)
    health = BackendHealth(up=False, streak=0, checked=True)
    for passed, up in [(True, False), (True, False), (False, False), (True, False), (True, False), (True, True)]:
        health = health.record(passed, check.fall, check.rise)
        assert health.up == up


def test_rst_is_a_failure_without_latency() -> None:
    sim = Sim(
        HealthChecker([make_lb(ips=(IP1,), check=HealthCheck(fall=2))], 0.0),
        lambda now, ip: "syn-ack" if now < 1 else "rst",
    )
    sim.run_until(2.1)
    assert [(r.passed, r.detail, r.latency) for r in sim.results] == [
        (True, "syn-ack", pytest.approx(0.1)),
        (False, "rst", None),
        (False, "rst", None),
    ]
    assert sim.transitions == [(2.1, Transition("web", IP1, False, "2 consecutive failed checks (last: rst)"))]
    assert sim.results[0].reset is not None and sim.results[1].reset is None


def test_a_late_reply_does_not_count() -> None:
    checker = HealthChecker([make_lb(ips=(IP1,), check=HealthCheck(fall=1))], 0.0)
    (probe,) = checker.due(0.0)
    assert checker.reply(0.0, answer(probe, "syn-ack")) is not None  # checked, fall=1 from now on
    checker.due(0.5)
    (probe,) = checker.due(1.0)
    late = checker.reply(1.5, answer(probe, "syn-ack"))  # at the deadline, before expire()
    assert late is not None and (late.passed, late.detail, late.latency) == (False, "timeout", None)
    assert late.transition == Transition("web", IP1, False, "1 consecutive failed checks (last: timeout)")
    (probe,) = checker.due(2.0)
    assert checker.expire(2.5) == []  # already down
    assert checker.reply(2.6, answer(probe, "syn-ack")) is None  # expired: matches nothing
    assert checker.up_backends("web") == frozenset()


def test_replies_that_do_not_answer_the_probe_are_ignored() -> None:
    checker = HealthChecker([make_lb(ips=(IP1,))], 0.0)
    (probe,) = checker.due(0.0)
    good = answer(probe, "syn-ack")
    for wrong in [
        answer(probe, "syn-ack", ack=probe.seq),
        replace(good, dst_port=probe.src_port + 1),
        replace(good, src_ip=IP2),
        replace(good, dst_ip=IP3),
        replace(good, src_port=81),
        replace(good, kind="arp-reply"),
        answer(probe, "echo-reply"),
    ]:
        assert checker.reply(0.1, wrong) is None
    result = checker.reply(0.2, good)
    assert result is not None and result.passed and result.latency == pytest.approx(0.2)
    assert checker.reply(0.2, good) is None  # a duplicate answer counts once


def test_interval_is_respected_and_one_probe_is_outstanding() -> None:
    check = HealthCheck(interval=2.0, timeout=2.0)
    checker = HealthChecker([make_lb(ips=(IP1,), check=check)], 10.0)
    assert checker.due(9.9) == []
    (first,) = checker.due(10.0)
    assert checker.due(10.0) == [] and checker.due(11.99) == []
    assert checker.expire(11.99) == [] and checker.due(12.0) == []  # still outstanding
    assert checker.next_wakeup() == 12.0
    assert [t.up for t in checker.expire(12.0)] == [False]
    (second,) = checker.due(12.0)
    assert checker.reply(12.01, answer(second, "syn-ack")) is not None
    assert checker.due(13.99) == [] and checker.next_wakeup() == 14.0
    (third,) = checker.due(14.0)
    assert len({first.src_port, second.src_port, third.src_port}) == 3
    assert len({first.seq, second.seq, third.seq}) == 3


def test_icmp_check_passes_on_echo_reply() -> None:
    check = HealthCheck(type="icmp", fall=1, rise=1)
    sim = Sim(
        HealthChecker([make_lb(check=check)], 0.0), lambda now, ip: "echo-reply" if ip == IP1 or now >= 3 else None
    )
    sim.run_until(3.1)
    assert [(at, t.backend, t.up) for at, t in sim.transitions] == [(0.5, IP2, False), (3.1, IP2, True)]
    probes = [p for p in sim.sent if p.backend == IP1]
    assert {(p.kind, p.port, p.src_port) for p in probes} == {("icmp", 0, 0)}
    assert len({p.ident for p in probes}) == 1 and [p.seq for p in probes] == [0, 1, 2, 3]


def test_reconfigure_keeps_surviving_backends_and_their_probes() -> None:
    checker = HealthChecker([make_lb(ips=(IP1, IP2))], 0.0)
    probes = {p.backend: p for p in checker.due(0.0)}
    checker.reply(0.1, answer(probes[IP1], "syn-ack"))
    checker.expire(0.5)  # IP2 down
    kept = {p.backend: p for p in checker.due(1.0)}[IP1]
    checker.reconfigure([make_lb(ips=(IP1, IP3)), make_lb("api", ips=(IP2,))])
    assert checker.health() == {
        ("api", IP2): BackendHealth(),
        ("web", IP1): BackendHealth(True, 0, True),
        ("web", IP3): BackendHealth(),
    }
    assert checker.up_backends("web") == {IP1, IP3} and checker.up_backends("api") == {IP2}
    result = checker.reply(1.1, answer(kept, "syn-ack"))  # the outstanding probe survived
    assert result is not None and result.passed
    assert [p.backend for p in checker.due(1.1)] == [IP2, IP3]  # new backends are due at once
    with pytest.raises(KeyError):
        checker.up_backends("gone")


def test_reconfigure_drops_probes_it_changed_and_retimes_the_interval() -> None:
    checker = HealthChecker([make_lb(ips=(IP1,))], 0.0)
    (probe,) = checker.due(0.0)
    checker.reconfigure([make_lb(ips=(IP1,), port=8080, check=HealthCheck(interval=5.0))])
    assert checker.reply(0.1, answer(probe, "syn-ack")) is None
    assert checker.health()[("web", IP1)] == BackendHealth()  # dropped uncounted
    (again,) = checker.due(0.1)
    assert again.port == 8080 and checker.next_wakeup() == pytest.approx(0.6)
    checker.reply(0.2, answer(again, "syn-ack"))
    assert checker.next_wakeup() == pytest.approx(5.1)


def test_unsent_probe_is_withdrawn_uncounted() -> None:
    checker = HealthChecker([make_lb(ips=(IP1,))], 0.0)
    (probe,) = checker.due(0.0)
    checker.unsent(probe)
    assert checker.expire(0.9) == [] and checker.health()[("web", IP1)] == BackendHealth()
    assert checker.due(0.5) == [] and len(checker.due(1.0)) == 1


def test_output_is_deterministic_and_ordered() -> None:
    def run() -> list[object]:
        lbs = [make_lb("web", ips=(IP3, IP1)), make_lb("api", ips=(IP2, IP1), port=443)]
        sim = Sim(HealthChecker(lbs, 0.0), lambda now, ip: "syn-ack" if ip == IP1 else None)
        sim.run_until(4.0)
        return [sim.sent, sim.results, sim.transitions]

    first = run()
    assert first == run()
    sent = first[0]
    assert isinstance(sent, list)
    assert [(p.lb, p.backend) for p in sent[:4]] == [("api", IP1), ("api", IP2), ("web", IP1), ("web", IP3)]
    keys = [p.key for p in sent]
    assert len(keys) == len(set(keys))


def test_load_balancers_sharing_vip_and_backend_get_distinct_probes() -> None:
    ports = range(50000, 50001)
    lbs = [make_lb("a", ips=(IP1,)), make_lb("b", ips=(IP1,))]
    checker = HealthChecker(lbs, 0.0, ports=ports)
    (first,) = checker.due(0.0)  # one source port: the second probe must wait
    assert first.lb == "a" and first.src_port == 50000
    result = checker.reply(0.1, answer(first, "syn-ack"))
    assert result is not None and result.lb == "a"
    (second,) = checker.due(0.2)
    assert second.lb == "b" and checker.reply(0.3, answer(second, "syn-ack")) is not None
    with pytest.raises(ValueError):
        HealthChecker(lbs, 0.0, ports=range(65535, 65537))


def test_probe_frames_round_trip_through_a_backend_built_by_os_ken() -> None:
    checker = HealthChecker([make_lb(ips=(IP1,))], 0.0)
    (probe,) = checker.due(0.0)
    syn = packet.Packet(probe.frame(BACKEND_MAC))
    eth, ip = syn.get_protocol(ethernet.ethernet), syn.get_protocol(ipv4.ipv4)
    seg = syn.get_protocol(tcp.tcp)
    assert (eth.src, eth.dst, ip.src, ip.dst) == (lbprobe.vip_mac(str(VIP)), BACKEND_MAC, str(VIP), str(IP1))
    reply = packet.Packet()  # what the backend's kernel answers
    reply.add_protocol(ethernet.ethernet(eth.src, eth.dst, 0x0800))
    reply.add_protocol(ipv4.ipv4(src=ip.dst, dst=ip.src, proto=6))
    ack = (seg.seq + 1) & 0xFFFFFFFF
    reply.add_protocol(tcp.tcp(seg.dst_port, seg.src_port, 12345, ack, bits=tcp.TCP_SYN | tcp.TCP_ACK))
    reply.serialize()
    parsed = lbprobe.parse_probe_reply(bytes(reply.data))
    assert parsed is not None
    result = checker.reply(0.05, parsed)
    assert result is not None and result.passed and result.reset is not None
    rst = packet.Packet(result.reset).get_protocol(tcp.tcp)
    assert (rst.src_port, rst.dst_port, rst.seq, rst.bits) == (seg.src_port, 80, ack, tcp.TCP_RST)
