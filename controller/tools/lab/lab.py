"""A small library for tests against real Open vSwitch and network namespaces.

Everything a :class:`Lab` creates (bridges, namespaces, veth pairs, processes
started in namespaces) is recorded and removed when the ``with`` block exits,
also when the body raised. Cleanup never touches objects the lab did not
create. Names are short because Linux interface names are at most 15 chars:
with prefix ``v1a2b3`` the lab makes bridges ``v1a2b3b1``, namespaces
``v1a2b3-h1`` and veths ``v1a2b3h1`` (in the namespace) / ``v1a2b3h1p`` (on
the bridge).

Bridges use ``datapath_type=netdev`` (no OVS kernel module needed) and
OpenFlow 1.3. Inspection helpers wrap ``ovs-ofctl -O OpenFlow13``.

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

import os
import re
import secrets
import shlex
import signal
import socket
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self, TypeVar

REPO_ROOT = Path(__file__).resolve().parents[3]
OSKEN_MANAGER = REPO_ROOT / ".venv" / "bin" / "osken-manager"
MAX_IFNAME = 15
OFCTL = ("ovs-ofctl", "-O", "OpenFlow13")
VSCTL = ("ovs-vsctl", "--timeout=10")

T = TypeVar("T")
Cmd = Sequence[str] | str


class CommandError(subprocess.CalledProcessError):
    """A command failed; ``str()`` includes its stderr."""

    def __str__(self) -> str:
        return f"{shlex.join(self.cmd)} exited {self.returncode}: {(self.stderr or '').strip()}"


def sh(cmd: Sequence[str], *, check: bool = True,
       timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` (no shell), capturing text output.

    Raises
    ------
    CommandError
        If ``check`` and the exit status is not zero.
    """
    proc = subprocess.run(list(cmd), capture_output=True, text=True,
                          timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise CommandError(proc.returncode, list(cmd), proc.stdout, proc.stderr)
    return proc


def unique_prefix() -> str:
    """Return a fresh name prefix like ``v3f9a0``: ``v`` + 5 random hex chars."""
    return "v" + secrets.token_hex(3)[:5]


def wait_until(predicate: Callable[[], T], timeout: float,
               interval: float = 0.1, message: str = "") -> T:
    """Poll ``predicate`` until it returns a truthy value, and return that value.

    Raises
    ------
    AssertionError
        With ``message`` (and the last value) if ``timeout`` seconds pass first.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout:g}s: {message or predicate!r} (last value: {value!r})")
        time.sleep(interval)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _check_ifname(name: str) -> str:
    if not name or len(name) > MAX_IFNAME or not re.fullmatch(r"[\w.-]+", name):
        raise ValueError(f"bad interface name {name!r} (max {MAX_IFNAME} chars, [A-Za-z0-9_.-])")
    return name


def _link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def _disable_ipv6(name: str, netns: str | None = None) -> None:
    """Stop IPv6 autoconf chatter (RS, MLD, DAD) from an interface."""
    key = f"net.ipv6.conf.{name}.disable_ipv6=1"
    prefix = ["ip", "netns", "exec", netns] if netns else []
    sh([*prefix, "sysctl", "-q", "-w", key], check=False)


# ------------------------------------------------------------------ hosts --


class Host:
    """One end of a veth pair inside its own namespace, attached to a bridge.

    Attributes: ``name`` (logical, e.g. ``"h1"``), ``netns``, ``iface``
    (inside the namespace), ``port`` (the veth end on the bridge),
    ``bridge``, ``ofport``, ``ip`` (address without prefix length, or None),
    ``mac``.
    """

    def __init__(self, lab: Lab, name: str, bridge: str, ofport: int) -> None:
        self._lab = lab
        self.name = name
        self.netns = f"{lab.prefix}-{name}"
        self.iface = _check_ifname(f"{lab.prefix}{name}")
        self.port = _check_ifname(f"{lab.prefix}{name}p")
        self.bridge = bridge
        self.ofport = ofport
        self.ip: str | None = None
        self.mac = ""

    def __repr__(self) -> str:
        return f"Host({self.name!r}, ip={self.ip!r}, mac={self.mac!r}, ofport={self.ofport})"

    def _argv(self, cmd: Cmd) -> list[str]:
        inner = ["sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        return ["ip", "netns", "exec", self.netns, *inner]

    def run(self, cmd: Cmd, *, check: bool = False,
            timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` in the namespace (a string goes through ``sh -c``)."""
        return sh(self._argv(cmd), check=check, timeout=timeout)

    def popen(self, cmd: Cmd) -> subprocess.Popen[str]:
        """Start ``cmd`` in the background in the namespace.

        The lab terminates it on exit. stdout and stderr are pipes.
        """
        proc = subprocess.Popen(self._argv(cmd), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        self._lab._processes.append(proc)
        return proc

    def ping(self, ip: str | Host, count: int = 1, timeout: float = 1) -> bool:
        """Send ``count`` ICMP echoes to ``ip`` (or a host's ip); True if any got a reply.

        ``ping``'s own rule, so ``not host.ping(...)`` means no reply at all.
        Wrap positive checks in :func:`wait_until`.

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
        self.mac = self._read_mac()

    def _read_mac(self) -> str:
        out = self.run(["cat", f"/sys/class/net/{self.iface}/address"], check=True)
        return out.stdout.strip()


# -------------------------------------------------------------------- lab --


@dataclass(frozen=True)
class Link:
    """A veth pair between two bridges: ``iface_a`` on ``bridge_a`` etc."""

    bridge_a: str
    iface_a: str
    port_a: int
    bridge_b: str
    iface_b: str
    port_b: int


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

    def __exit__(self, exc_type: type[BaseException] | None,
                 exc: BaseException | None, tb: TracebackType | None) -> None:
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

    def add_bridge(self, name: str, dpid: int, controller_port: int | None,
                   fail_mode: str = "secure") -> str:
        """Create a netdev, OpenFlow 1.3 bridge; return its full name.

        ``name`` is prefixed unless it already starts with the prefix. The
        controller is ``tcp:127.0.0.1:<controller_port>`` (none if None),
        with in-band control disabled and a reconnect backoff of at most 1 s.
        """
        br = _check_ifname(self._name(name))
        if fail_mode not in ("secure", "standalone"):
            raise ValueError(f"fail_mode must be 'secure' or 'standalone', not {fail_mode!r}")
        cmd = [*VSCTL, "add-br", br, "--", "set", "bridge", br,
               "datapath_type=netdev", "protocols=OpenFlow13",
               f"other-config:datapath-id={dpid:016x}",
               "other-config:disable-in-band=true", f"fail_mode={fail_mode}"]
        if controller_port is not None:  # retry at least every second (default 8 s)
            cmd += ["--", "set-controller", br, f"tcp:127.0.0.1:{controller_port}",
                    "--", "set", "controller", br, "max_backoff=1000"]
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
            sh([*VSCTL, "set-controller", br, f"tcp:127.0.0.1:{controller_port}",
                "--", "set", "controller", br, "max_backoff=1000"])

    def _new_veth(self, name: str, peer: str) -> None:
        sh(["ip", "link", "add", name, "type", "veth", "peer", "name", peer])
        self.veths.append(name)

    def _attach(self, bridge: str, iface: str, ofport: int) -> None:
        """Bring ``iface`` up and add it to ``bridge`` as OpenFlow port ``ofport``."""
        _disable_ipv6(iface)
        sh(["ip", "link", "set", "dev", iface, "up"])
        sh([*VSCTL, "add-port", bridge, iface, "--",
            "set", "interface", iface, f"ofport_request={ofport}"])
        got = sh([*VSCTL, "get", "interface", iface, "ofport"]).stdout.strip()
        if got != str(ofport):
            error = sh([*VSCTL, "get", "interface", iface, "error"], check=False).stdout
            raise RuntimeError(f"{iface} on {bridge}: ofport {got}, wanted {ofport}: {error.strip()}")

    def add_host(self, name: str, bridge: str, ofport: int, ip: str | None = None,
                 mac: str | None = None) -> Host:
        """Create namespace ``{prefix}-{name}`` with a veth into ``bridge``.

        ``ip`` may carry a prefix length (default ``/24``). ``mac`` defaults
        to a random one chosen by the kernel. IPv6 is disabled and TX
        checksum offload is turned off inside the namespace (needed for TCP
        through a userspace datapath).
        """
        br = self._bridge(bridge)
        if name in self.hosts:
            raise ValueError(f"host {name!r} exists")
        host = Host(self, name, br, ofport)
        sh(["ip", "netns", "add", host.netns])
        self.namespaces.append(host.netns)
        self._new_veth(host.port, host.iface)
        sh(["ip", "link", "set", "dev", host.iface, "netns", host.netns])
        _disable_ipv6(host.iface, host.netns)
        if mac:
            host.run(["ip", "link", "set", "dev", host.iface, "address", mac], check=True)
        if ip:
            cidr = ip if "/" in ip else f"{ip}/24"
            host.run(["ip", "addr", "add", cidr, "dev", host.iface], check=True)
            host.ip = cidr.split("/")[0]
        host.run(["ip", "link", "set", "dev", "lo", "up"], check=True)
        host.run(["ip", "link", "set", "dev", host.iface, "up"], check=True)
        host.run(["ethtool", "-K", host.iface, "tx", "off"], check=True)
        host.mac = host._read_mac()
        self._attach(br, host.port, ofport)
        self.hosts[name] = host
        return host

    def add_link(self, bridge_a: str, port_a: int, bridge_b: str, port_b: int) -> Link:
        """Connect two lab bridges with a veth pair at the given OpenFlow ports."""
        br_a, br_b = self._bridge(bridge_a), self._bridge(bridge_b)
        self._links += 1
        link = Link(br_a, _check_ifname(f"{self.prefix}l{self._links}a"), port_a,
                    br_b, _check_ifname(f"{self.prefix}l{self._links}b"), port_b)
        self._new_veth(link.iface_a, link.iface_b)
        self.veths.append(link.iface_b)
        self._attach(br_a, link.iface_a, port_a)
        self._attach(br_b, link.iface_b, port_b)
        return link

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

        for proc in reversed(self._processes):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.communicate(timeout=3)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.communicate()
        self._processes.clear()
        for br in reversed(self.bridges):
            attempt([*VSCTL, "--if-exists", "del-br", br])
        self.bridges.clear()
        for veth in reversed(self.veths):
            if _link_exists(veth):  # deleting one end removes its peer too
                attempt(["ip", "link", "del", "dev", veth])
        self.veths.clear()
        existing = set(sh(["ip", "netns", "list"], check=False).stdout.split())
        for netns in reversed(self.namespaces):
            if netns in existing:
                attempt(["ip", "netns", "del", netns])
        self.namespaces.clear()
        self.hosts.clear()
        return errors


# ----------------------------------------------------------- inspection --


@dataclass(frozen=True)
class Flow:
    """One line of ``ovs-ofctl dump-flows``, parsed."""

    cookie: int
    table: int
    priority: int
    match: str
    actions: str
    duration: float
    n_packets: int
    n_bytes: int

    @property
    def identity(self) -> str:
        """What names the flow across dumps: cookie, table, priority, match."""
        ident = f"cookie={self.cookie:#x},table={self.table},priority={self.priority}"
        return f"{ident},{self.match}" if self.match else ident


_STAT_KEYS = frozenset({"cookie", "duration", "table", "n_packets", "n_bytes", "idle_timeout",
                        "hard_timeout", "importance", "idle_age", "hard_age"})
_FLAGS = frozenset({"send_flow_rem", "check_overlap", "reset_counts", "no_packet_counts",
                    "no_byte_counts"})


def parse_flow(line: str) -> Flow:
    """Parse one ``dump-flows`` line (OpenFlow 1.3 format).

    Raises
    ------
    ValueError
        If the line has no ``actions=``.
    """
    head, sep, actions = line.strip().partition("actions=")
    if not sep:
        raise ValueError(f"not a flow line: {line!r}")
    stats: dict[str, str] = {}
    words: list[str] = []  # flags (space separated), then "priority=N,match"
    for token in head.strip().rstrip(",").split(", "):
        key, eq, value = token.partition("=")
        if eq and key in _STAT_KEYS:
            stats[key] = value
        else:
            words += [w for w in token.split() if w not in _FLAGS]
    rest = words[-1] if words else ""
    priority = 32768  # OVS omits the default priority
    fields = [f for f in rest.split(",") if f]
    if fields and fields[0].startswith("priority="):
        priority = int(fields.pop(0).split("=", 1)[1])
    return Flow(cookie=int(stats.get("cookie", "0"), 16), table=int(stats.get("table", "0")),
                priority=priority, match=",".join(fields), actions=actions.strip(),
                duration=float(stats.get("duration", "0s").rstrip("s")),
                n_packets=int(stats.get("n_packets", "0")), n_bytes=int(stats.get("n_bytes", "0")))


def dump_flows(bridge: str) -> list[str]:
    """Return the bridge's flow lines (without the reply header)."""
    out = sh([*OFCTL, "dump-flows", bridge]).stdout
    return [line.strip() for line in out.splitlines() if "actions=" in line]


def flows(bridge: str) -> list[Flow]:
    """Return the bridge's flows, parsed."""
    return [parse_flow(line) for line in dump_flows(bridge)]


def flow_durations(bridge: str) -> dict[str, float]:
    """Map each flow's :attr:`Flow.identity` to its age in seconds.

    A flow that was deleted and re-added shows a smaller duration, which is
    how tests tell "left alone" from "reinstalled".
    """
    return {flow.identity: flow.duration for flow in flows(bridge)}


def dump_groups(bridge: str) -> list[str]:
    """Return the bridge's group description lines."""
    out = sh([*OFCTL, "dump-groups", bridge]).stdout
    return [line.strip() for line in out.splitlines() if "group_id=" in line]


@dataclass(frozen=True)
class PortStats:
    """Counters of one OpenFlow port."""

    rx_packets: int
    rx_bytes: int
    rx_dropped: int
    tx_packets: int
    tx_bytes: int
    tx_dropped: int


_PORT_STATS = re.compile(
    r"port\s+(\S+?):\s+rx pkts=(\d+), bytes=(\d+), drop=(\d+).*?"
    r"tx pkts=(\d+), bytes=(\d+), drop=(\d+)", re.DOTALL)


def port_stats(bridge: str) -> dict[int | str, PortStats]:
    """Return counters per OpenFlow port number (``"LOCAL"`` for the bridge port)."""
    out = sh([*OFCTL, "dump-ports", bridge]).stdout
    stats: dict[int | str, PortStats] = {}
    for found in _PORT_STATS.finditer(out):
        name, *counts = found.groups()
        key: int | str = int(name) if name.isdigit() else name
        stats[key] = PortStats(*(int(c) if c.isdigit() else 0 for c in counts))
    return stats


# ------------------------------------------------------------- controller --


class ControllerProcess:
    """``osken-manager <app> --ofp-tcp-listen-port PORT`` run from the repo root.

    ``config`` becomes ``VMN_CONFIG`` (unset if None); ``port`` defaults to a
    free one; ``args`` are appended to the command line; ``metrics_port`` is
    only recorded for the test (pass the matching option in ``args``).
    stdout and stderr go to :attr:`log_path`. Use as a context manager, or
    call :meth:`start` and :meth:`stop`.
    """

    def __init__(self, config: str | Path | None = None, *, port: int | None = None,
                 args: Sequence[str] = (), metrics_port: int | None = None,
                 app: str = "controller.app") -> None:
        self.config = config
        self.port = port or free_port()
        self.metrics_port = metrics_port
        self.argv = [str(OSKEN_MANAGER), app, "--ofp-tcp-listen-port", str(self.port), *args]
        fd, name = tempfile.mkstemp(prefix="vmn-controller-", suffix=".log")
        os.close(fd)
        self.log_path = Path(name)
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Self:
        return self if self.proc else self.start()

    def __exit__(self, exc_type: type[BaseException] | None,
                 exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def start(self, wait: bool = True) -> Self:
        """Start the process (once); with ``wait``, return once it listens.

        Raises
        ------
        FileNotFoundError
            If ``.venv/bin/osken-manager`` is missing (run scripts/setup.sh).
        AssertionError
            From :meth:`wait_listening` if ``wait``.
        """
        if self.proc is not None:
            raise RuntimeError("controller already started")
        if not OSKEN_MANAGER.exists():
            raise FileNotFoundError(f"{OSKEN_MANAGER} missing: run scripts/setup.sh")
        env = {k: v for k, v in os.environ.items() if k != "VMN_CONFIG"}
        env["PYTHONUNBUFFERED"] = "1"
        if self.config is not None:
            env["VMN_CONFIG"] = str(self.config)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        if wait:
            self.wait_listening()
        return self

    def listening(self) -> bool:
        """True if something listens on the OpenFlow port (checked without connecting)."""
        out = sh(["ss", "-Hltn", f"sport = :{self.port}"], check=False).stdout
        return bool(out.strip())

    def wait_listening(self, timeout: float = 20) -> None:
        """Wait until the process listens on its port.

        Raises
        ------
        AssertionError
            On timeout or if the process exits first; carries the log tail.
        """
        def check() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise _Exited(self.proc.returncode)
            return self.listening()

        self._wait(check, timeout, f"controller listening on port {self.port}")

    def _wait(self, check: Callable[[], bool], timeout: float, what: str) -> None:
        try:
            wait_until(check, timeout, interval=0.1, message=what)
        except _Exited as err:
            raise AssertionError(f"controller exited with {err.args[0]} while waiting for {what}"
                                 f"; log tail:\n{self.log_text()[-3000:]}") from None
        except AssertionError as err:
            raise AssertionError(f"{err}\ncontroller log tail:\n{self.log_text()[-3000:]}") from None

    @property
    def pid(self) -> int:
        """The process id. Raises RuntimeError if not started."""
        if self.proc is None:
            raise RuntimeError("controller not started")
        return self.proc.pid

    def alive(self) -> bool:
        """True while the process runs."""
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace: float = 5) -> int | None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; return the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def kill9(self) -> None:
        """Kill the process with SIGKILL (a crash: nothing gets cleaned up)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def log_text(self) -> str:
        """Everything the process wrote so far."""
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 10) -> None:
        """Wait until ``text`` appears in the log (AssertionError on timeout)."""
        wait_until(lambda: text in self.log_text(), timeout,
                   message=f"{text!r} in controller log {self.log_path}")

    def is_connected(self, bridge: str) -> bool:
        """True if ``bridge`` has this controller's target and OVS says connected."""
        target = f"tcp:127.0.0.1:{self.port}"
        uuids = sh([*VSCTL, "get", "bridge", bridge, "controller"]).stdout.strip("[] \n")
        if not uuids:
            return False
        out = sh([*VSCTL, "--bare", "--columns=target,is_connected", "list", "controller",
                  *uuids.split(", ")]).stdout
        lines = [line.strip() for line in out.splitlines() if line.strip()]
        return any(t.strip('"') == target and c == "true" for t, c in zip(lines[::2], lines[1::2]))

    def wait_connected(self, bridge: str, timeout: float = 15) -> None:
        """Wait until ``bridge`` is connected to this controller.

        Raises
        ------
        AssertionError
            On timeout, or at once if the process died; the message carries
            the tail of the log.
        """
        def check() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise _Exited(self.proc.returncode)
            return self.is_connected(bridge)

        self._wait(check, timeout, f"{bridge} connected to port {self.port}")


class _Exited(Exception):
    """The controller process ended (carries the exit status)."""

