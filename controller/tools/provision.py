"""``vmn provision``: create or update each switch's OVS bridge through the OVSDB IDL.

With ``hosts`` in the file, ``--host H`` provisions host H: its switches,
its tunnel ports and the patch ports of links between its bridges
(:mod:`controller.tools.hostports`); run it on every host.

For every switch of the network file (of the host): a bridge named ``switch.bridge`` with
the file's dpid, OpenFlow 1.3, ``fail_mode=secure``, the datapath type asked
for and the controller target(s) (several for HA instances, see
:mod:`controller.ha`: each instance connects to every switch), each with its
queue of packet-ins toward the controller (``controller_queue_size``) sized from
``controller.packet_in_rate`` (:func:`controller.ratelimit.controller_queue_size`);
then every VM port given as an interface
name (and an uplink's) is attached when that interface exists on the host, asking OVS for
the OpenFlow number :mod:`controller.tools.portplan` gives it
(``ofport_request``; the number ``vmn trace`` simulates). An interface
already attached (by libvirt, say) keeps its number: the controller
resolves names from the switch. Idempotent: a second run changes nothing
and says so. Uses python-ovs (``ovs.db.idl``),
not ``ovs-vsctl``.
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass
from typing import Any

with warnings.catch_warnings():  # python-ovs imports eventlet only to detect it
    warnings.simplefilter("ignore")
    import ovs.db.idl
    import ovs.poller

from controller.config.model import Model, Switch
from controller.ratelimit import controller_queue_size
from controller.tools.hostports import HostError, PortSpec, host_ports, switches_of
from controller.tools.portplan import MAX_OFPORT, port_numbers

DEFAULT_DB = "unix:/var/run/openvswitch/db.sock"
SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"
TABLES = {
    "Open_vSwitch": ["bridges"],
    "Bridge": ["name", "ports", "controller", "protocols", "fail_mode", "datapath_type", "other_config"],
    "Port": ["name", "interfaces"],
    "Interface": ["name", "type", "ofport_request", "options", "bfd"],
    "Controller": ["target", "controller_queue_size"],
}


class ProvisionError(RuntimeError):
    """OVSDB unreachable, a transaction failed, or an unknown host; the message says which."""


@dataclass(frozen=True)
class Plan:
    """What to provision: the network file plus the command-line choices.

    ``controller`` is one target or several (a sequence, or one string
    with commas): every bridge gets exactly these.
    """

    model: Model
    controller: str | tuple[str, ...] = "tcp:127.0.0.1:6653"
    datapath_type: str = "system"
    db: str = DEFAULT_DB
    host: str | None = None
    """The host to provision (``hosts`` in the file); None: every switch of a file without hosts."""

    @property
    def targets(self) -> tuple[str, ...]:
        """The controller targets, sorted, without repeats (``tcp:10.0.0.1:6653``, ``ssl:...``)."""
        given = self.controller.split(",") if isinstance(self.controller, str) else self.controller
        return tuple(sorted({t.strip() for t in given if t.strip()}))


def _connect(db: str, timeout: float) -> ovs.db.idl.Idl:
    helper = ovs.db.idl.SchemaHelper(SCHEMA)
    for table, columns in TABLES.items():
        helper.register_columns(table, columns)
    idl = ovs.db.idl.Idl(db, helper)
    deadline = time.monotonic() + timeout
    while not idl.has_ever_connected():
        idl.run()
        if time.monotonic() > deadline:
            idl.close()
            raise ProvisionError(f"cannot reach OVSDB at {db}")
        poller = ovs.poller.Poller()
        idl.wait(poller)
        poller.timer_wait(100)
        poller.block()
    return idl


def _commit(idl: ovs.db.idl.Idl, txn: Any) -> None:
    status = txn.commit_block()
    if status not in (ovs.db.idl.Transaction.SUCCESS, ovs.db.idl.Transaction.UNCHANGED):
        raise ProvisionError(f"OVSDB transaction failed: {status} {txn.get_error()}")


def _rows(idl: ovs.db.idl.Idl, table: str) -> list[Any]:
    return list(idl.tables[table].rows.values())


def _bridge_changes(row: Any, switch: Switch, plan: Plan) -> dict[str, Any]:
    """Columns of an existing bridge row that differ from what the plan wants."""
    want: dict[str, Any] = {
        "protocols": ["OpenFlow13"],
        "fail_mode": ["secure"],
        "datapath_type": plan.datapath_type,
    }
    diff = {k: v for k, v in want.items() if getattr(row, k) != v}
    dpid = f"{switch.dpid:016x}"
    if dict(row.other_config).get("datapath-id") != dpid:
        diff["other_config"] = {**dict(row.other_config), "datapath-id": dpid}
    return diff


def _ensure_bridge(idl: ovs.db.idl.Idl, txn: Any, switch: Switch, plan: Plan) -> list[str]:
    changes: list[str] = []
    bridge = next((b for b in _rows(idl, "Bridge") if b.name == switch.bridge), None)
    if bridge is None:
        iface = txn.insert(idl.tables["Interface"])
        iface.name, iface.type = switch.bridge, "internal"
        port = txn.insert(idl.tables["Port"])
        port.name, port.interfaces = switch.bridge, [iface]
        bridge = txn.insert(idl.tables["Bridge"])
        bridge.name, bridge.ports = switch.bridge, [port]
        bridge.other_config = {}
        root = _rows(idl, "Open_vSwitch")[0]
        root.addvalue("bridges", bridge)
        changes.append(f"bridge {switch.bridge}: created")
        fields = {
            "protocols": ["OpenFlow13"],
            "fail_mode": ["secure"],
            "datapath_type": plan.datapath_type,
            "other_config": {"datapath-id": f"{switch.dpid:016x}"},
        }
    else:
        fields = _bridge_changes(bridge, switch, plan)
        changes += [f"bridge {switch.bridge}: {k} updated" for k in sorted(fields)]
    for column, value in fields.items():
        setattr(bridge, column, value)
    created = bool(changes) and changes[0].endswith("created")
    targets = [] if created else sorted(c.target for c in bridge.controller)
    queue = controller_queue_size(plan.model.controller.packet_in_rate)
    if targets != list(plan.targets):
        rows = []
        for target in plan.targets:
            ctl = txn.insert(idl.tables["Controller"])
            ctl.target = target
            ctl.controller_queue_size = queue
            rows.append(ctl)
        bridge.controller = rows
        changes.append(f"bridge {switch.bridge}: controller {', '.join(plan.targets)} (queue {queue})")
        return changes
    for ctl in sorted(bridge.controller, key=lambda c: c.target):
        if list(ctl.controller_queue_size) != [queue]:
            ctl.controller_queue_size = queue
            changes.append(f"bridge {switch.bridge}: controller {ctl.target} queue {queue}")
    return changes


def _ensure_ports(idl: ovs.db.idl.Idl, txn: Any, switch: Switch, plan: Plan) -> list[str]:
    """Attach VM and uplink interfaces named in the file that exist on this host and are not attached.

    Each gets ``ofport_request`` set to its number in the port plan (when OVS
    can honour it), so a provisioned bridge numbers its ports as ``vmn trace``.
    """
    changes: list[str] = []
    attached = {p.name for p in _rows(idl, "Port")}
    bridge = next((b for b in _rows(idl, "Bridge") if b.name == switch.bridge), None)
    numbers = port_numbers(plan.model)
    owners = [(f"vm {vm.name}", vm.port) for vm in plan.model.vms_on(switch.name)]
    owners += [(f"uplink {u.name}", u.port) for u in plan.model.uplinks if u.switch == switch.name]
    for owner, name in owners:
        if not isinstance(name, str) or name in attached:
            continue
        if not os.path.exists(f"/sys/class/net/{name}"):
            changes.append(f"note: {owner}: interface {name} not present, skipped")
            continue
        if bridge is None:
            continue
        iface = txn.insert(idl.tables["Interface"])
        iface.name = name
        number = numbers[(switch.name, name)][1]
        requested = ""
        if number <= MAX_OFPORT:
            iface.ofport_request = number
            requested = f" (ofport_request {number})"
        port = txn.insert(idl.tables["Port"])
        port.name, port.interfaces = name, [iface]
        bridge.addvalue("ports", port)
        changes.append(f"{owner}: {name} attached to {switch.bridge}{requested}")
    return changes


def _ensure_spec(idl: ovs.db.idl.Idl, txn: Any, spec: PortSpec) -> list[str]:
    """Create the port of ``spec`` on its bridge, or bring an existing one's interface in line."""
    iface = next((i for i in _rows(idl, "Interface") if i.name == spec.name), None)
    want: dict[str, Any] = {"type": spec.type, "options": dict(spec.options), "bfd": dict(spec.bfd)}
    if iface is not None:
        diff = {k: v for k, v in want.items() if (dict(getattr(iface, k)) if k != "type" else iface.type) != v}
        for column, value in diff.items():
            setattr(iface, column, value)
        return [f"port {spec.name} ({spec.why}): {k} updated" for k in sorted(diff)]
    bridge = next((b for b in _rows(idl, "Bridge") if b.name == spec.bridge), None)
    if bridge is None:
        return []
    iface = txn.insert(idl.tables["Interface"])
    iface.name = spec.name
    for column, value in want.items():
        setattr(iface, column, value)
    if spec.ofport is not None:
        iface.ofport_request = spec.ofport
    port = txn.insert(idl.tables["Port"])
    port.name, port.interfaces = spec.name, [iface]
    bridge.addvalue("ports", port)
    return [f"port {spec.name} ({spec.why}): created on {spec.bridge}"]


def provision(plan: Plan, timeout: float = 10.0) -> list[str]:
    """Make OVS match the plan; return one line per change (``note:`` lines change nothing).

    Raises
    ------
    ProvisionError
        If the host is unknown (or missing while the file has hosts), OVSDB
        cannot be reached or a transaction fails.
    """
    try:
        names = set(switches_of(plan.model, plan.host))
        specs = host_ports(plan.model, plan.host)
    except HostError as exc:
        raise ProvisionError(str(exc)) from exc
    switches = [s for s in plan.model.switches if s.name in names]
    idl = _connect(plan.db, timeout)
    try:
        changes: list[str] = []
        txn = ovs.db.idl.Transaction(idl)
        for switch in switches:
            changes += _ensure_bridge(idl, txn, switch, plan)
        _commit(idl, txn)
        _wait_synced(idl)
        txn = ovs.db.idl.Transaction(idl)
        for spec in specs:
            changes += _ensure_spec(idl, txn, spec)
        for switch in switches:
            changes += _ensure_ports(idl, txn, switch, plan)
        _commit(idl, txn)
        return changes
    finally:
        idl.close()


def _wait_synced(idl: ovs.db.idl.Idl, rounds: int = 20) -> None:
    for _ in range(rounds):
        idl.run()
        poller = ovs.poller.Poller()
        idl.wait(poller)
        poller.timer_wait(20)
        poller.block()


def describe(changes: list[str]) -> str:
    """Changes one per line; ``note:`` lines are not changes (``nothing to change`` if only those)."""
    real = [c for c in changes if not c.startswith("note: ")]
    return "\n".join(changes + ([] if real else ["nothing to change"]))
