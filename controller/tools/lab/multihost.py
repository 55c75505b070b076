"""The :class:`MultiHostLab`: several emulated hypervisors on one machine, removed on exit.

Each hypervisor is a network namespace with its own ``ovsdb-server`` and
``ovs-vswitchd`` (:class:`~controller.tools.lab.hypervisor.Hypervisor`);
VMs are namespaces with a veth into a hypervisor's bridge; cables are veth
pairs between two hypervisors' bridges; the underlay joins the hypervisors'
``br-phy`` bridges for tunnels. Nothing here touches the system OVS.

Names (prefix ``v1a2b3``, at most 15 characters for an interface):

- hypervisor ``hv1``: namespace ``v1a2b3-hv1``, directory ``DIR/hv1``;
  hypervisors and VMs share one set of names;
- VM ``a``: namespace ``v1a2b3-a``, interface ``v1a2b3a`` in it, bridge end
  ``v1a2b3ap`` in the hypervisor's namespace;
- cable ``n``: ``v1a2b3l<n>a`` / ``v1a2b3l<n>b`` in the two hypervisors;
- management: Linux bridge ``v1a2b3mg`` in the root namespace holding the
  controller's address ``10.254.S.254/24`` (S picked free, see
  :func:`claim_subnet`); hypervisor number N (from 1) has ``mgmt0`` at
  ``10.254.S.N`` joined to it by the root-side veth ``v1a2b3<hv>m``;
- underlay: namespace ``v1a2b3-underlay`` with Linux bridge ``br0``; each
  hypervisor has ``ul0`` on its ``br-phy`` bridge, the underlay address on
  ``br-phy`` itself.

The controller runs in the root namespace: start it with
``ControllerProcess(..., listen_host=lab.controller_ip)`` and give
:meth:`Hypervisor.add_bridge` its port.

Examples
--------
>>> with MultiHostLab() as lab:                               # doctest: +SKIP
...     hv1, hv2 = lab.add_hypervisor("hv1"), lab.add_hypervisor("hv2")
...     lab.underlay(hv1, "172.31.0.1"); lab.underlay(hv2, "172.31.0.2")
...     wait_until(lambda: hv1.ping("172.31.0.2"), 10)
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from controller.tools.lab.hosts import Link, check_ifname, disable_ipv6, link_exists
from controller.tools.lab.hypervisor import Hypervisor, Ledger
from controller.tools.lab.shell import CommandError, sh, stop_processes, unique_prefix

PortRef = tuple[Hypervisor, str, int]
"""One end of a cable: (hypervisor, bridge on it, OpenFlow port)."""

MGMT_SUBNETS = 250
"""Management subnets ``10.254.1.0/24`` .. ``10.254.250.0/24`` to pick from."""
UNDERLAY_BRIDGE = "br-phy"
"""The OVS bridge on each hypervisor that owns the underlay port and address."""


@dataclass(frozen=True)
class Cable(Link):
    """A veth pair between bridges of two hypervisors (``iface_a`` in ``hypervisor_a``)."""

    hypervisor_a: str
    hypervisor_b: str


class MultiHostLab:
    """Emulated hypervisors, their VMs, cables, management network and underlay.

    Use as a context manager: everything created is removed on exit, also
    when the body raised; daemons are stopped by the pid in their pidfile
    (only if that process still runs from this lab's directory).
    ``prefix`` (default :func:`unique_prefix`) starts every name.

    Raises
    ------
    RuntimeError
        On exit, if cleanup failed while the body succeeded (when the body
        raised, cleanup problems are only warned about).
    """

    def __init__(self, prefix: str | None = None) -> None:
        self.prefix = prefix or unique_prefix()
        self.dir = Path(tempfile.mkdtemp(prefix=f"vmn-{self.prefix}-"))
        self.hypervisors: dict[str, Hypervisor] = {}
        self.cables: list[Cable] = []
        self._ledger = Ledger(self.prefix, self.dir, names={"underlay"})  # see underlay_netns
        self._subnet: int | None = None
        self._underlay_ns: str | None = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is not None:
            self._print_logs()
        errors = self.cleanup()
        if errors and exc is None:
            raise RuntimeError("multi-host lab cleanup failed: " + "; ".join(errors))
        for error in errors:
            warnings.warn(f"multi-host lab cleanup: {error}", stacklevel=2)

    # -- management network ------------------------------------------------

    @property
    def mgmt_bridge(self) -> str:
        """The root namespace's Linux bridge joining the controller to every hypervisor."""
        return f"{self.prefix}mg"

    @property
    def controller_ip(self) -> str:
        """The controller's address on the management network (created on first use)."""
        if self._subnet is None:
            bridge = check_ifname(self.mgmt_bridge)
            sh(["ip", "link", "add", bridge, "type", "bridge"])
            self._ledger.root_links.append(bridge)
            disable_ipv6(bridge)
            sh(["ip", "link", "set", "dev", bridge, "up"])
            self._subnet = claim_subnet(bridge, zlib.crc32(self.prefix.encode()))
        return f"10.254.{self._subnet}.254"

    def _join_management(self, hv: Hypervisor) -> None:
        root_end = check_ifname(f"{self.prefix}{hv.name}m")
        sh(["ip", "link", "add", "name", root_end, "type", "veth", "peer", "name", "mgmt0", "netns", hv.netns])
        self._ledger.root_links.append(root_end)
        disable_ipv6(root_end)
        sh(["ip", "link", "set", "dev", root_end, "master", self.mgmt_bridge, "up"])
        hv.run(["ip", "addr", "add", f"{hv.mgmt_ip}/24", "dev", "mgmt0"], check=True)
        hv.run(["ip", "link", "set", "dev", "mgmt0", "up"], check=True)

    # -- hypervisors, cables, underlay -----------------------------------------

    def add_hypervisor(self, name: str) -> Hypervisor:
        """Create hypervisor ``name``: namespace, private OVS, management address.

        Raises
        ------
        ValueError
            If the name is taken or too long (at most 8 characters with the
            default prefix).
        CommandError
            If a daemon does not start.
        """
        check_ifname(f"{self.prefix}{name}m")
        if len(self.hypervisors) >= 253:
            raise ValueError("at most 253 hypervisors per lab")
        controller_ip = self.controller_ip
        self._ledger.claim(name)
        mgmt_ip = controller_ip.rsplit(".", 1)[0] + f".{len(self.hypervisors) + 1}"
        hv = Hypervisor(name, self.dir / name, self._ledger, controller_ip, mgmt_ip)
        self.hypervisors[name] = hv
        self._ledger.add_netns(hv.netns)
        hv.start()
        self._join_management(hv)
        return hv

    def link(self, a: PortRef, b: PortRef) -> Cable:
        """Cable ``a`` to ``b`` (each ``(hypervisor, bridge, ofport)``) with a veth pair.

        Like a declared ``links`` entry: LLDP sees a plain wire.

        Raises
        ------
        ValueError
            If a bridge is not on its hypervisor.
        """
        (hv_a, br_a, port_a), (hv_b, br_b, port_b) = a, b
        for hv, br in ((hv_a, br_a), (hv_b, br_b)):
            if br not in hv.bridges:
                raise ValueError(f"bridge {br!r} is not on hypervisor {hv.name}")
        n = len(self.cables) + 1
        cable = Cable(
            br_a,
            check_ifname(f"{self.prefix}l{n}a"),
            port_a,
            br_b,
            check_ifname(f"{self.prefix}l{n}b"),
            port_b,
            hv_a.name,
            hv_b.name,
        )
        sh(
            [
                "ip",
                "link",
                "add",
                "name",
                cable.iface_a,
                "netns",
                hv_a.netns,
                "type",
                "veth",
                "peer",
                "name",
                cable.iface_b,
                "netns",
                hv_b.netns,
            ]
        )
        self.cables.append(cable)
        hv_a.attach(br_a, cable.iface_a, port_a)
        hv_b.attach(br_b, cable.iface_b, port_b)
        return cable

    def set_cable(self, cable: Cable, up: bool) -> None:
        """Take both ends of ``cable`` down (``up=False``) or up: both bridges see link down."""
        state = "up" if up else "down"
        for hv, iface in ((cable.hypervisor_a, cable.iface_a), (cable.hypervisor_b, cable.iface_b)):
            self.hypervisors[hv].run(["ip", "link", "set", "dev", iface, state], check=True)

    @property
    def underlay_netns(self) -> str:
        """The namespace whose Linux bridge ``br0`` joins every hypervisor's ``ul0``."""
        return f"{self.prefix}-underlay"

    def underlay(self, hv: Hypervisor, ip: str, mtu: int = 1600) -> str:
        """Put ``hv`` on the underlay at ``ip`` (prefix length default ``/24``); return the address.

        Creates bridge ``br-phy`` (netdev, ``fail_mode=standalone``) on
        ``hv`` owning veth ``ul0``, whose peer joins ``br0`` in
        :attr:`underlay_netns`; the address sits on ``br-phy`` itself, so
        ``ovs-vswitchd`` routes tunnels by it. ``mtu`` (default 1600)
        leaves room for VXLAN/Geneve around 1500-byte VM frames. Two hosts
        share the Linux bridge too (rather than a direct veth): a further
        host can join at any time, and :meth:`set_underlay` cuts one host.

        Raises
        ------
        ValueError
            If ``hv`` is already on the underlay.
        """
        if hv.underlay_ip is not None:
            raise ValueError(f"{hv.name} is already on the underlay at {hv.underlay_ip}")
        netns = self._underlay()
        sh(
            [
                "ip",
                "link",
                "add",
                "name",
                "ul0",
                "netns",
                hv.netns,
                "mtu",
                str(mtu),
                "type",
                "veth",
                "peer",
                "name",
                hv.name,
                "netns",
                netns,
                "mtu",
                str(mtu),
            ]
        )
        sh(["ip", "-n", netns, "link", "set", "dev", hv.name, "master", "br0", "up"])
        hv.vsctl(
            "add-br",
            UNDERLAY_BRIDGE,
            "--",
            "set",
            "bridge",
            UNDERLAY_BRIDGE,
            "datapath_type=netdev",
            "fail_mode=standalone",
            "other-config:disable-in-band=true",
            "--",
            "set",
            "interface",
            UNDERLAY_BRIDGE,
            f"mtu_request={mtu}",
        )
        hv.bridges.append(UNDERLAY_BRIDGE)
        hv.attach(UNDERLAY_BRIDGE, "ul0", 1)
        cidr = ip if "/" in ip else f"{ip}/24"
        hv.run(["ip", "addr", "add", cidr, "dev", UNDERLAY_BRIDGE], check=True)
        hv.run(["ip", "link", "set", "dev", UNDERLAY_BRIDGE, "up"], check=True)
        hv.underlay_ip = cidr.split("/")[0]
        return hv.underlay_ip

    def set_underlay(self, hv: Hypervisor, up: bool) -> None:
        """Cut ``hv`` off the underlay (``up=False``) or reconnect it; its ``ul0`` loses carrier."""
        if hv.underlay_ip is None:
            raise ValueError(f"{hv.name} is not on the underlay")
        sh(["ip", "-n", self.underlay_netns, "link", "set", "dev", hv.name, "up" if up else "down"])

    def _underlay(self) -> str:
        if self._underlay_ns is None:
            self._ledger.add_netns(self.underlay_netns)
            self._underlay_ns = self.underlay_netns
            sh(["ip", "-n", self._underlay_ns, "link", "add", "br0", "type", "bridge"])
            sh(["ip", "-n", self._underlay_ns, "link", "set", "dev", "br0", "up"])
        return self._underlay_ns

    # -- cleanup -----------------------------------------------------------------

    def cleanup(self) -> list[str]:
        """Remove everything this lab created; return the errors (best effort).

        Order: processes started in VMs, daemons (newest first), root-side
        links (a veth's peer goes with it), namespaces, the directory.
        """
        errors: list[str] = []

        def attempt(cmd: list[str]) -> None:
            try:
                sh(cmd)
            except (CommandError, subprocess.TimeoutExpired, OSError) as err:
                errors.append(str(err))

        ledger = self._ledger
        stop_processes(ledger.processes)
        for pidfile in reversed(ledger.pidfiles):
            error = stop_daemon(pidfile)
            if error:
                errors.append(error)
        ledger.pidfiles.clear()
        for link in reversed(ledger.root_links):
            if link_exists(link):
                attempt(["ip", "link", "del", "dev", link])
        ledger.root_links.clear()
        existing = set(sh(["ip", "netns", "list"], check=False).stdout.split())
        for netns in reversed(ledger.namespaces):
            if netns in existing:
                attempt(["ip", "netns", "del", netns])
        ledger.namespaces.clear()
        shutil.rmtree(self.dir, ignore_errors=True)
        self.hypervisors.clear()
        return errors

    def _print_logs(self, lines: int = 30) -> None:
        for hv in self.hypervisors.values():
            tail = hv.log_text().splitlines()[-lines:]
            print(f"--- {hv.name} ovs-vswitchd.log (last {lines} lines) ---", *tail, sep="\n", file=sys.stderr)


def claim_subnet(bridge: str, seed: int) -> int:
    """Give ``bridge`` (root namespace) ``10.254.S.254/24`` for a free S; return S.

    Starts at ``seed`` modulo :data:`MGMT_SUBNETS` and skips subnets any
    address or route already uses. Concurrent labs may pick the same S at
    the same moment; after adding its address each checks again and backs
    off to a random subnet if anything else uses S, so two never both keep it.

    Raises
    ------
    RuntimeError
        If no subnet could be claimed.
    """
    candidate = seed % MGMT_SUBNETS
    for _ in range(2 * MGMT_SUBNETS):
        s = candidate + 1
        candidate = (candidate + 1) % MGMT_SUBNETS
        net = f"10.254.{s}.0/24"
        if subnet_users(net):
            continue
        sh(["ip", "addr", "add", f"10.254.{s}.254/24", "dev", bridge])
        if subnet_users(net) == {bridge}:
            return s
        sh(["ip", "addr", "del", f"10.254.{s}.254/24", "dev", bridge], check=False)
        candidate = random.randrange(MGMT_SUBNETS)
    raise RuntimeError("no free management subnet in 10.254.0.0/16")


def subnet_users(net: str) -> set[str]:
    """Interfaces (root namespace) with an address or route inside ``net``; ``?`` for routes without one."""
    addrs = sh(["ip", "-4", "-o", "addr", "show", "to", net]).stdout
    users = {line.split()[1] for line in addrs.splitlines() if line.strip()}
    routes = sh(["ip", "-4", "-o", "route", "show", "table", "all", "root", net]).stdout
    for line in routes.splitlines():
        found = re.search(r"\bdev (\S+)", line)
        users.add(found.group(1) if found else "?")
    return users


def stop_daemon(pidfile: Path, grace: float = 5) -> str | None:
    """Stop the daemon named by ``pidfile`` (SIGTERM, SIGKILL after ``grace`` s); return an error.

    Does nothing if the pidfile is missing or its process no longer runs
    with an argument inside the pidfile's directory (a reused pid).
    """
    try:
        pid = int(pidfile.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    if str(pidfile.parent).encode() not in cmdline:
        return None
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 2.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return None
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _running(pid):
                return None
            time.sleep(0.02)
    return f"{pidfile.stem} (pid {pid}) did not stop"


def _running(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
