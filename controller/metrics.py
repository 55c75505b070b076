"""Prometheus metrics of the controller, on a registry passed in (no globals).

:class:`StatCounter`: Prometheus counters fed from cumulative switch statistics.

Switches report cumulative counts (packets per flow, per group bucket); an
entry re-added (switch restart, rule or group changed) starts again from
zero. :class:`StatCounter` turns successive reports into increments of one
labelled counter, summed over every switch and every entry that maps to the
same labels: ACL rule hits (``vmn_acl_rule_hits_total``) from ACL flows,
load-balanced connections per backend (``vmn_lb_backend_connections_total``)
from select-group buckets (each new connection meets the group once).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Generic, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    """Every metric VMN exports. One instance per controller, on its own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.switches_connected = Gauge("vmn_switches_connected", "Switches connected", registry=r)
        self.packet_in = Counter("vmn_packet_in", "Packet-ins received", ["switch", "reason"], registry=r)
        self.packet_in_dropped = Counter(
            "vmn_packet_in_dropped", "Packet-ins dropped by the controller-side rate limit", ["switch"], registry=r
        )
        self.packet_in_shed = Counter(
            "vmn_packet_in_shed",
            "Repeated packet-ins of one source dropped unparsed by the receive loop (controller.rx)",
            ["switch"],
            registry=r,
        )
        self.flow_mods = Counter("vmn_flow_mods", "Flow mods sent", ["switch", "command"], registry=r)
        self.flows_installed = Gauge(
            "vmn_flows_installed", "Flows wanted on each switch", ["switch", "app"], registry=r
        )
        self.hosts_learned = Gauge("vmn_hosts_learned", "Learned hosts", ["network"], registry=r)
        self.host_events = Counter("vmn_host_events", "Host learn/move/expire events", ["event"], registry=r)
        self.links_up = Gauge("vmn_links_up", "Inter-switch links up", registry=r)
        self.link_mismatches = Gauge(
            "vmn_link_mismatches",
            "Declared links not discovered and discovered links the network file does not allow",
            registry=r,
        )
        self.config_reloads = Counter("vmn_config_reloads", "Config reloads", ["result"], registry=r)
        self.lb_backend_up = Gauge("vmn_lb_backend_up", "Backend health (1 up, 0 down)", ["lb", "backend"], registry=r)
        self.lb_connections = Counter(
            "vmn_lb_backend_connections",
            "Connections sent to a backend (from select-group bucket statistics)",
            ["lb", "backend"],
            registry=r,
        )
        self.lb_check_latency = Histogram(
            "vmn_lb_check_latency_seconds", "Health check latency", ["lb", "backend"], registry=r
        )
        self.acl_rule_hits = Counter(
            "vmn_acl_rule_hits",
            "Packets matched by an ACL rule (rule: index in the ACL, arp-allow, nd-allow or implicit-deny; "
            "direction: in for acl_in, out for acl_out)",
            ["acl", "rule", "direction"],
            registry=r,
        )
        self.reconcile_seconds = Histogram("vmn_reconcile_seconds", "Time to reconcile a switch", registry=r)
        self.routed_networks = Gauge(
            "vmn_routed_networks", "Networks on a router (routed to and from)", ["router"], registry=r
        )
        self.router_next_hops = Gauge(
            "vmn_router_next_hops_resolved", "Routed VMs without a declared mac whose MAC ARP found", registry=r
        )
        self.router_arp = Counter(
            "vmn_router_arp_resolutions",
            "ARP resolutions by the gateways (result: resolved, a MAC found or changed; lost, forgotten)",
            ["result"],
            registry=r,
        )
        self.uplink_gateway_up = Gauge(
            "vmn_uplink_gateway_up",
            "1 while an uplink's upstream gateway answers ARP (0: not found yet, or stopped answering)",
            ["uplink"],
            registry=r,
        )
        self.uplink_nat_connections = Counter(
            "vmn_uplink_nat_connections",
            "Connections NATed on an uplink (nat: snat for ones from inside, dnat for ones to a floating IP)",
            ["uplink", "nat"],
            registry=r,
        )
        self.floating_ip_packets = Counter(
            "vmn_floating_ip_packets",
            "Packets from outside to a floating IP that passed to conntrack (replies and new connections)",
            ["floating_ip"],
            registry=r,
        )
        self.uplink_dropped = Counter(
            "vmn_uplink_dropped_packets",
            "Packets from outside dropped on an uplink (reason: arp, spoofed, unknown_destination, "
            "unsolicited, tagged)",
            ["uplink", "reason"],
            registry=r,
        )
        self.dhcp_leases = Counter(
            "vmn_dhcp_leases",
            "DHCP answers sent (message: offer, ack, nak)",
            ["network", "message"],
            registry=r,
        )
        self.leader = Gauge(
            "vmn_leader",
            "1 while this instance programs the switches (the elected leader, or no coordination)",
            registry=r,
        )
        self.coordination_up = Gauge(
            "vmn_coordination_up", "1 while the coordination service answers (0 without coordination)", registry=r
        )
        self.switch_role = Gauge(
            "vmn_switch_role",
            "1 for this instance's OpenFlow role on each connected switch (master, slave or equal)",
            ["switch", "role"],
            registry=r,
        )
        self.elections = Counter("vmn_elections", "Times this instance was elected leader", registry=r)
        self.takeover_seconds = Histogram(
            "vmn_takeover_seconds",
            "From election to every connected switch claimed and reconciled",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 30),
            registry=r,
        )


Labels = tuple[str, ...]
K = TypeVar("K", bound=Hashable)


class StatCounter(Generic[K]):
    """Last count seen per (switch, entry), turned into increments of ``counter``."""

    def __init__(self, counter: Counter) -> None:
        self.counter = counter
        self._seen: dict[int, dict[K, int]] = {}

    def update(self, dpid: int, counts: Mapping[K, int], labels: Mapping[K, Labels]) -> int:
        """Record one switch's report ``entry -> count``; returns the amount newly counted.

        Only entries in ``labels`` count (each with its label values, in the
        counter's label order); a count below the last one means the entry
        was re-added and counts from zero.
        """
        last = self._seen.get(dpid, {})
        now: dict[K, int] = {}
        added = 0
        for entry, count in counts.items():
            values = labels.get(entry)
            if values is None:
                continue
            before = last.get(entry, 0)
            delta = count - before if count >= before else count
            now[entry] = count
            if delta:
                self.counter.labels(*values).inc(delta)
                added += delta
        self._seen[dpid] = now
        return added
