"""JSON documents of the API, built from a :class:`~controller.api.snapshot.Snapshot`.

Pure functions: a snapshot in, plain dicts and lists out (JSON-ready, in a
stable order). Datapath ids are 16 hex digits as ``ovs-vsctl`` prints them
(a JSON number cannot hold 64 bits in a browser).
"""

from __future__ import annotations

from typing import Any

from controller.api.ofctl import flow_lines, group_lines
from controller.api.snapshot import Snapshot
from controller.config.model import Vm
from controller.fabric.topology import LinkKey
from controller.fabric.view import Host

Json = dict[str, Any]


def dpid_text(dpid: int) -> str:
    """``0000000000000001``: a dpid as ``ovs-vsctl`` prints it."""
    return f"{dpid:016x}"


def _switches(snap: Snapshot) -> list[Json]:
    declared = {s.dpid: s.name for s in snap.model.switches}
    dpids = sorted(set(declared) | set(snap.ports))
    return [
        {
            "name": snap.switch_name(dpid),
            "dpid": dpid_text(dpid),
            "declared": dpid in declared,
            "connected": dpid in snap.ports,
            "ready": dpid in snap.ready,
            "role": snap.roles.get(dpid, "equal") if dpid in snap.ports else None,
            "flows": snap.flow_counts.get(dpid, 0),
        }
        for dpid in dpids
    ]


def _end(switch: str, port: object) -> Json:
    return {"switch": switch, "port": port}


def _links(snap: Snapshot) -> list[Json]:
    out: list[Json] = []
    seen: set[LinkKey] = set()
    for link in snap.model.links:
        a, b = snap.port_number(link.a.switch, link.a.port), snap.port_number(link.b.switch, link.b.port)
        key = LinkKey.of(*a, *b) if a is not None and b is not None else None
        up = key is not None and key in snap.links
        if key is not None:
            seen.add(key)
        ends = (_end(link.a.switch, link.a.port), _end(link.b.switch, link.b.port))
        out.append({"id": _link_id(ends), "a": ends[0], "b": ends[1], "up": up, "declared": True})
    for key in sorted(snap.links - seen):
        ends = (_end(snap.switch_name(key.a_dpid), key.a_port), _end(snap.switch_name(key.b_dpid), key.b_port))
        out.append({"id": _link_id(ends), "a": ends[0], "b": ends[1], "up": True, "declared": False})
    return out


def _link_id(ends: tuple[Json, Json]) -> str:
    return "{}:{}-{}:{}".format(ends[0]["switch"], ends[0]["port"], ends[1]["switch"], ends[1]["port"])


def host_json(snap: Snapshot, host: Host) -> Json:
    """One learned host: network, MAC, where (switch name, dpid, port) and the VM on that port if any."""
    net = snap.model.network_by_vlan.get(host.vlan)
    vm = _vm_at(snap, host.dpid, host.port)
    return {
        "network": net.name if net else None,
        "vlan": host.vlan,
        "mac": host.mac,
        "switch": snap.switch_name(host.dpid),
        "dpid": dpid_text(host.dpid),
        "port": host.port,
        "vm": vm.name if vm else None,
    }


def _vm_at(snap: Snapshot, dpid: int, port: int) -> Vm | None:
    return next((vm for vm in snap.model.vms if snap.port_number(vm.switch, vm.port) == (dpid, port)), None)


def _location(snap: Snapshot, vm: Vm) -> Json | None:
    """Where the VM was learned: its MAC anywhere in its network, else any host on its port."""
    vlan = snap.model.network_by_name[vm.network].vlan
    at = snap.port_number(vm.switch, vm.port)
    mine = [h for h in snap.hosts if h.vlan == vlan and vm.mac and h.mac == vm.mac]
    mine = mine or [h for h in snap.hosts if h.vlan == vlan and (h.dpid, h.port) == at]
    if not mine:
        return None
    host = mine[0]
    return {"switch": snap.switch_name(host.dpid), "port": host.port, "mac": host.mac}


def _vms(snap: Snapshot) -> list[Json]:
    return [
        {
            "name": vm.name,
            "switch": vm.switch,
            "port": vm.port,
            "network": vm.network,
            "ip": str(vm.ip) if vm.ip else None,
            "ipv6": str(vm.ipv6) if vm.ipv6 else None,
            "mac": vm.mac,
            "connected": snap.port_number(vm.switch, vm.port) is not None,
            "location": _location(snap, vm),
        }
        for vm in snap.model.vms
    ]


def load_balancers(snap: Snapshot) -> list[Json]:
    """Every balancer with its backends: weight, health (``up``) and where each was found."""
    states = {(b.lb, b.ip): b for b in snap.backends}
    out = []
    for lb in snap.model.load_balancers:
        backends = []
        for backend in lb.backends:
            state = states.get((lb.name, backend.ip))
            where = state.location if state else None
            backends.append(
                {
                    "ip": str(backend.ip),
                    "vm": backend.vm,
                    "weight": backend.weight,
                    "up": state.up if state else None,
                    "location": None
                    if where is None
                    else {"switch": snap.switch_name(where.dpid), "port": where.port, "mac": where.mac},
                }
            )
        out.append(
            {
                "name": lb.name,
                "vip": str(lb.vip),
                "network": lb.network,
                "protocol": lb.protocol,
                "port": lb.port,
                "backends": backends,
            }
        )
    return out


def _named(items: object) -> list[Json]:
    """Routers and uplinks of models that have them (issues 15, 16): name and what they join."""
    out = []
    for item in items if isinstance(items, tuple) else ():
        entry: Json = {"name": str(getattr(item, "name", ""))}
        for key in ("networks", "switch", "port", "ip", "uplink"):
            value = getattr(item, key, None)
            if value is not None:
                entry[key] = (
                    list(value) if isinstance(value, tuple) else value if isinstance(value, int) else str(value)
                )
        out.append(entry)
    return out


def topology(snap: Snapshot) -> Json:
    """``GET /api/v1/topology``: switches, links, networks, VMs, balancers, routers and uplinks."""
    return {
        "config": snap.config_path,
        "zero_config": snap.model.zero_config,
        "switches": _switches(snap),
        "links": _links(snap),
        "networks": [{"name": n.name, "vlan": n.vlan} for n in snap.model.networks],
        "vms": _vms(snap),
        "hosts": [host_json(snap, h) for h in snap.hosts] if snap.model.zero_config else [],
        "load_balancers": load_balancers(snap),
        "routers": _named(getattr(snap.model, "routers", ())),
        "uplinks": _named(getattr(snap.model, "uplinks", ())),
    }


def hosts(snap: Snapshot) -> Json:
    """``GET /api/v1/hosts``: every learned host, by network VLAN then MAC."""
    return {"hosts": [host_json(snap, h) for h in snap.hosts]}


def switch_flows(snap: Snapshot, dpid: int) -> Json:
    """The flows (``ovs-ofctl`` syntax) and groups VMN wants on one connected switch."""
    return {
        "name": snap.switch_name(dpid),
        "dpid": dpid_text(dpid),
        "ready": dpid in snap.ready,
        "flows": flow_lines(snap.flows.get(dpid, ())),
        "groups": group_lines(snap.groups.get(dpid, ())),
    }
