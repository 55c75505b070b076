"""Which discovered links the fabric may use: the network file says which ports may be trunks.

A heard probe proves that a frame sent out of one port arrived at another,
not that a cable joins them. A host on two ports that relays frames
between them (a Linux bridge, a raw-socket copier) makes those ports look
cabled, and the signed probes it relays are genuine ones. A port that
becomes a trunk carries, tagged, every network whose paths or flood tree
use it, so a relayed "link" would hand tenant traffic to that host. So a
discovered link is *used* (for paths, floods, backups and trunk VLANs)
only when the network file allows it:

- **zero-config** (no file): every link LLDP finds, as a learning switch
  would (a cable from a switch to itself too: its ports then carry nothing,
  so a hairpin cable cannot storm);
- **a file with** ``links``: exactly the declared links. A link that LLDP
  finds but the file does not declare (a relay, a cable on other ports, two
  declared cables crossed) is never used;
- **a file without** ``links``: a link between two switches of the file, on
  ports that are neither a VM's nor a mirror's, and not from a switch to
  itself. Declaring ``links`` locks this down to the declared cables.

With ``hosts``, the tunnel between two hosts' tunnel switches (the ports
:mod:`controller.fabric.tunnels` names after each other's address) is
allowed whatever ``links`` says; a tunnel port heard anywhere else
(a probe from another switch or port) is refused.

Probes go out only of ports that may be trunks. A refused link is logged
once and counted in ``vmn_link_mismatches`` while its probes are heard
(:class:`~controller.fabric.links.LinkMonitor`); it never displaces a link
in use.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from controller.config.model import Model
from controller.fabric.topology import MAX_PHYSICAL_PORT, LinkKey, PortInfo, resolve_port
from controller.fabric.tunnels import tunnel_ends, tunnel_links

End = tuple[int, int]
"""(dpid, port)."""


@dataclass(frozen=True)
class LinkPolicy:
    """The file's rule for links, resolved against the ports of the connected switches.

    Build it with :meth:`of`; ``declared`` is None when the file declares no
    ``links`` (then any port not in ``reserved`` of a ``known`` switch may
    be a trunk).
    """

    zero_config: bool
    declared: Mapping[LinkKey, str] | None
    """Declared links whose switches are connected and ports resolved -> their text in the file."""
    known: frozenset[int]
    """Dpids of the file's switches."""
    reserved: Mapping[End, str]
    """Ports that are never trunks (VMs', mirrors') -> whose they are."""
    names: Mapping[int, str]
    declared_ends: frozenset[End] = frozenset()
    """The ends of declared links on connected switches (the other end's switch may not be up yet)."""
    tunnels: Mapping[LinkKey, str] | None = None
    """The tunnels between hosts whose ports are both present -> ``hv1 <-> hv2``."""
    tunnel_ends: Mapping[End, str] | None = None
    """Every tunnel port of a connected tunnel switch -> the peer host."""

    @staticmethod
    def of(model: Model, ports: Mapping[int, Mapping[int, PortInfo]]) -> LinkPolicy:
        """The policy of ``model`` on switches with ``ports`` (dpid -> port number -> port)."""

        def end(switch: str, ref: int | str) -> End | None:
            dpid = model.switch_by_name[switch].dpid
            if dpid not in ports:
                return None
            number = resolve_port(ports[dpid], ref)
            return None if number is None else (dpid, number)

        reserved: dict[End, str] = {}
        for vm in model.vms:
            at = end(vm.switch, vm.port)
            if at is not None:
                reserved[at] = f"VM {vm.name}'s port"
        for mirror in model.mirrors:
            at = end(mirror.switch, mirror.port)
            if at is not None:
                reserved[at] = f"mirror {mirror.name}'s port"
        declared: dict[LinkKey, str] | None = None
        ends: set[End] = set()
        if model.links:
            declared = {}
            for link in model.links:
                a, b = end(link.a.switch, link.a.port), end(link.b.switch, link.b.port)
                ends.update(e for e in (a, b) if e is not None)
                if a is not None and b is not None:
                    declared[LinkKey.of(*a, *b)] = f"{link.a.switch}:{link.a.port} <-> {link.b.switch}:{link.b.port}"
        return LinkPolicy(
            model.zero_config,
            declared,
            frozenset(model.switch_by_dpid),
            reserved,
            {s.dpid: s.name for s in model.switches},
            frozenset(ends),
            tunnel_links(model, ports),
            tunnel_ends(model, ports),
        )

    def may_be_trunk(self, dpid: int, port: int) -> bool:
        """Whether ``dpid``/``port`` may ever be a trunk (and so is probed)."""
        if port >= MAX_PHYSICAL_PORT:
            return False
        if self.zero_config:
            return True
        if (dpid, port) in (self.tunnel_ends or {}):
            return True
        if self.declared is not None:
            return (dpid, port) in self.declared_ends
        return dpid in self.known and (dpid, port) not in self.reserved

    def refusal(self, link: LinkKey) -> str | None:
        """Why discovered ``link`` may not be used, or None if it may."""
        if self.zero_config:
            return None
        for dpid in (link.a_dpid, link.b_dpid):
            if dpid not in self.known:
                return f"switch {dpid:016x} is not in the network file"
        if link.a_dpid == link.b_dpid:
            return f"both ends on switch {self.names[link.a_dpid]}"
        if link in (self.tunnels or {}):
            return None
        for end in ((link.a_dpid, link.a_port), (link.b_dpid, link.b_port)):
            peer = (self.tunnel_ends or {}).get(end)
            if peer is not None:
                return f"{self.names[end[0]]}:{end[1]} is the tunnel to host {peer}"
        for dpid, port in ((link.a_dpid, link.a_port), (link.b_dpid, link.b_port)):
            whose = self.reserved.get((dpid, port))
            if whose is not None:
                return f"{self.names[dpid]}:{port} is {whose}"
        if self.declared is not None and link not in self.declared:
            return "not declared in links"
        return None

    def missing(self, links: Iterable[LinkKey]) -> list[str]:
        """Declared links (between connected switches) that are not among ``links``, sorted."""
        if self.declared is None:
            return []
        up = set(links)
        return sorted(text for link, text in self.declared.items() if link not in up)

    def describe(self, link: LinkKey) -> str:
        """``s1:5 <-> s2:5`` (switch names where the file has them)."""

        def end(dpid: int, port: int) -> str:
            return f"{self.names.get(dpid, f'{dpid:016x}')}:{port}"

        return f"{end(link.a_dpid, link.a_port)} <-> {end(link.b_dpid, link.b_port)}"
