"""Network files as small parameterised builders (Mininet's ``topo.py`` idea).

Each builder returns a network-file dict, the structure ``yaml.safe_load``
gives for a file in ``topologies/`` (see :mod:`controller.config.load`):
``switches``, ``links`` (``["s1:10", "s2:11"]`` pairs), ``networks`` and
``vms``. Unit tests, real-OVS tests, benchmarks and Mininet build the same
networks from them instead of writing YAML and wiring by hand;
:func:`to_yaml` makes the text, ``vmn topo ring 4`` prints it (for
``VMN_CONFIG`` and ``mininet_scripts/vmn_mininet.py``).

Conventions (those of ``topologies/*.yaml`` and the tests):

- switches are numbered from 1; dpid = ``dpid_base`` + number (spines of
  :func:`leaf_spine` have their own base);
- network ``k`` of ``networks`` (0-based) has its VM on port ``1 + k`` of
  each switch it is placed on (:attr:`NetworkSpec.on`), named
  ``vm_prefix`` + switch number (``a1``, ``b3``); trunk ports start at 10;
- ``subnet`` given: the VM's ip is host ``k * stride + number`` of it,
  ``stride`` the smallest power of ten above the highest number a VM's
  switch may have (``10.1.0.13/24`` for network 1 on switch 3 of at most 9);
- ``mac_prefix`` given (4 octets): the VM's mac is
  ``<mac_prefix>:<switch number>:<port>`` in hex (``02:00:00:01:03:02``).

Output is deterministic: the same arguments give the same dict, in the
same key order. Only the standard library and PyYAML (through
:mod:`controller.config`) are imported, so Debian's Python runs it too.

>>> net = ring(3)
>>> net["links"]
[['s1:10', 's2:11'], ['s2:10', 's3:11'], ['s3:10', 's1:11']]
>>> sorted(net["vms"])
['a1', 'a2', 'a3', 'b1', 'b2', 'b3']
"""

from __future__ import annotations

import copy
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, NotRequired, TypedDict

import yaml

from controller.config import ConfigError, parse_model

TRUNK_PORT = 10
"""First port number used for links; VM ports are below it."""
TREE_UPLINK = 20
"""Port of a tree switch toward its parent; ports 10-19 lead to its children."""


class SwitchEntry(TypedDict):
    """``switches.<name>``: ``dpid``, and ``bridge`` when not the switch name."""

    dpid: int
    bridge: NotRequired[str]


class NetworkEntry(TypedDict):
    """``networks.<name>``: the network's VLAN id (1-4094)."""

    vlan: int


class VmEntry(TypedDict):
    """``vms.<name>``: where the VM is plugged in, and its addresses when declared."""

    switch: str
    port: int
    network: str
    ip: NotRequired[str]
    mac: NotRequired[str]


class NetworkFile(TypedDict):
    """A network file (the part builders make, plus an optional ``controller``)."""

    controller: NotRequired[dict[str, object]]
    switches: dict[str, SwitchEntry]
    links: list[list[str]]
    networks: dict[str, NetworkEntry]
    vms: dict[str, VmEntry]


@dataclass(frozen=True)
class NetworkSpec:
    """A tenant network of a built topology.

    ``vm_prefix`` starts the names of its VMs; ``on`` lists the numbers of
    the switches holding one of its VMs (``None``: the builder's edge
    switches, e.g. every switch of a ring, every leaf, the deepest level
    of a tree).
    """

    name: str
    vlan: int
    vm_prefix: str
    on: tuple[int, ...] | None = None


TENANTS = (NetworkSpec("tenant-a", 100, "a"), NetworkSpec("tenant-b", 200, "b"))
"""The default networks, as in ``topologies/*.yaml``."""


class _Draft:
    """Collects one network file; :meth:`done` validates and returns it."""

    def __init__(
        self, networks: Sequence[NetworkSpec], bridges: Sequence[str] | None, subnet: str | None, mac_prefix: str | None
    ) -> None:
        if not 1 <= len(networks) < TRUNK_PORT:
            raise ValueError(f"need 1 to {TRUNK_PORT - 1} networks, got {len(networks)}")
        self.networks = tuple(networks)
        self.bridges = None if bridges is None else list(bridges)
        self.subnet = None if subnet is None else ipaddress.IPv4Network(subnet)
        self.mac_prefix = mac_prefix
        self.net: NetworkFile = {"switches": {}, "links": [], "networks": {}, "vms": {}}

    def switch(self, name: str, dpid: int) -> None:
        entry: SwitchEntry = {"dpid": dpid}
        if self.bridges is not None:
            index = len(self.net["switches"])
            if index >= len(self.bridges):
                raise ValueError(f"{len(self.bridges)} bridge names for more switches")
            entry["bridge"] = self.bridges[index]
        self.net["switches"][name] = entry

    def link(self, a: str, port_a: int, b: str, port_b: int) -> None:
        self.net["links"].append([f"{a}:{port_a}", f"{b}:{port_b}"])

    def place_vms(self, switches: Mapping[int, str], default: Iterable[int]) -> None:
        """One VM per network on each of its switches; ``switches`` maps number -> name."""
        stride = 10 ** len(str(max(switches)))
        for k, spec in enumerate(self.networks):
            self.net["networks"][spec.name] = {"vlan": spec.vlan}
            numbers = tuple(default) if spec.on is None else spec.on
            for number in numbers:
                if number not in switches:
                    raise ValueError(f"network {spec.name}: no switch number {number} for a VM")
                self.vm(f"{spec.vm_prefix}{number}", switches[number], 1 + k, spec.name, k * stride + number, number)

    def vm(self, name: str, switch: str, port: int, network: str, host: int, number: int) -> None:
        entry: VmEntry = {"switch": switch, "port": port, "network": network}
        if self.subnet is not None:
            if not 0 < host < self.subnet.num_addresses - 1:
                raise ValueError(f"VM {name}: host {host} does not fit in {self.subnet}")
            entry["ip"] = f"{self.subnet.network_address + host}/{self.subnet.prefixlen}"
        if self.mac_prefix is not None:
            entry["mac"] = f"{self.mac_prefix}:{number:02x}:{port:02x}"
        self.net["vms"][name] = entry

    def done(self) -> NetworkFile:
        if self.bridges is not None and len(self.bridges) != len(self.net["switches"]):
            raise ValueError(f"{len(self.bridges)} bridge names for {len(self.net['switches'])} switches")
        try:
            parse_model(self.net)
        except ConfigError as err:
            raise ValueError(f"invalid network file: {err}") from err
        return self.net


def ring(
    n: int,
    *,
    networks: Sequence[NetworkSpec] = TENANTS,
    dpid_base: int = 0,
    bridges: Sequence[str] | None = None,
    subnet: str | None = None,
    mac_prefix: str | None = None,
) -> NetworkFile:
    """``n`` switches ``s1``..``sn`` in a ring: ``s<i>`` port 10 to ``s<i+1>`` port 11.

    The last switch's port 10 goes back to ``s1`` port 11. VMs default to
    every switch. ``bridges``: OVS bridge names in switch order (default:
    the switch names).

    Raises
    ------
    ValueError
        If ``n < 3``, or the parameters make an invalid network file (e.g. a
        VM on a switch that does not exist, a subnet too small).
    """
    if n < 3:
        raise ValueError(f"a ring needs at least 3 switches, got {n}")
    return _chain(n, True, _Draft(networks, bridges, subnet, mac_prefix), dpid_base)


def linear(
    n: int,
    *,
    networks: Sequence[NetworkSpec] = TENANTS,
    dpid_base: int = 0,
    bridges: Sequence[str] | None = None,
    subnet: str | None = None,
    mac_prefix: str | None = None,
) -> NetworkFile:
    """A :func:`ring` of ``n`` switches without the link from ``sn`` back to ``s1``.

    Raises
    ------
    ValueError
        If ``n < 1`` or the parameters make an invalid network file.
    """
    if n < 1:
        raise ValueError(f"a line needs at least one switch, got {n}")
    return _chain(n, False, _Draft(networks, bridges, subnet, mac_prefix), dpid_base)


def _chain(n: int, closed: bool, draft: _Draft, dpid_base: int) -> NetworkFile:
    """Switches ``s1``..``sn``, port 10 of each to port 11 of the next (and of ``s1``: closed)."""
    for i in range(1, n + 1):
        draft.switch(f"s{i}", dpid_base + i)
    for i in range(1, n if not closed else n + 1):
        draft.link(f"s{i}", TRUNK_PORT, f"s{i % n + 1}", TRUNK_PORT + 1)
    draft.place_vms({i: f"s{i}" for i in range(1, n + 1)}, range(1, n + 1))
    return draft.done()


def leaf_spine(
    spines: int,
    leaves: int,
    *,
    networks: Sequence[NetworkSpec] = TENANTS,
    dpid_base: int = 0,
    spine_dpid_base: int = 100,
    bridges: Sequence[str] | None = None,
    subnet: str | None = None,
    mac_prefix: str | None = None,
) -> NetworkFile:
    """Spines ``sp1``.. and leaves ``l1``..; every leaf cabled to every spine.

    Leaf ``l<i>`` port ``10 + s`` goes to spine ``sp<s>`` port ``i``. Spine
    dpids are ``spine_dpid_base + s``, leaf dpids ``dpid_base + i``. VMs sit
    on leaves only (``NetworkSpec.on`` numbers leaves); spines come first in
    the file and in ``bridges``. Links are listed leaf by leaf.

    Raises
    ------
    ValueError
        If there is no spine or leaf, more than 9 spines (leaf ports would
        run past 19) or the parameters make an invalid network file.
    """
    if not 1 <= spines < TRUNK_PORT or leaves < 1:
        raise ValueError(f"need 1-9 spines and at least one leaf, got {spines} and {leaves}")
    draft = _Draft(networks, bridges, subnet, mac_prefix)
    for s in range(1, spines + 1):
        draft.switch(f"sp{s}", spine_dpid_base + s)
    for i in range(1, leaves + 1):
        draft.switch(f"l{i}", dpid_base + i)
    for i in range(1, leaves + 1):
        for s in range(1, spines + 1):
            draft.link(f"l{i}", TRUNK_PORT + s, f"sp{s}", i)
    draft.place_vms({i: f"l{i}" for i in range(1, leaves + 1)}, range(1, leaves + 1))
    return draft.done()


VM_PORT_BASE = 100
"""First VM port of :func:`leaf_spine_tenants` (a leaf's ports 11-19 lead to spines)."""


def leaf_spine_tenants(
    spines: int,
    leaves: int,
    *,
    networks: int,
    vms_per_leaf: int,
    dpid_base: int = 0,
    spine_dpid_base: int = 100,
) -> NetworkFile:
    """The cabling of :func:`leaf_spine` with many tenant networks and many VMs per leaf (scale tests).

    Network ``k`` (from 0) is ``net<k>``, VLAN ``100 + k``, subnet
    ``10.<k>.0.0/16``. VM ``j`` (from 0) of leaf ``i`` is ``v<i>-<j>`` on
    port ``100 + j``; counting VMs leaf by leaf as ``n``, it is in network
    ``n % networks`` (so a leaf holds ``min(networks, vms_per_leaf)``
    networks), its ip is host ``n // networks + 1`` of that subnet and its
    mac ``02:00:<i>:<j>`` (16 bits each, hex).

    >>> net = leaf_spine_tenants(2, 3, networks=4, vms_per_leaf=2)
    >>> len(net["vms"]), net["vms"]["v2-1"]
    (6, {'switch': 'l2', 'port': 101, 'network': 'net3', 'ip': '10.3.0.1/16', 'mac': '02:00:00:02:00:01'})

    Raises
    ------
    ValueError
        If a count is out of range (1-9 spines, 1-4096 leaves, 1-250
        networks, 1-10000 VMs per leaf).
    """
    if not (1 <= spines < TRUNK_PORT and 1 <= leaves <= 4096 and 1 <= networks <= 250 and 1 <= vms_per_leaf <= 10000):
        raise ValueError(
            "need 1-9 spines, 1-4096 leaves, 1-250 networks and 1-10000 VMs per leaf, "
            f"got {spines}, {leaves}, {networks}, {vms_per_leaf}"
        )
    cabling = leaf_spine(
        spines,
        leaves,
        networks=(NetworkSpec("unused", 4094, "u", ()),),
        dpid_base=dpid_base,
        spine_dpid_base=spine_dpid_base,
    )
    net: NetworkFile = {
        "switches": cabling["switches"],
        "links": cabling["links"],
        "networks": {f"net{k}": {"vlan": 100 + k} for k in range(networks)},
        "vms": {},
    }
    for i in range(1, leaves + 1):
        for j in range(vms_per_leaf):
            n = (i - 1) * vms_per_leaf + j
            k, host = n % networks, n // networks + 1
            net["vms"][f"v{i}-{j}"] = {
                "switch": f"l{i}",
                "port": VM_PORT_BASE + j,
                "network": f"net{k}",
                "ip": f"10.{k}.{host >> 8}.{host & 0xFF}/16",
                "mac": f"02:00:{i >> 8:02x}:{i & 0xFF:02x}:{j >> 8:02x}:{j & 0xFF:02x}",
            }
    return net


def tree(
    depth: int,
    fanout: int | Sequence[int],
    *,
    networks: Sequence[NetworkSpec] = TENANTS,
    dpid_base: int = 0,
    bridges: Sequence[str] | None = None,
    subnet: str | None = None,
    mac_prefix: str | None = None,
) -> NetworkFile:
    """A tree of ``depth`` levels of switches, numbered breadth first from the root ``s1``.

    ``fanout`` is the number of children of each switch, or one number per
    level above the last (``tree(3, (2, 1))``: a root with two children,
    each with one child). A parent's port ``10 + c`` goes to its child
    ``c`` (from 0), the child's port 20. VMs default to the deepest level.

    Raises
    ------
    ValueError
        If ``depth < 1``, the fanouts are not ``depth - 1`` numbers in 1..10,
        or the parameters make an invalid network file.
    """
    fanouts = [fanout] * (depth - 1) if isinstance(fanout, int) else list(fanout)
    if depth < 1 or len(fanouts) != depth - 1 or not all(1 <= f <= 10 for f in fanouts):
        raise ValueError(f"need depth >= 1 and depth - 1 fanouts in 1..10, got {depth}, {fanout}")
    draft = _Draft(networks, bridges, subnet, mac_prefix)
    level = [1]
    draft.switch("s1", dpid_base + 1)
    count = 1
    for f in fanouts:
        below = []
        for parent in level:
            for c in range(f):
                count += 1
                draft.switch(f"s{count}", dpid_base + count)
                draft.link(f"s{parent}", TRUNK_PORT + c, f"s{count}", TREE_UPLINK)
                below.append(count)
        level = below
    draft.place_vms({i: f"s{i}" for i in range(1, count + 1)}, level)
    return draft.done()


def single(
    vms: int,
    *,
    networks: Sequence[NetworkSpec] = TENANTS,
    dpid_base: int = 0,
    bridges: Sequence[str] | None = None,
    subnet: str | None = None,
    mac_prefix: str | None = None,
) -> NetworkFile:
    """One switch ``s1`` with ``vms`` VMs of each network.

    VM ``j`` (from 1) of network ``k`` is ``vm_prefix + j`` on port
    ``k * vms + j`` (``single(2)``: a1, a2 on ports 1, 2; b1, b2 on 3, 4);
    its ip is host ``k * stride + j`` (``j`` stands for the switch number
    in the module's rule), its mac ``<mac_prefix>:01:<port>``.

    Raises
    ------
    ValueError
        If ``vms < 1``, a network has ``on`` set (it means nothing here), or
        the parameters make an invalid network file.
    """
    if vms < 1 or any(spec.on is not None for spec in networks):
        raise ValueError(f"need vms >= 1 and networks without 'on', got {vms}")
    draft = _Draft(networks, bridges, subnet, mac_prefix)
    draft.switch("s1", dpid_base + 1)
    stride = 10 ** len(str(vms))
    for k, spec in enumerate(networks):
        draft.net["networks"][spec.name] = {"vlan": spec.vlan}
        for j in range(1, vms + 1):
            draft.vm(f"{spec.vm_prefix}{j}", "s1", k * vms + j, spec.name, k * stride + j, 1)
    return draft.done()


_SECTIONS = ("controller", "switches", "links", "networks", "vms")


def to_yaml(net: NetworkFile) -> str:
    """The network file as YAML text: sections in schema order, one line per entry."""
    data: dict[str, object] = dict(net)
    ordered = {key: data[key] for key in _SECTIONS if key in data}
    text: str = yaml.safe_dump(ordered, sort_keys=False, default_flow_style=None, width=120)
    return text


def without_addresses(net: NetworkFile, fields: Iterable[Literal["ip", "mac"]] = ("ip", "mac")) -> NetworkFile:
    """A copy of ``net`` whose VMs declare none of ``fields``.

    For a controller that must not enforce addresses the lab hosts still
    use (declared ``ip``/``mac`` turn on port security).
    """
    out = copy.deepcopy(net)
    for entry in out["vms"].values():
        for key in fields:
            entry.pop(key, None)
    return out


Port = tuple[str, int]
"""(switch name, OpenFlow port number)."""


def split_end(end: str) -> Port:
    """``"s1:10"`` -> ``("s1", 10)``.

    Raises
    ------
    ValueError
        If ``end`` is not ``switch:number`` (named ports are not supported).
    """
    switch, _, port = end.rpartition(":")
    if not switch or not port.isdigit():
        raise ValueError(f"expected 'switch:number', got {end!r}")
    return switch, int(port)


def link_ends(net: NetworkFile) -> list[tuple[Port, Port]]:
    """The links of ``net`` as ((switch, port), (switch, port)), in file order.

    Raises
    ------
    ValueError
        If a link end is not ``switch:number``.
    """
    return [(split_end(a), split_end(b)) for a, b in net["links"]]
