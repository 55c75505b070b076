"""Hosts (a namespace with a veth into a bridge) and bridge-to-bridge links of a lab.

Interface names are at most :data:`MAX_IFNAME` (15) characters, the Linux
limit; :func:`check_ifname` enforces it before anything is created.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from controller.tools.lab.shell import Cmd, sh

MAX_IFNAME = 15
"""Longest Linux interface name (``IFNAMSIZ`` - 1)."""

ProcessTracker = Callable[[subprocess.Popen[str]], None]
"""Called with each process a host starts, so its lab can stop it on exit."""


def check_ifname(name: str) -> str:
    """Return ``name`` if it is a valid interface name.

    Raises
    ------
    ValueError
        If empty, longer than :data:`MAX_IFNAME` or not all ``[A-Za-z0-9_.-]``.
    """
    if not name or len(name) > MAX_IFNAME or not re.fullmatch(r"[\w.-]+", name):
        raise ValueError(f"bad interface name {name!r} (max {MAX_IFNAME} chars, [A-Za-z0-9_.-])")
    return name


def link_exists(name: str) -> bool:
    """True if the interface ``name`` exists in this (the root) namespace."""
    return Path("/sys/class/net", name).exists()


def disable_ipv6(name: str, netns: str | None = None) -> None:
    """Stop IPv6 autoconf chatter (RS, MLD, DAD) from an interface (best effort)."""
    key = f"net.ipv6.conf.{name}.disable_ipv6=1"
    prefix = ["ip", "netns", "exec", netns] if netns else []
    sh([*prefix, "sysctl", "-q", "-w", key], check=False)


class Host:
    """One end of a veth pair inside its own namespace, attached to a bridge.

    Attributes: ``name`` (logical, e.g. ``"h1"``), ``netns``, ``iface``
    (inside the namespace), ``port`` (the veth end on the bridge),
    ``bridge``, ``ofport`` (its OpenFlow number; None while not attached),
    ``ip`` and ``ipv6`` (addresses without prefix length, or None), ``mac``.
    Made by :meth:`controller.tools.lab.Lab.add_host`, which
    passes ``track`` (it stops the processes started by :meth:`popen`).
    ``netns`` defaults to ``{prefix}-{name}``; several hosts may share one
    (:meth:`controller.tools.lab.Lab.add_relay`).

    Raises
    ------
    ValueError
        If ``prefix`` + ``name`` makes an interface name that is too long.
    """

    def __init__(
        self, prefix: str, name: str, bridge: str, ofport: int | None, track: ProcessTracker, netns: str | None = None
    ) -> None:
        self._track = track
        self.name = name
        self.netns = netns or f"{prefix}-{name}"
        self.iface = check_ifname(f"{prefix}{name}")
        self.port = check_ifname(f"{prefix}{name}p")
        self.bridge = bridge
        self.ofport = ofport
        self.ip: str | None = None
        self.ipv6: str | None = None
        self.mac = ""

    def __repr__(self) -> str:
        return f"Host({self.name!r}, ip={self.ip!r}, mac={self.mac!r}, ofport={self.ofport})"

    def _argv(self, cmd: Cmd) -> list[str]:
        inner = ["sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        return ["ip", "netns", "exec", self.netns, *inner]

    def run(self, cmd: Cmd, *, check: bool = False, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` in the namespace (a string goes through ``sh -c``)."""
        return sh(self._argv(cmd), check=check, timeout=timeout)

    def popen(self, cmd: Cmd) -> subprocess.Popen[str]:
        """Start ``cmd`` in the background in the namespace.

        The lab terminates it on exit. stdout and stderr are pipes.
        """
        proc = subprocess.Popen(self._argv(cmd), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self._track(proc)
        return proc

    def ping(self, ip: str | Host, count: int = 1, timeout: float = 1) -> bool:
        """Send ``count`` ICMP echoes to ``ip`` (or a host's ip); True if any got a reply.

        ``ip`` may be IPv6 (a link-local one with its ``%iface`` zone).

        ``ping``'s own rule, so ``not host.ping(...)`` means no reply at all.
        Wrap positive checks in :func:`~controller.tools.lab.shell.wait_until`.

        Raises
        ------
        ValueError
            If given a host without an IP address.
        """
        if isinstance(ip, Host):
            if ip.ip is None:
                raise ValueError(f"{ip.name} has no IP address")
            ip = ip.ip
        cmd = ["ping", "-n", "-q", "-c", str(count), "-W", f"{timeout:g}"]
        if count > 1:
            cmd += ["-i", "0.2"]
        return self.run([*cmd, ip], timeout=timeout * count + 10).returncode == 0

    def set_mac(self, mac: str) -> None:
        """Change the MAC address of the host's interface."""
        self.run(["ip", "link", "set", "dev", self.iface, "address", mac], check=True)
        self.mac = self.read_mac()

    def read_mac(self) -> str:
        """The MAC address the kernel reports for the host's interface, ``aa:bb:..``."""
        out = self.run(["cat", f"/sys/class/net/{self.iface}/address"], check=True)
        return out.stdout.strip()


@dataclass(frozen=True)
class Link:
    """A veth pair between two bridges: ``iface_a`` on ``bridge_a`` etc."""

    bridge_a: str
    iface_a: str
    port_a: int
    bridge_b: str
    iface_b: str
    port_b: int
