"""The ``mirrors`` section: port mirroring (copies of VMs' traffic out of a tap port)."""

from __future__ import annotations

from typing import Literal, cast

from controller.config.base import Ctx, Known, mapping, one_of, optional, port_ref, reference, references, required
from controller.config.model import Mirror, Vm
from controller.config.topology import PortSlot

DIRECTIONS = ("in", "out", "both")


def parse_mirrors(
    ctx: Ctx, raw: dict[str, object], known: Known, vms: list[Vm], link_ports: dict[PortSlot, str]
) -> list[Mirror]:
    """The valid mirrors, in file order.

    A mirror port may be neither a VM's nor a link's port, nor another
    mirror's. Mirroring traffic delivered to a VM (``in`` or ``both``) needs
    the VM's ``mac``: frames are recognised by their destination MAC.
    """
    taken: dict[PortSlot, str] = dict(link_ports)
    taken.update({(vm.switch, vm.port): f"VM {vm.name!r}" for vm in vms})
    by_name = {vm.name: vm for vm in vms}
    out = []
    for name, value in raw.items():
        mirror = _mirror(ctx.at(name), name, value, known, taken)
        if mirror is None:
            continue
        if mirror.direction != "out":
            for i, vm_name in enumerate(mirror.vms):
                vm = by_name.get(vm_name)
                if vm is not None and vm.mac is None:
                    ctx.at(name).at("vms").at(i).error(
                        f"VM {vm_name!r} has no mac: mirroring traffic delivered to it "
                        f"(direction {mirror.direction!r}) needs one"
                    )
        out.append(mirror)
    return out


def _mirror(ctx: Ctx, name: str, value: object, known: Known, taken: dict[PortSlot, str]) -> Mirror | None:
    mark = ctx.mark()
    m = mapping(ctx, value, required=("switch", "port", "vms"), optional=("direction",))
    if m is None:
        return None
    switch = required(ctx, m, "switch", reference(known.switches, "switch"))
    port = port_ref(ctx.at("port"), m["port"]) if "port" in m else None
    vms = required(ctx, m, "vms", references(known.vms, "VM"))
    direction = optional(ctx, m, "direction", one_of(*DIRECTIONS), "both")
    if vms is not None and not vms:
        ctx.at("vms").error("must name at least one VM")
    if switch is not None and port is not None:
        holder = taken.setdefault((switch, port), f"mirror {name!r}")
        if holder != f"mirror {name!r}":
            ctx.at("port").error(f"port {port} on switch {switch!r} is already used by {holder}")
    if switch is None or port is None or vms is None or direction is None or ctx.failed_since(mark):
        return None
    return Mirror(name, switch, port, vms, cast(Literal["in", "out", "both"], direction))
