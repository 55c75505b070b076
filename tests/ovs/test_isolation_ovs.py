"""Tenant isolation and port security on real OVS: two bridges, one trunk, two networks.

Every VM runs a packet capture (tcpdump in its namespace, started before the
traffic, stopped by pid); frames are told apart by source MAC and payload
markers. Each capture is flushed by a sentinel frame its VM sends last, so
"not seen" means "not delivered", not "not yet written".
"""

from __future__ import annotations

import ipaddress
import select
import signal
import struct
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

from controller.tools.lab import ControllerProcess, Host, Lab, port_stats, wait_until

pytestmark = pytest.mark.ovs

Factory = Callable[..., ControllerProcess]

BCAST = "ff:ff:ff:ff:ff:ff"
ZERO_MAC = "00:00:00:00:00:00"
LLDP_DST = "01:80:c2:00:00:0e"
ETH_IPV4, ETH_ARP, ETH_VLAN, ETH_QINQ, ETH_LLDP = 0x0800, 0x0806, 0x8100, 0x88A8, 0x88CC
ETH_TEST, ETH_SENTINEL = 0x88B5, 0x88B6
BURST = 5

SEND = (
    "import socket,sys; s=socket.socket(socket.AF_PACKET, socket.SOCK_RAW); s.bind((sys.argv[1], 0)); "
    "[s.send(bytes.fromhex(f)) for _ in range(int(sys.argv[2])) for f in sys.argv[3:]]"
)
REPEAT = (
    "import socket,sys,time; s=socket.socket(socket.AF_PACKET, socket.SOCK_RAW); s.bind((sys.argv[1], 0)); "
    "f=bytes.fromhex(sys.argv[2])\nwhile True:\n    s.send(f); time.sleep(0.05)"
)


# --- frames ------------------------------------------------------------------------


def _mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def _ip(text: str) -> bytes:
    return ipaddress.IPv4Address(text).packed


def eth(dst: str, src: str, ethertype: int, payload: bytes = b"", tag: tuple[int, int] | None = None) -> bytes:
    """An Ethernet frame, with one ``(tpid, vid)`` tag if given, padded to 60 bytes."""
    head = _mac(dst) + _mac(src)
    if tag is not None:
        head += struct.pack("!HH", *tag)
    return (head + struct.pack("!H", ethertype) + payload).ljust(60, b"\0")


def arp(op: int, sha: str, spa: str, tha: str, tpa: str) -> bytes:
    return struct.pack("!HHBBH", 1, ETH_IPV4, 6, 4, op) + _mac(sha) + _ip(spa) + _mac(tha) + _ip(tpa)


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of ``data``."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ipv4_udp(src: str, dst: str, payload: bytes, sport: int = 9, dport: int = 9) -> bytes:
    """An IPv4/UDP packet (default port 9, discard) with a correct header checksum."""
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    head = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, _ip(src), _ip(dst))
    return head[:10] + struct.pack("!H", checksum(head)) + head[12:] + udp


def lldp_probe(dpid: int, port: int) -> bytes:
    """The controller's own probe format (controller/fabric/lldp.py), as a VM would forge it."""

    def tlv(kind: int, value: bytes) -> bytes:
        return struct.pack("!H", (kind << 9) | len(value)) + value

    return (
        tlv(1, b"\x07dpid:" + f"{dpid:016x}".encode())
        + tlv(2, b"\x07" + str(port).encode())
        + tlv(3, struct.pack("!H", 120))
        + tlv(0, b"")
    )


@dataclass(frozen=True)
class Seen:
    """One captured frame, parsed as far as these tests need."""

    raw: bytes

    @property
    def src(self) -> str:
        return self.raw[6:12].hex(":")

    @property
    def tags(self) -> list[tuple[int, int]]:
        out, offset = [], 12
        while struct.unpack_from("!H", self.raw, offset)[0] in (ETH_VLAN, ETH_QINQ):
            tpid, tci = struct.unpack_from("!HH", self.raw, offset)
            out.append((tpid, tci & 0x0FFF))
            offset += 4
        return out

    @property
    def ethertype(self) -> int:
        return int(struct.unpack_from("!H", self.raw, 12 + 4 * len(self.tags))[0])

    @property
    def payload(self) -> bytes:
        return self.raw[14 + 4 * len(self.tags) :]

    def arp(self) -> tuple[int, str, str, str, str] | None:
        """(op, sha, spa, tha, tpa) of an ARP frame, else None."""
        if self.ethertype != ETH_ARP or len(self.payload) < 28:
            return None
        p = self.payload
        return (
            struct.unpack_from("!H", p, 6)[0],
            p[8:14].hex(":"),
            str(ipaddress.IPv4Address(p[14:18])),
            p[18:24].hex(":"),
            str(ipaddress.IPv4Address(p[24:28])),
        )

    def ipv4_src(self) -> str | None:
        if self.ethertype != ETH_IPV4 or len(self.payload) < 20:
            return None
        return str(ipaddress.IPv4Address(self.payload[12:16]))


def read_pcap(path: Path) -> list[Seen]:
    """Frames of a classic pcap file (a record still being written is left out)."""
    data = path.read_bytes() if path.exists() else b""
    if len(data) < 24:
        return []
    endian = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    assert struct.unpack_from(endian + "I", data, 20)[0] == 1, "not an Ethernet capture"
    frames, offset = [], 24
    while offset + 16 <= len(data):
        incl = struct.unpack_from(endian + "I", data, offset + 8)[0]
        if offset + 16 + incl > len(data):
            break
        frames.append(Seen(data[offset + 16 : offset + 16 + incl]))
        offset += 16 + incl
    return frames


def send(host: Host, frames: Iterable[bytes], count: int = 1) -> None:
    """Send raw frames from inside ``host`` (each ``count`` times) through an AF_PACKET socket."""
    host.run(["/usr/bin/python3", "-c", SEND, host.iface, str(count), *(f.hex() for f in frames)], check=True)


def tcpdump_argv(iface: str, path: Path) -> list[str]:
    """tcpdump writing every frame of ``iface`` to the pcap ``path`` at once (unbuffered)."""
    return ["tcpdump", "-i", iface, "-n", "-U", "--immediate-mode", "-Z", "root", "-w", str(path)]


def wait_listening(proc: subprocess.Popen[str], what: str, timeout: float = 15) -> None:
    """Wait until tcpdump ``proc`` says on stderr that it listens; fail if it exits or ``timeout`` passes."""
    err = proc.stderr
    assert err is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while not any("listening on" in line for line in lines):
        ready, _, _ = select.select([err], [], [], max(0.0, deadline - time.monotonic()))
        assert ready and proc.poll() is None, f"{what} did not start: {lines}"
        lines.append(err.readline())


class Capture:
    """tcpdump on a VM's interface, writing a pcap file; ready once it listens."""

    def __init__(self, host: Host, path: Path) -> None:
        self.host, self.path = host, path
        self.proc = host.popen(tcpdump_argv(host.iface, path))
        wait_listening(self.proc, f"tcpdump in {host.name}")

    def frames(self) -> list[Seen]:
        return read_pcap(self.path)

    def stop(self) -> list[Seen]:
        """Flush (a sentinel frame from the VM itself must show up), stop tcpdump by pid, read."""
        marker = b"VMN-SENTINEL-" + self.host.name.encode()
        send(self.host, [eth(self.host.mac, self.host.mac, ETH_SENTINEL, marker)])
        wait_until(
            lambda: any(marker in f.payload for f in self.frames()),
            10,
            message=f"sentinel in the capture of {self.host.name}",
        )
        self.proc.send_signal(signal.SIGINT)
        self.proc.communicate(timeout=10)
        return self.frames()


def stop_all(captures: dict[str, Capture]) -> dict[str, list[Seen]]:
    return {name: cap.stop() for name, cap in captures.items()}


def frames_from(frames: list[Seen], macs: Iterable[str]) -> list[Seen]:
    wanted = set(macs)
    return [f for f in frames if f.src in wanted]


def start_two_switches(
    lab: Lab, factory: Factory, tmp_path: Path, text: str, dpids: tuple[int, int]
) -> tuple[ControllerProcess, str, str]:
    """Controller with the network file ``text``, two bridges, cabled port 10 to port 10."""
    bridges = (f"{lab.prefix}b1", f"{lab.prefix}b2")
    cfg = tmp_path / "net.yaml"
    cfg.write_text(text.format(b1=bridges[0], b2=bridges[1], d1=dpids[0], d2=dpids[1]))
    ctl = factory(cfg)
    for br, dpid in zip(bridges, dpids, strict=False):
        lab.add_bridge(br, dpid, ctl.port)
    lab.add_link(bridges[0], 10, bridges[1], 10)
    for br in bridges:
        ctl.wait_connected(br, 20)
    ctl.wait_for_log("link up", 20)
    return ctl, bridges[0], bridges[1]


def all_reach(hosts: list[Host]) -> None:
    for a in hosts:
        for b in hosts:
            if a is not b:
                wait_until(lambda: a.ping(b), 20, message=f"{a.name} -> {b.name}")


# --- isolation ---------------------------------------------------------------------

TWO_NETWORKS = """
controller: {{metrics_port: 0, lldp_interval: 0.5}}
switches:
  s1: {{dpid: {d1}, bridge: {b1}}}
  s2: {{dpid: {d2}, bridge: {b2}}}
links:
  - [s1:10, s2:10]
networks: {{red: {{vlan: 100}}, blue: {{vlan: 200}}}}
vms:
  r1: {{switch: s1, port: 1, network: red}}
  u1: {{switch: s1, port: 2, network: blue}}
  r2: {{switch: s2, port: 1, network: red}}
  u2: {{switch: s2, port: 2, network: blue}}
"""
VLAN = {"red": 100, "blue": 200}


def test_networks_are_isolated_across_the_trunk(lab: Lab, controller_factory: Factory, tmp_path: Path) -> None:
    d1, d2 = 0x6A, 0x6B
    ctl, b1, b2 = start_two_switches(lab, controller_factory, tmp_path, TWO_NETWORKS, (d1, d2))
    r1 = lab.add_host("r1", b1, 1, ip="10.81.0.1", mac="02:81:00:00:01:01")
    u1 = lab.add_host("u1", b1, 2, ip="10.81.0.11", mac="02:81:00:00:02:01")
    stray = lab.add_host("x", b1, 3, ip="10.81.0.99", mac="02:81:00:00:09:09")  # no vms entry
    r2 = lab.add_host("r2", b2, 1, ip="10.81.0.2", mac="02:81:00:00:01:02")
    u2 = lab.add_host("u2", b2, 2, ip="10.81.0.12", mac="02:81:00:00:02:02")
    nets = {"red": [r1, r2], "blue": [u1, u2]}
    net_of = {h.name: net for net, hosts in nets.items() for h in hosts}
    vms = [r1, r2, u1, u2]
    all_reach(nets["red"])
    all_reach(nets["blue"])

    captures = {h.name: Capture(h, tmp_path / f"{h.name}.pcap") for h in (*vms, stray)}
    # u1 keeps forging the controller's LLDP probe, claiming to be s2's trunk port.
    forged = eth(LLDP_DST, u1.mac, ETH_LLDP, lldp_probe(d2, 10))
    forger = u1.popen(["/usr/bin/python3", "-c", REPEAT, u1.iface, forged.hex()])
    wait_until(
        lambda: sum(f.raw == forged for f in captures["u1"].frames()) >= 10, 10, message="u1 is forging LLDP probes"
    )

    def leaks() -> list[str]:
        """Frames some capture holds from another network's VM (or any VM, for the stray)."""
        out = []
        for name, cap in captures.items():
            foreign = {o.mac for o in vms if name not in net_of or net_of[o.name] != net_of[name]}
            foreign |= {stray.mac} - {cap.host.mac}
            for f in cap.frames():
                if f.src in foreign or (b"VMN-TAGGED" in f.payload and f.src != cap.host.mac):
                    out.append(f"{name} received {f.raw[:18].hex()}... from {f.src}")
        return out

    def delivered(a: Host, b: Host) -> bool:
        return sum(f.src == a.mac and b"VMN-BCAST" in f.payload for f in captures[b.name].frames()) >= BURST

    assert not r1.ping(u1) and not r2.ping(u1) and not u2.ping(r1), "ping across networks"
    assert not stray.ping(r1), "an undeclared port reaches a VM"
    for h in (*vms, stray):
        others = [o for o in vms if o is not h]
        out = [
            eth(BCAST, h.mac, ETH_TEST, b"VMN-BCAST"),
            eth(BCAST, h.mac, ETH_ARP, arp(1, h.mac, h.ip or "", ZERO_MAC, h.ip or "")),
        ]
        out += [eth(o.mac, h.mac, ETH_TEST, b"VMN-UNICAST") for o in others]
        for vid in VLAN.values():  # its own network's id and the other's, as 802.1Q and 802.1ad
            for dst in [BCAST, *(o.mac for o in others)]:
                out.append(eth(dst, h.mac, ETH_TEST, b"VMN-TAGGED", tag=(ETH_VLAN, vid)))
                out.append(eth(dst, h.mac, ETH_TEST, b"VMN-TAGGED", tag=(ETH_QINQ, vid)))
        send(h, out, BURST)
    pairs = ((r1, r2), (r2, r1), (u1, u2), (u2, u1))
    wait_until(
        lambda: leaks() or all(delivered(a, b) for a, b in pairs),
        10,
        message="every VM receives its own network's broadcasts",
    )
    found = leaks()
    assert not found, "\n".join(found[:20])
    all_reach(nets["red"])  # still, with u1 forging all along
    all_reach(nets["blue"])
    forger.send_signal(signal.SIGTERM)
    forger.communicate(timeout=10)
    seen = stop_all(captures)
    found = leaks()
    assert not found, "\n".join(found[:20])

    for name, frames in seen.items():
        me = lab.hosts[name]
        if name in net_of:
            peer = next(o for o in nets[net_of[name]] if o is not me)
            assert delivered(peer, me), f"{name} did not receive {peer.name}'s broadcasts"
            assert any(f.arp() for f in frames_from(frames, [peer.mac])), f"{name} saw no ARP from {peer.name}"
        tagged = [f for f in frames if b"VMN-TAGGED" in f.payload]
        assert len(tagged) >= 2 * BURST * len(VLAN) and all(f.tags for f in tagged), (
            f"{name} did not send its tagged frames"
        )
    assert f"{d1:016x}:2 <->" not in ctl.log_text(), "the forged LLDP made u1's port a link"


# --- port security -----------------------------------------------------------------

DECLARED = """
controller: {{metrics_port: 0, lldp_interval: 0.5}}
switches:
  s1: {{dpid: {d1}, bridge: {b1}}}
  s2: {{dpid: {d2}, bridge: {b2}}}
links:
  - [s1:10, s2:10]
networks: {{red: {{vlan: 100}}}}
vms:
  r1: {{switch: s1, port: 1, network: red, mac: "02:82:00:00:00:01", ip: 10.82.0.1/24}}
  r3: {{switch: s1, port: 2, network: red, mac: "02:82:00:00:00:03", ip: 10.82.0.3/24}}
  r2: {{switch: s2, port: 1, network: red, mac: "02:82:00:00:00:02", ip: 10.82.0.2/24}}
"""
SPOOF_MARK = "02:de:ad:00:00:01"  # ARP target MAC of the spoofed frames
GOOD_MARK = "02:de:ad:00:00:02"  # ARP target MAC of r1's honest gratuitous ARP


def neighbour_mac(host: Host, ip: str) -> str:
    out = host.run(["ip", "neigh", "show", ip, "dev", host.iface]).stdout.split()
    return out[out.index("lladdr") + 1] if "lladdr" in out else ""


def test_spoofing_vm_is_cut_off_and_works_again_on_its_own_addresses(
    lab: Lab, controller_factory: Factory, tmp_path: Path
) -> None:
    _, b1, b2 = start_two_switches(lab, controller_factory, tmp_path, DECLARED, (0x6C, 0x6D))
    r1 = lab.add_host("r1", b1, 1, ip="10.82.0.1", mac="02:82:00:00:00:01")
    r3 = lab.add_host("r3", b1, 2, ip="10.82.0.3", mac="02:82:00:00:00:03")
    r2 = lab.add_host("r2", b2, 1, ip="10.82.0.2", mac="02:82:00:00:00:02")
    all_reach([r1, r2, r3])
    own_mac, own_ip = r1.mac, r1.ip or ""
    victim_ip = r2.ip or ""
    captures = {h.name: Capture(h, tmp_path / f"{h.name}.pcap") for h in (r2, r3)}

    # 1. A new MAC: nothing gets through, though the switch receives it all.
    rx = port_stats(b1)[1].rx_packets
    r1.set_mac("02:82:00:00:00:99")
    assert not r1.ping(r2, count=2), "r1 with a changed MAC still reaches r2"
    new_mac_frames = [  # from the new MAC (and from r2's), even when all else is r1's own
        eth(BCAST, r1.mac, ETH_TEST, b"VMN-NEWMAC"),
        eth(BCAST, r2.mac, ETH_TEST, b"VMN-NEWMAC"),
        eth(r2.mac, r1.mac, ETH_IPV4, ipv4_udp(own_ip, r2.ip or "", b"VMN-NEWMAC")),
        eth(BCAST, r1.mac, ETH_ARP, arp(1, own_mac, own_ip, SPOOF_MARK, own_ip)),
    ]
    send(r1, new_mac_frames, BURST)
    wait_until(
        lambda: port_stats(b1)[1].rx_packets - rx >= len(new_mac_frames) * BURST,
        10,
        message="the switch receives r1's frames",
    )
    r1.set_mac(own_mac)
    wait_until(lambda: r1.ping(r2) and r1.ping(r3), 20, message="r1 back on its MAC reaches r2 and r3")

    # 2. ARP claiming r2's IP: gratuitous, as a reply to r3, with r2's MAC inside, and from r2's MAC.
    wait_until(lambda: r3.ping(r2) and neighbour_mac(r3, victim_ip) == r2.mac, 10, message="r3 knows r2's address")
    spoofs = [
        eth(BCAST, own_mac, ETH_ARP, arp(1, own_mac, victim_ip, SPOOF_MARK, victim_ip)),
        eth(r3.mac, own_mac, ETH_ARP, arp(2, own_mac, victim_ip, SPOOF_MARK, r3.ip or "")),
        eth(BCAST, own_mac, ETH_ARP, arp(2, r2.mac, victim_ip, SPOOF_MARK, victim_ip)),
        eth(r3.mac, r2.mac, ETH_ARP, arp(2, own_mac, victim_ip, SPOOF_MARK, r3.ip or "")),
    ]
    send(r1, spoofs, BURST)
    send(r1, [eth(BCAST, own_mac, ETH_ARP, arp(1, own_mac, own_ip, GOOD_MARK, own_ip))])
    for cap in captures.values():  # the honest ARP sent after the spoofs arrives
        wait_until(
            lambda: any((a := f.arp()) and a[3] == GOOD_MARK for f in cap.frames()),
            10,
            message=f"{cap.host.name} receives r1's own gratuitous ARP",
        )
    assert neighbour_mac(r3, victim_ip) == r2.mac, "r3's ARP entry for r2 was poisoned"
    assert r1.ping(r2, count=2), "r1 on its own addresses is cut off after spoofing"

    # 3. r1 takes r2's IP: cut off; back on its own IP it works again.
    r1.run(["ip", "addr", "del", f"{own_ip}/24", "dev", r1.iface], check=True)
    r1.run(["ip", "addr", "add", f"{victim_ip}/24", "dev", r1.iface], check=True)
    r1.run(["ip", "neigh", "flush", "dev", r1.iface], check=True)
    assert not r1.ping(r3, count=2), "r1 using r2's IP reaches r3"
    assert r3.ping(r2) and neighbour_mac(r3, victim_ip) == r2.mac, "r2 lost its address to r1"
    r1.run(["ip", "addr", "del", f"{victim_ip}/24", "dev", r1.iface], check=True)
    r1.run(["ip", "addr", "add", f"{own_ip}/24", "dev", r1.iface], check=True)
    wait_until(lambda: r1.ping(r3) and r1.ping(r2), 20, message="r1 back on its own IP")

    seen = stop_all(captures)
    for name, frames in seen.items():
        assert not [f for f in frames if b"VMN-NEWMAC" in f.payload], f"{name} got frames from a changed MAC"
        assert not frames_from(frames, ["02:82:00:00:00:99"]), f"{name} got frames from r1's new MAC"
        arps = [a for f in frames if (a := f.arp())]
        assert not [a for a in arps if a[3] == SPOOF_MARK], f"{name} received a spoofed ARP"
        claims = [
            f
            for f in frames
            if f.src == own_mac and ((a := f.arp()) and a[2] == victim_ip or f.ipv4_src() == victim_ip)
        ]
        assert not claims, f"{name} received r1's frames claiming r2's IP"
        assert any(a[1] == own_mac and a[2] == own_ip for a in arps), f"{name} never heard r1's honest ARP"
