"""Helpers for unit tests: drive a core through a fake fabric and trace packets through what it sent."""

from __future__ import annotations

import struct
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from apps.l2.app import L2Switch
from apps.l2.hosts import HostTable
from controller.config import loads_model, parse_model
from controller.config.model import Model
from controller.fabric.topology import LinkKey, PortInfo
from controller.flows.pipeline import T_LEARN
from controller.tools.fakefabric import FakeFabric
from controller.tools.sim import SimConntrack, SimNetwork, Trace, ethernet
from controller.tools.topo import NetworkFile, link_ends


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def tagged_frame(src: str, dst: str, vlan: int, ethertype: int = 0x0800) -> bytes:
    """Raw bytes of a frame as the learn table copies it to the controller (tagged)."""
    return (
        bytes.fromhex(dst.replace(":", ""))
        + bytes.fromhex(src.replace(":", ""))
        + struct.pack("!HHH", 0x8100, vlan, ethertype)
        + b"\x00" * 46
    )


class Harness(FakeFabric):
    """A fake fabric with explicit ports and links; packet-ins from the sim are fed back to the core."""

    def __init__(
        self, model: Model, ports: Mapping[int, Iterable[int | tuple[int, str]]], links: Iterable[LinkKey] = ()
    ) -> None:
        self.clock = FakeClock()
        super().__init__(model, clock=self.clock)
        for dpid, plist in sorted(ports.items()):
            self.connect(dpid, [PortInfo(p, f"p{p}") if isinstance(p, int) else PortInfo(p[0], p[1]) for p in plist])
        for link in links:
            self.link_up(link)
        self.packet_ins = 0
        self.conntrack = SimConntrack()
        """One conntrack for every send, as all bridges of one OVS host share one."""
        self.host_conntracks: Mapping[int, SimConntrack] | None = None
        """Set (see :func:`controller.tools.sim.conntracks_of_hosts`) to put switches on separate hosts."""

    @property
    def hosts(self) -> HostTable:
        learner = self.core.app("l2")
        assert isinstance(learner, L2Switch)
        return learner.hosts

    def sim(self, down: Collection[tuple[int, int]] = (), cables: Collection[LinkKey] = ()) -> SimNetwork:
        return self.network(self.conntrack, down, cables, self.host_conntracks)

    def send(
        self,
        dpid: int,
        port: int,
        src: str,
        dst: str,
        learn: bool = True,
        cables: Collection[LinkKey] = (),
        **fields: Any,
    ) -> Trace:
        """Inject a frame; feed the resulting learn packet-ins to the core when ``learn``.

        ``cables``: wires besides the topology's links (see :meth:`FakeFabric.network`).
        """
        trace = self.sim(cables=cables).send(dpid, port, ethernet(src, dst, **fields))
        if learn:
            for d, pkt in trace.to_controller:
                self.packet_ins += 1
                vid = int(str(pkt["vlan_vid"])) & 0xFFF
                self.packet_in(
                    d, T_LEARN, int(str(pkt["in_port"])), tagged_frame(str(pkt["eth_src"]), str(pkt["eth_dst"]), vid)
                )
        return trace


def model_from(text: str) -> Model:
    return loads_model(text)


def harness_of(net: NetworkFile, extra_ports: Mapping[int, Iterable[int]] | None = None) -> Harness:
    """A harness of the built network ``net`` (:mod:`controller.tools.topo`).

    Each switch has the numbered ports its VMs and links use, plus
    ``extra_ports[dpid]``; every declared link is up, brought up in file order.
    """
    model = parse_model(net)
    dpid = {s.name: s.dpid for s in model.switches}
    ports: dict[int, set[int]] = {d: set() for d in dpid.values()}
    for vm in model.vms:
        assert isinstance(vm.port, int), vm
        ports[dpid[vm.switch]].add(vm.port)
    links = []
    for (a, port_a), (b, port_b) in link_ends(net):
        ports[dpid[a]] |= {port_a}
        ports[dpid[b]] |= {port_b}
        links.append(LinkKey.of(dpid[a], port_a, dpid[b], port_b))
    for d, extra in (extra_ports or {}).items():
        ports[d] |= set(extra)
    return Harness(model, {d: sorted(p) for d, p in ports.items()}, links)


BCAST = "ff:ff:ff:ff:ff:ff"


def mac(i: int, net: int = 1) -> str:
    return f"02:00:00:00:{net:02x}:{i:02x}"


def outputs(trace: Trace, dpid: int | None = None) -> set[tuple[int, int]]:
    return {(d, p) for d, p in trace.delivered() if dpid is None or d == dpid}
