"""One emulated hypervisor: a network namespace running its own ovsdb-server and ovs-vswitchd.

A :class:`Hypervisor` is made by
:meth:`controller.tools.lab.MultiHostLab.add_hypervisor`. Its daemons run
inside its namespace (a netdev ``ovs-vswitchd`` sees only that namespace's
interfaces) and keep their database, sockets, pidfiles and logs in a
private directory; everything is driven from the root namespace through
unix sockets (``ovs-vsctl --db=unix:DIR/db.sock``, ``ovs-appctl -t
DIR/ovs-vswitchd.ctl``, ``ovs-ofctl ... unix:DIR/BRIDGE.mgmt``), never
through the system OVS. The :class:`Ledger` records what was created so
the lab can remove it.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from controller.tools.lab.controller_process import REPO_ROOT
from controller.tools.lab.dumps import Flow, parse_flow
from controller.tools.lab.hosts import Host, check_ifname
from controller.tools.lab.shell import Cmd, sh

SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")
"""The Open_vSwitch database schema each private ``ovsdb-server`` is created with."""


@dataclass
class Ledger:
    """Everything a multi-host lab created, in creation order, for its cleanup.

    ``names`` are the logical names in use (hypervisors and VMs share one
    namespace of names, since both become ``{prefix}-{name}`` namespaces).
    """

    prefix: str
    root: Path
    namespaces: list[str] = field(default_factory=list)
    root_links: list[str] = field(default_factory=list)
    pidfiles: list[Path] = field(default_factory=list)
    processes: list[subprocess.Popen[str]] = field(default_factory=list)
    names: set[str] = field(default_factory=set)

    def claim(self, name: str) -> None:
        """Reserve a logical name. Raises ValueError if taken or not ``[A-Za-z0-9_.-]``."""
        check_ifname(name)
        if name in self.names:
            raise ValueError(f"name {name!r} already used in this lab")
        self.names.add(name)

    def add_netns(self, netns: str) -> None:
        """Create (and record) a namespace with loopback up and IPv6 off."""
        sh(["ip", "netns", "add", netns])
        self.namespaces.append(netns)
        sh(["ip", "-n", netns, "link", "set", "dev", "lo", "up"])
        sh(
            [
                "ip",
                "netns",
                "exec",
                netns,
                "sysctl",
                "-q",
                "-w",
                "net.ipv6.conf.all.disable_ipv6=1",
                "net.ipv6.conf.default.disable_ipv6=1",
            ]
        )


class VM(Host):
    """A :class:`Host` whose bridge is on a hypervisor (:attr:`hypervisor` names it)."""

    hypervisor: str = ""


class Hypervisor:
    """A namespace with a private OVS, driven from the root namespace.

    Attributes: ``name``, ``netns`` (``{prefix}-{name}``), ``dir`` (database,
    sockets, pidfiles, logs), ``controller_ip`` (the controller's address on
    the management network, seen from here), ``mgmt_ip`` (this host's),
    ``underlay_ip`` (set by :meth:`MultiHostLab.underlay`), ``bridges``,
    ``vms`` (name -> :class:`VM`). :attr:`vsctl_cmd`, :attr:`ofctl_cmd` and
    :attr:`appctl_cmd` are command prefixes bound to this instance.
    """

    def __init__(self, name: str, directory: Path, ledger: Ledger, controller_ip: str, mgmt_ip: str) -> None:
        self.name = name
        self.netns = f"{ledger.prefix}-{name}"
        self.dir = directory
        self.controller_ip = controller_ip
        self.mgmt_ip = mgmt_ip
        self.underlay_ip: str | None = None
        self.bridges: list[str] = []
        self.vms: dict[str, VM] = {}
        self._ledger = ledger
        self.vsctl_cmd = ("ovs-vsctl", "--timeout=10", f"--db=unix:{directory}/db.sock")
        # OVS_RUNDIR makes a bare bridge name mean unix:DIR/BRIDGE.mgmt
        self.ofctl_cmd = ("env", f"OVS_RUNDIR={directory}", "ovs-ofctl", "-O", "OpenFlow13")
        self.appctl_cmd = ("ovs-appctl", "--timeout=10", "-t", f"{directory}/ovs-vswitchd.ctl")

    def __repr__(self) -> str:
        return f"Hypervisor({self.name!r}, netns={self.netns!r}, bridges={self.bridges!r})"

    def start(self) -> None:
        """Create the database and start ``ovsdb-server`` and ``ovs-vswitchd`` in the namespace.

        Each pidfile is recorded before its daemon starts, so cleanup finds
        it even if this raises half way.

        Raises
        ------
        CommandError
            If a daemon does not start (its log is ``dir/<daemon>.log``).
        """
        d = self.dir
        d.mkdir(parents=True)
        sh(["ovsdb-tool", "create", f"{d}/conf.db", str(SCHEMA)])
        self._daemon("ovsdb-server", [f"{d}/conf.db", f"--remote=punix:{d}/db.sock"])
        self.vsctl("--no-wait", "init")
        self._daemon("ovs-vswitchd", [f"unix:{d}/db.sock", "--disable-system"])

    def _daemon(self, program: str, args: Sequence[str]) -> None:
        d = self.dir
        self._ledger.pidfiles.append(d / f"{program}.pid")
        env = [f"OVS_{kind}DIR={d}" for kind in ("RUN", "LOG", "DB", "SYSCONF")]
        sh(
            [
                "ip",
                "netns",
                "exec",
                self.netns,
                "env",
                *env,
                program,
                *args,
                f"--unixctl={d}/{program}.ctl",
                f"--pidfile={d}/{program}.pid",
                f"--log-file={d}/{program}.log",
                "--detach",
                "--no-chdir",
                "-vconsole:off",
            ]
        )

    # -- commands against this instance -----------------------------------

    def vsctl(self, *args: str, check: bool = True) -> str:
        """Run ``ovs-vsctl`` on this instance's database; return stdout."""
        return sh([*self.vsctl_cmd, *args], check=check).stdout

    def ofctl(self, *args: str, check: bool = True) -> str:
        """Run ``ovs-ofctl -O OpenFlow13`` here (a bare bridge name is this host's); return stdout."""
        return sh([*self.ofctl_cmd, *args], check=check).stdout

    def appctl(self, *args: str, check: bool = True) -> str:
        """Run ``ovs-appctl`` against this instance's ``ovs-vswitchd``; return stdout."""
        return sh([*self.appctl_cmd, *args], check=check).stdout

    def target(self, bridge: str) -> str:
        """``unix:DIR/BRIDGE.mgmt``: what the :mod:`~controller.tools.lab.dumps` helpers take."""
        return f"unix:{self.dir}/{self._bridge(bridge)}.mgmt"

    def run(self, cmd: Cmd, *, check: bool = False, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` in the hypervisor's namespace (a string goes through ``sh -c``)."""
        inner = ["sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        return sh(["ip", "netns", "exec", self.netns, *inner], check=check, timeout=timeout)

    def ping(self, ip: str, count: int = 1, timeout: float = 1, size: int | None = None) -> bool:
        """Ping ``ip`` from the hypervisor itself; ``size`` sets the payload and forbids fragmenting."""
        cmd = ["ping", "-n", "-q", "-c", str(count), "-W", f"{timeout:g}", "-i", "0.2"]
        if size is not None:
            cmd += ["-s", str(size), "-M", "do"]
        return self.run([*cmd, ip], timeout=timeout * count + 10).returncode == 0

    def log_text(self, daemon: str = "ovs-vswitchd") -> str:
        """What ``daemon`` logged so far ("" if nothing)."""
        path = self.dir / f"{daemon}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # -- bridges and VMs ---------------------------------------------------

    def _bridge(self, bridge: str) -> str:
        if bridge not in self.bridges:
            raise ValueError(f"bridge {bridge!r} is not on hypervisor {self.name}")
        return bridge

    def add_bridge(self, name: str, dpid: int, controller: int | str | None, fail_mode: str = "secure") -> str:
        """Create a netdev, OpenFlow 1.3 bridge with in-band control off; return its name.

        ``controller``: a port of the controller on :attr:`controller_ip`
        (an int), a full OVS target (a str), or None for none. The reconnect
        backoff is at most 1 s, so a late controller is found quickly.
        """
        check_ifname(name)
        if fail_mode not in ("secure", "standalone"):
            raise ValueError(f"fail_mode must be 'secure' or 'standalone', not {fail_mode!r}")
        cmd = [
            "add-br",
            name,
            "--",
            "set",
            "bridge",
            name,
            "datapath_type=netdev",
            "protocols=OpenFlow13",
            f"other-config:datapath-id={dpid:016x}",
            "other-config:disable-in-band=true",
            f"fail_mode={fail_mode}",
        ]
        if controller is not None:
            target = f"tcp:{self.controller_ip}:{controller}" if isinstance(controller, int) else controller
            cmd += ["--", "set-controller", name, target, "--", "set", "controller", name, "max_backoff=1000"]
        self.vsctl(*cmd)
        self.bridges.append(name)
        return name

    def attach(self, bridge: str, iface: str, ofport: int) -> None:
        """Bring ``iface`` (already in this namespace) up and add it to ``bridge`` at ``ofport``.

        Raises
        ------
        RuntimeError
            If OVS gave the port another number (the message has its error).
        """
        self._bridge(bridge)
        self.run(["sysctl", "-q", "-w", f"net.ipv6.conf.{iface}.disable_ipv6=1"])
        self.run(["ip", "link", "set", "dev", iface, "up"], check=True)
        self.vsctl("add-port", bridge, iface, "--", "set", "interface", iface, f"ofport_request={ofport}")
        got = self.vsctl("get", "interface", iface, "ofport").strip()
        if got != str(ofport):
            error = self.vsctl("get", "interface", iface, "error", check=False).strip()
            raise RuntimeError(f"{iface} on {self.name}/{bridge}: ofport {got}, wanted {ofport}: {error}")

    def add_vm(
        self,
        name: str,
        bridge: str,
        ofport: int | None,
        ip: str | None = None,
        mac: str | None = None,
        attach: bool = True,
    ) -> VM:
        """Create VM namespace ``{prefix}-{name}`` with a veth into ``bridge`` at ``ofport``.

        With ``attach=False`` the bridge end is left unattached (and
        ``bridge`` need not exist yet): ``vmn provision --host`` attaches it,
        as it would a libvirt tap (see :meth:`provision`).

        The VM's interface is ``{prefix}{name}``, the bridge end
        ``{prefix}{name}p`` (created directly in this namespace: a netdev
        vswitchd only sees its own namespace). ``ip`` may carry a prefix
        length (default ``/24``); ``mac`` defaults to the kernel's random
        one. TX checksum offload is off inside the VM (TCP through a
        userspace datapath needs it).

        Raises
        ------
        ValueError
            If the name is taken or too long (at most 8 characters with the
            default prefix), or ``bridge`` is not on this hypervisor.
        """
        if attach:
            self._bridge(bridge)
        vm = VM(self._ledger.prefix, name, bridge, ofport if attach else None, self._ledger.processes.append)
        vm.hypervisor = self.name
        self._ledger.claim(name)
        self._ledger.add_netns(vm.netns)
        sh(
            [
                "ip",
                "link",
                "add",
                "name",
                vm.port,
                "netns",
                self.netns,
                "type",
                "veth",
                "peer",
                "name",
                vm.iface,
                "netns",
                vm.netns,
            ]
        )
        if mac:
            vm.run(["ip", "link", "set", "dev", vm.iface, "address", mac], check=True)
        if ip:
            cidr = ip if "/" in ip else f"{ip}/24"
            vm.run(["ip", "addr", "add", cidr, "dev", vm.iface], check=True)
            vm.ip = cidr.split("/")[0]
        vm.run(["ip", "link", "set", "dev", vm.iface, "up"], check=True)
        vm.run(["ethtool", "-K", vm.iface, "tx", "off"], check=True)
        vm.mac = vm.read_mac()
        if attach:
            if ofport is None:
                raise ValueError("attach needs an ofport")
            self.attach(bridge, vm.port, ofport)
        else:
            self.run(["sysctl", "-q", "-w", f"net.ipv6.conf.{vm.port}.disable_ipv6=1"])
            self.run(["ip", "link", "set", "dev", vm.port, "up"], check=True)
        self.vms[name] = vm
        return vm

    def provision(self, config: Path | str, host: str, controller: int | str) -> subprocess.CompletedProcess[str]:
        """Run ``vmn provision CONFIG --host HOST`` against this instance, in its namespace.

        ``controller`` is a port on :attr:`controller_ip` or a full target.
        The bridges it made become this hypervisor's (:attr:`bridges`).
        Returns the finished command (``check`` is left to the caller).
        """
        target = f"tcp:{self.controller_ip}:{controller}" if isinstance(controller, int) else controller
        cmd = [
            "env",
            f"PYTHONPATH={REPO_ROOT}",
            sys.executable,
            "-m",
            "controller.cli",
            "provision",
            str(config),
            "--host",
            host,
            "--db",
            f"unix:{self.dir}/db.sock",
            "--datapath-type",
            "netdev",
            "--controller",
            target,
        ]
        done = self.run(cmd, timeout=60)
        for bridge in self.vsctl("list-br").split():
            if bridge not in self.bridges:
                self.bridges.append(bridge)
        return done

    # -- inspection --------------------------------------------------------

    def dump_flows(self, bridge: str) -> list[str]:
        """The bridge's flow lines (OpenFlow 1.3 format, without the reply header)."""
        out = self.ofctl("dump-flows", self.target(bridge))
        return [line.strip() for line in out.splitlines() if "actions=" in line]

    def flows(self, bridge: str) -> list[Flow]:
        """The bridge's flows, parsed."""
        return [parse_flow(line) for line in self.dump_flows(bridge)]

    def dump_conntrack(self) -> list[str]:
        """This host's connection tracking entries (``dpctl/dump-conntrack``), one per line."""
        return [line for line in self.appctl("dpctl/dump-conntrack").splitlines() if line.strip()]

    def is_connected(self, bridge: str) -> bool:
        """True if any controller of ``bridge`` is connected, as the database says.

        ``ovs-vswitchd`` writes ``is_connected`` on its statistics timer
        (``other_config:stats-update-interval``, at least 5 s), so the
        answer lags the connection by up to 5 s.
        """
        uuids = self.vsctl("get", "bridge", self._bridge(bridge), "controller").strip("[] \n")
        if not uuids:
            return False
        states = self.vsctl("--bare", "--columns=is_connected", "list", "controller", *uuids.split(", ")).split()
        return "true" in states
