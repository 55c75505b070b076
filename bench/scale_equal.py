"""Dump a fabric's whole desired state, to prove two versions of the controller install the same flows.

For one size of :mod:`bench.scale` (or a network file of ``topologies/``),
writes every stage's state as text lines, sorted: after the compile from
nothing (``Core.recompute``), after each host event (a learn packet-in of a
VM not learned yet) and after a reload of the file with one VM's IP
changed. Each line is one flow of one switch, ``stage dpid cookie rule``
(the rule's every field), or one group. Run it in two trees and compare the
outputs (``cmp``): equal files mean equal flows, rule for rule and cookie
for cookie, at every stage. Prints the line count and a SHA-256 of the dump.

Usage: ``python -m bench.scale_equal OUT SPINES LEAVES NETWORKS VMS_PER_LEAF``
or ``python -m bench.scale_equal OUT topologies/default.yaml``; with ``--digest``, one
line per switch and stage (its flow count and a SHA-256 of its lines): for 100 switches.
"""

from __future__ import annotations

import copy
import hashlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.scale import Fabric, Size, _frame, build, connected

if TYPE_CHECKING:
    from controller.core import Core


def _from_file(path: str) -> Fabric:
    """A :class:`Fabric` of the network file at ``path``, every switch and link up, no VM learned yet."""
    import yaml

    return connected(yaml.safe_load(Path(path).read_text()))


def state(core: Core, stage: str) -> list[str]:
    """Every flow and group of every switch of ``core``, one line each, sorted."""
    lines = []
    for dpid in sorted(core.topology.ports):
        for rule in core.flows.rules(dpid):
            fields = (rule.app, rule.table, rule.priority, rule.match, rule.actions, rule.goto, rule.meter)
            extra = (rule.idle_timeout, rule.flags, rule.write_metadata)
            lines.append(f"{stage} {dpid:x} {rule.cookie:016x} {fields!r} {extra!r}")
    for dpid, groups in sorted(core.groups.items()):
        for gid, group in sorted(groups.items()):
            lines.append(f"{stage} {dpid:x} group {gid} {group!r}")
    return sorted(lines)


def digest(core: Core, stage: str) -> list[str]:
    """One line per switch: ``stage dpid flows sha256`` of its :func:`state` lines (large fabrics: less memory)."""
    out = []
    for dpid in sorted(core.topology.ports):
        lines = []
        for rule in core.flows.rules(dpid):
            fields = (rule.app, rule.table, rule.priority, rule.match, rule.actions, rule.goto, rule.meter)
            extra = (rule.idle_timeout, rule.flags, rule.write_metadata)
            lines.append(f"{rule.cookie:016x} {fields!r} {extra!r}")
        lines += [f"group {gid} {group!r}" for gid, group in sorted(core.groups.get(dpid, {}).items())]
        text = "\n".join(sorted(lines)).encode()
        out.append(f"{stage} {dpid:x} {len(lines)} {hashlib.sha256(text).hexdigest()}")
    return out


def dump(fabric: Fabric, state_of: Callable[[Core, str], list[str]] = state) -> list[str]:
    """The state after the compile, each host event and a reload with one VM's IP changed."""
    from controller.config import parse_model
    from controller.flows.pipeline import T_LEARN

    core, model = fabric.core, fabric.model
    core.recompute()
    out = state_of(core, "compile")
    core.ready.update(s.dpid for s in model.switches)
    for i, vm in enumerate(fabric.later):
        dpid, port = fabric.numbers[(vm.switch, vm.port)]
        assert vm.mac is not None
        core.packet_in(dpid, T_LEARN, port, _frame(vm.mac, model.network_by_name[vm.network].vlan))
        out += state_of(core, f"host{i}")
    changed: dict[str, Any] = copy.deepcopy(fabric.net)  # type: ignore[arg-type]
    first = next((v for v in changed["vms"].values() if "ip" in v), None)
    if first is not None:
        first["ip"] = first["ip"].split("/")[0].rsplit(".", 1)[0] + ".250/" + first["ip"].split("/")[1]
    core.reload(parse_model(changed))
    out += state_of(core, "reload")
    return out


def main(argv: list[str]) -> int:
    digests = "--digest" in argv
    out, *what = [a for a in argv if a != "--digest"]
    fabric = _from_file(what[0]) if len(what) == 1 else build(Size(*map(int, what)))
    lines = dump(fabric, digest if digests else state)
    text = "\n".join(lines) + "\n"
    Path(out).write_text(text)
    print(len(lines), hashlib.sha256(text.encode()).hexdigest())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
