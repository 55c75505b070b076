"""Helpers for unit tests: drive a Core with fake switches and trace packets."""

from __future__ import annotations

import struct
from typing import Any, Iterable, Mapping, Optional

from controller.config import loads_model
from controller.core import Core
from controller.config.model import Model
from controller.tools.sim import SimConntrack, SimNetwork, Trace, ethernet
from controller.fabric.topology import LinkKey, PortInfo


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def tagged_frame(src: str, dst: str, vlan: int, ethertype: int = 0x0800) -> bytes:
    """Raw bytes of a frame as the learn table copies it to the controller (tagged)."""
    return (bytes.fromhex(dst.replace(":", "")) + bytes.fromhex(src.replace(":", ""))
            + struct.pack("!HHH", 0x8100, vlan, ethertype) + b"\x00" * 46)


class Harness:
    """A Core plus simulated switches; packet-ins from the sim are fed back to the core."""

    def __init__(self, model: Model, ports: Mapping[int, Iterable[int | tuple[int, str]]],
                 links: Iterable[LinkKey] = ()) -> None:
        self.clock = FakeClock()
        self.core = Core(model, clock=self.clock, verify=True)
        for dpid, plist in sorted(ports.items()):
            infos = [PortInfo(p, f"p{p}") if isinstance(p, int) else PortInfo(p[0], p[1]) for p in plist]
            self.core.switch_up(dpid, infos)
            self.core.reconcile(dpid, [])
        for link in links:
            self.core.topology.add_link(link)
        self.core.recompute()
        self.packet_ins = 0
        self.conntrack = SimConntrack()
        """One conntrack for every send, as all bridges of one OVS host share one."""

    def sim(self) -> SimNetwork:
        return SimNetwork({d: self.core.flows.rules(d) for d in self.core.topology.ports},
                          self.core.topology.links, conntrack=self.conntrack,
                          groups={d: list(g.values()) for d, g in self.core.groups.items()})

    def send(self, dpid: int, port: int, src: str, dst: str, learn: bool = True, **fields: Any) -> Trace:
        """Inject a frame; feed the resulting learn packet-ins to the core when ``learn``."""
        trace = self.sim().send(dpid, port, ethernet(src, dst, **fields))
        if learn:
            for d, pkt in trace.to_controller:
                self.packet_ins += 1
                vid = int(pkt["vlan_vid"]) & 0xFFF  # type: ignore[call-overload]
                self.core.packet_in(d, int(pkt["in_port"]),  # type: ignore[call-overload]
                                    tagged_frame(str(pkt["eth_src"]), str(pkt["eth_dst"]), vid))
        return trace


def model_from(text: str) -> Model:
    return loads_model(text)


BCAST = "ff:ff:ff:ff:ff:ff"


def mac(i: int, net: int = 1) -> str:
    return f"02:00:00:00:{net:02x}:{i:02x}"


def outputs(trace: Trace, dpid: Optional[int] = None) -> set[tuple[int, int]]:
    return {(d, p) for d, p in trace.delivered() if dpid is None or d == dpid}
