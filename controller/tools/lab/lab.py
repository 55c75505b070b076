"""The :class:`Lab`: OVS bridges, hosts and links for one test, removed on exit.

Everything a :class:`Lab` creates (bridges, namespaces, veth pairs, processes
started in namespaces) is recorded and removed when the ``with`` block exits,
also when the body raised. Cleanup never touches objects the lab did not
create. Names are short because Linux interface names are at most 15 chars:
with prefix ``v1a2b3`` the lab makes bridges ``v1a2b3b1``, namespaces
``v1a2b3-h1`` and veths ``v1a2b3h1`` (in the namespace) / ``v1a2b3h1p`` (on
the bridge), and links ``v1a2b3l1a`` / ``v1a2b3l1b``. A host or link end on
a *named* port (as a network file may declare it) takes the name it is given
(start it with the prefix) and the OpenFlow number OVS chooses.

Bridges use ``datapath_type=netdev`` (no OVS kernel module needed) and
OpenFlow 1.3. Inspection helpers are in :mod:`controller.tools.lab.dumps`.

Examples
--------
>>> with Lab() as lab:                                   # doctest: +SKIP
...     br = lab.add_bridge("b1", dpid=1, controller_port=None,
...                         fail_mode="standalone")
...     h1 = lab.add_host("h1", br, ofport=1, ip="10.0.0.1/24")
...     h2 = lab.add_host("h2", br, ofport=2, ip="10.0.0.2/24")
...     wait_until(lambda: h1.ping(h2.ip), timeout=10)
"""

from __future__ import annotations

import subprocess
import warnings
from collections.abc import Sequence
from types import TracebackType
from typing import Self

from controller.tools.lab.hosts import Host, Link, check_ifname, disable_ipv6, link_exists
from controller.tools.lab.shell import VSCTL, CommandError, sh, stop_processes, unique_prefix


class Lab:
    """Creates OVS bridges, hosts and links, and removes all of them on exit.

    Use as a context manager. ``prefix`` (default :func:`unique_prefix`)
    starts every name the lab makes.

    Raises
    ------
    RuntimeError
        On exit, if cleanup failed while the body itself succeeded (when the
        body raised, cleanup problems are only warned about).
    """

    def __init__(self, prefix: str | None = None) -> None:
        self.prefix = prefix or unique_prefix()
        self.bridges: list[str] = []
        self.namespaces: list[str] = []
        self.veths: list[str] = []
        self.hosts: dict[str, Host] = {}
        self._processes: list[subprocess.Popen[str]] = []
        self._links = 0

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        errors = self.cleanup()
        if errors and exc is None:
            raise RuntimeError("lab cleanup failed: " + "; ".join(errors))
        for error in errors:
            warnings.warn(f"lab cleanup: {error}", stacklevel=2)

    def _name(self, name: str) -> str:
        return name if name.startswith(self.prefix) else self.prefix + name

    def _bridge(self, bridge: str) -> str:
        full = self._name(bridge)
        if full not in self.bridges:
            raise ValueError(f"bridge {bridge!r} was not created by this lab")
        return full

    def add_bridge(self, name: str, dpid: int, controller_port: int | None, fail_mode: str = "secure") -> str:
        """Create a netdev, OpenFlow 1.3 bridge; return its full name.

        ``name`` is prefixed unless it already starts with the prefix. The
        controller is ``tcp:127.0.0.1:<controller_port>`` (none if None),
        with in-band control disabled and a reconnect backoff of at most 1 s.
        """
        br = check_ifname(self._name(name))
        if fail_mode not in ("secure", "standalone"):
            raise ValueError(f"fail_mode must be 'secure' or 'standalone', not {fail_mode!r}")
        cmd = [
            *VSCTL,
            "add-br",
            br,
            "--",
            "set",
            "bridge",
            br,
            "datapath_type=netdev",
            "protocols=OpenFlow13",
            f"other-config:datapath-id={dpid:016x}",
            "other-config:disable-in-band=true",
            f"fail_mode={fail_mode}",
        ]
        if controller_port is not None:  # retry at least every second (default 8 s)
            cmd += [
                "--",
                "set-controller",
                br,
                f"tcp:127.0.0.1:{controller_port}",
                "--",
                "set",
                "controller",
                br,
                "max_backoff=1000",
            ]
        sh(cmd)  # one transaction: either all of it exists or nothing
        self.bridges.append(br)
        return br

    def set_controller(self, bridge: str, controller_port: int | None) -> None:
        """Point a lab bridge at ``tcp:127.0.0.1:<controller_port>`` (None: no controller).

        Keeps the 1 s reconnect backoff that plain ``ovs-vsctl set-controller``
        would reset. Changing the target keeps the flows; removing the only
        controller, or adding one to a bridge without, makes OVS flush them.
        """
        br = self._bridge(bridge)
        if controller_port is None:
            sh([*VSCTL, "del-controller", br])
        else:
            sh(
                [
                    *VSCTL,
                    "set-controller",
                    br,
                    f"tcp:127.0.0.1:{controller_port}",
                    "--",
                    "set",
                    "controller",
                    br,
                    "max_backoff=1000",
                ]
            )

    def set_controllers(self, bridge: str, controller_ports: Sequence[int]) -> None:
        """Point a lab bridge at several controllers ``tcp:127.0.0.1:<port>`` at once (HA instances).

        Each keeps the 1 s reconnect backoff. The bridge's flows stay.
        """
        br = self._bridge(bridge)
        if not controller_ports:
            raise ValueError("name at least one controller port (set_controller(bridge, None) removes them)")
        cmd: list[str] = [*VSCTL]
        refs = []
        for i, port in enumerate(controller_ports):
            cmd += ["--", f"--id=@c{i}", "create", "controller", f'target="tcp:127.0.0.1:{port}"', "max_backoff=1000"]
            refs.append(f"@c{i}")
        cmd += ["--", "set", "bridge", br, f"controller=[{','.join(refs)}]"]
        sh(cmd)

    def _new_veth(self, name: str, peer: str) -> None:
        sh(["ip", "link", "add", name, "type", "veth", "peer", "name", peer])
        self.veths.append(name)

    def _attach(self, bridge: str, iface: str, ofport: int | None) -> int:
        """Bring ``iface`` up and add it to ``bridge``; return its OpenFlow number.

        ``ofport`` is requested (``ofport_request``) and checked; None lets
        OVS choose, as for a tap that libvirt adds.
        """
        disable_ipv6(iface)
        sh(["ip", "link", "set", "dev", iface, "up"])
        request = [] if ofport is None else ["--", "set", "interface", iface, f"ofport_request={ofport}"]
        sh([*VSCTL, "add-port", bridge, iface, *request])
        got = sh([*VSCTL, "get", "interface", iface, "ofport"]).stdout.strip()
        if not got.isdigit() or got in ("0", "65535") or ofport is not None and got != str(ofport):
            error = sh([*VSCTL, "get", "interface", iface, "error"], check=False).stdout
            raise RuntimeError(f"{iface} on {bridge}: ofport {got}, wanted {ofport or 'any'}: {error.strip()}")
        return int(got)

    def add_host(
        self,
        name: str,
        bridge: str,
        ofport: int | str,
        ip: str | None = None,
        mac: str | None = None,
        ipv6: str | None = None,
        *,
        attach: bool = True,
    ) -> Host:
        """Create namespace ``{prefix}-{name}`` with a veth into ``bridge``.

        ``ofport`` is the bridge port, as a network file gives it: a number
        (the veth end ``{prefix}{name}p`` is requested as that OpenFlow
        port), or an interface name (the veth end gets exactly that name and
        OVS chooses its number, as for a libvirt tap; :attr:`Host.ofport`
        tells it). With ``attach=False`` the veth end is left out of the
        bridge (``Host.ofport`` None) for someone else to add, e.g.
        ``vmn provision``. ``ip`` may carry a prefix length (default
        ``/24``). ``mac`` defaults to a random one chosen by the kernel. TX
        checksum offload is turned off inside the namespace (needed for TCP
        through a userspace datapath). IPv6 is disabled unless ``ipv6`` is
        given: then the host forms its link-local address from its MAC
        (EUI-64), takes ``ipv6`` (prefix length default ``/64``) with
        duplicate address detection, and sends router solicitations and MLD
        reports as any Linux host.
        """
        br = self._bridge(bridge)
        if name in self.hosts:
            raise ValueError(f"host {name!r} exists")
        host = Host(self.prefix, name, br, ofport if isinstance(ofport, int) else None, self._processes.append)
        if isinstance(ofport, str):
            host.port = check_ifname(ofport)
        sh(["ip", "netns", "add", host.netns])
        self.namespaces.append(host.netns)
        self._new_veth(host.port, host.iface)
        sh(["ip", "link", "set", "dev", host.iface, "netns", host.netns])
        if ipv6 is None:
            disable_ipv6(host.iface, host.netns)
        else:
            conf = f"net.ipv6.conf.{host.iface}"
            host.run(
                ["sysctl", "-q", "-w", f"{conf}.disable_ipv6=0", f"{conf}.addr_gen_mode=0", f"{conf}.use_tempaddr=0"],
                check=True,
            )
        if mac:
            host.run(["ip", "link", "set", "dev", host.iface, "address", mac], check=True)
        if ip:
            cidr = ip if "/" in ip else f"{ip}/24"
            host.run(["ip", "addr", "add", cidr, "dev", host.iface], check=True)
            host.ip = cidr.split("/")[0]
        if ipv6:
            cidr6 = ipv6 if "/" in ipv6 else f"{ipv6}/64"
            host.run(["ip", "-6", "addr", "add", cidr6, "dev", host.iface], check=True)
            host.ipv6 = cidr6.split("/")[0]
        host.run(["ip", "link", "set", "dev", "lo", "up"], check=True)
        host.run(["ip", "link", "set", "dev", host.iface, "up"], check=True)
        host.run(["ethtool", "-K", host.iface, "tx", "off"], check=True)
        host.mac = host.read_mac()
        if attach:
            host.ofport = self._attach(br, host.port, host.ofport)
        else:
            host.ofport = None
            disable_ipv6(host.port)
            sh(["ip", "link", "set", "dev", host.port, "up"])
        self.hosts[name] = host
        return host

    def add_relay(self, name: str, ends: Sequence[tuple[str, int]]) -> list[Host]:
        """A host on several bridge ports that relays every frame between them, LLDP included.

        Namespace ``{prefix}-{name}`` gets one veth per ``(bridge, ofport)``
        of ``ends`` (inside: ``{prefix}{name}{i}``), all enslaved to a Linux
        bridge ``br0`` there that forwards link-local LLDP too
        (``group_fwd_mask`` bit 14, 01:80:c2:00:00:0e). No addresses, no
        IPv6: it sends nothing of its own. Returns one :class:`Host` per end
        (sharing the namespace), e.g. for a capture on each.
        """
        netns = f"{self.prefix}-{name}"
        legs = [
            Host(self.prefix, f"{name}{i}", self._bridge(bridge), ofport, self._processes.append, netns)
            for i, (bridge, ofport) in enumerate(ends)
        ]
        taken = [leg.name for leg in legs if leg.name in self.hosts]
        if taken or netns in self.namespaces:
            raise ValueError(f"relay {name!r}: {taken or netns} exists")
        sh(["ip", "netns", "add", netns])
        self.namespaces.append(netns)
        inside = ["ip", "netns", "exec", netns]
        sh([*inside, "sysctl", "-q", "-w", "net.ipv6.conf.default.disable_ipv6=1"], check=False)
        sh([*inside, "ip", "link", "add", "br0", "type", "bridge", "stp_state", "0", "group_fwd_mask", str(1 << 0x0E)])
        disable_ipv6("br0", netns)
        for leg in legs:
            self._new_veth(leg.port, leg.iface)
            sh(["ip", "link", "set", "dev", leg.iface, "netns", netns])
            disable_ipv6(leg.iface, netns)
            sh([*inside, "ip", "link", "set", "dev", leg.iface, "master", "br0", "up"])
            leg.mac = leg.read_mac()
            self._attach(leg.bridge, leg.port, leg.ofport)
            self.hosts[leg.name] = leg
        sh([*inside, "ip", "link", "set", "dev", "br0", "up"])
        return legs

    def add_link(self, bridge_a: str, port_a: int | str, bridge_b: str, port_b: int | str) -> Link:
        """Connect two lab bridges with a veth pair at the given ports.

        A port is an OpenFlow number (requested) or an interface name (that
        end gets exactly that name and OVS chooses its number); the
        returned :class:`Link` carries the numbers either way.
        """
        br_a, br_b = self._bridge(bridge_a), self._bridge(bridge_b)
        self._links += 1
        iface_a = check_ifname(port_a if isinstance(port_a, str) else f"{self.prefix}l{self._links}a")
        iface_b = check_ifname(port_b if isinstance(port_b, str) else f"{self.prefix}l{self._links}b")
        self._new_veth(iface_a, iface_b)
        self.veths.append(iface_b)
        number_a = self._attach(br_a, iface_a, port_a if isinstance(port_a, int) else None)
        number_b = self._attach(br_b, iface_b, port_b if isinstance(port_b, int) else None)
        return Link(br_a, iface_a, number_a, br_b, iface_b, number_b)

    def _owned_iface(self, iface: str) -> str:
        if iface not in self.veths:
            raise ValueError(f"interface {iface!r} was not created by this lab")
        return iface

    def set_port_down(self, iface: str) -> None:
        """Take a lab veth end (``Host.port`` or a ``Link`` iface) down.

        On a veth link both ends lose carrier, so OVS reports the port as
        link-down on both bridges.
        """
        sh(["ip", "link", "set", "dev", self._owned_iface(iface), "down"])

    def set_port_up(self, iface: str) -> None:
        """Bring a lab veth end back up (see :meth:`set_port_down`)."""
        sh(["ip", "link", "set", "dev", self._owned_iface(iface), "up"])

    def cleanup(self) -> list[str]:
        """Remove everything this lab created; return the errors (best effort)."""
        errors: list[str] = []

        def attempt(cmd: Sequence[str]) -> None:
            try:
                sh(cmd)
            except (CommandError, subprocess.TimeoutExpired, OSError) as err:
                errors.append(str(err))

        stop_processes(self._processes)
        for br in reversed(self.bridges):
            attempt([*VSCTL, "--if-exists", "del-br", br])
        self.bridges.clear()
        for veth in reversed(self.veths):
            if link_exists(veth):  # deleting one end removes its peer too
                attempt(["ip", "link", "del", "dev", veth])
        self.veths.clear()
        existing = set(sh(["ip", "netns", "list"], check=False).stdout.split())
        for netns in reversed(self.namespaces):
            if netns in existing:
                attempt(["ip", "netns", "del", netns])
        self.namespaces.clear()
        self.hosts.clear()
        return errors
