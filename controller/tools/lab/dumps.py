"""Parsing what ``ovs-ofctl`` dumps: flows, groups and port counters of a bridge.

Every function that takes a ``bridge`` runs ``ovs-ofctl -O OpenFlow13``
on it and raises :class:`~controller.tools.lab.shell.CommandError` if
that fails (e.g. no such bridge).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from controller.tools.lab.shell import OFCTL, sh


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


_STAT_KEYS = frozenset(
    {
        "cookie",
        "duration",
        "table",
        "n_packets",
        "n_bytes",
        "idle_timeout",
        "hard_timeout",
        "importance",
        "idle_age",
        "hard_age",
    }
)
_FLAGS = frozenset({"send_flow_rem", "check_overlap", "reset_counts", "no_packet_counts", "no_byte_counts"})


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
    return Flow(
        cookie=int(stats.get("cookie", "0"), 16),
        table=int(stats.get("table", "0")),
        priority=priority,
        match=",".join(fields),
        actions=actions.strip(),
        duration=float(stats.get("duration", "0s").rstrip("s")),
        n_packets=int(stats.get("n_packets", "0")),
        n_bytes=int(stats.get("n_bytes", "0")),
    )


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
    r"tx pkts=(\d+), bytes=(\d+), drop=(\d+)",
    re.DOTALL,
)


def port_stats(bridge: str) -> dict[int | str, PortStats]:
    """Return counters per OpenFlow port number (``"LOCAL"`` for the bridge port)."""
    out = sh([*OFCTL, "dump-ports", bridge]).stdout
    stats: dict[int | str, PortStats] = {}
    for found in _PORT_STATS.finditer(out):
        name, *counts = found.groups()
        key: int | str = int(name) if name.isdigit() else name
        stats[key] = PortStats(*(int(c) if c.isdigit() else 0 for c in counts))
    return stats
