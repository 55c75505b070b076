"""A lab of real Open vSwitch bridges and network namespaces, for tests and benchmarks.

Needs root and a running Open vSwitch. One job per module:

- :mod:`~controller.tools.lab.shell`: :func:`sh`, :func:`wait_until`,
  :func:`free_port`, :func:`unique_prefix`, the ``ovs-*`` command prefixes;
- :mod:`~controller.tools.lab.hosts`: :class:`Host` (a namespace with a veth
  into a bridge) and :class:`Link` (a veth between two bridges);
- :mod:`~controller.tools.lab.lab`: :class:`Lab`, which creates bridges,
  hosts and links and removes them all on exit;
- :mod:`~controller.tools.lab.dumps`: flows, groups and port counters as
  ``ovs-ofctl`` dumps them, parsed;
- :mod:`~controller.tools.lab.controller_process`: :class:`ControllerProcess`,
  the controller under test as a child process;
- :mod:`~controller.tools.lab.coordination`: :class:`RedisServer` (a
  coordination service for HA tests) and :class:`Proxy` (a blockable
  loopback forwarder: a partition from it);
- :mod:`~controller.tools.lab.wiring`: :func:`wire`, which builds a network
  file (e.g. from :mod:`controller.tools.topo`) in a lab;
- :mod:`~controller.tools.lab.oftrace`: ``ovs-appctl ofproto/trace`` of a
  packet, followed across lab links, with the edge ports it leaves by
  (imported from there, not re-exported);
- :mod:`~controller.tools.lab.hypervisor`: :class:`Hypervisor` (a namespace
  running its own ovsdb-server and ovs-vswitchd) and its :class:`VM`;
- :mod:`~controller.tools.lab.multihost`: :class:`MultiHostLab`, several
  hypervisors with VMs, cables, a management network and an underlay.

Everything public is re-exported here::

    from controller.tools.lab import Lab, ControllerProcess, wait_until
"""

from controller.tools.lab.controller_process import OSKEN_MANAGER, REPO_ROOT, ControllerProcess
from controller.tools.lab.coordination import Proxy, RedisServer
from controller.tools.lab.dumps import (
    Flow,
    PortStats,
    dump_flows,
    dump_groups,
    flow_durations,
    flows,
    parse_flow,
    port_stats,
)
from controller.tools.lab.hosts import MAX_IFNAME, Host, Link
from controller.tools.lab.hypervisor import VM, Hypervisor
from controller.tools.lab.lab import Lab
from controller.tools.lab.multihost import Cable, MultiHostLab, PortRef
from controller.tools.lab.shell import (
    OFCTL,
    VSCTL,
    Cmd,
    CommandError,
    free_port,
    sh,
    unique_prefix,
    wait_until,
)
from controller.tools.lab.wiring import Wired, wire

__all__ = [
    "MAX_IFNAME",
    "OFCTL",
    "OSKEN_MANAGER",
    "REPO_ROOT",
    "VM",
    "VSCTL",
    "Cable",
    "Cmd",
    "CommandError",
    "ControllerProcess",
    "Flow",
    "Host",
    "Hypervisor",
    "Lab",
    "Link",
    "MultiHostLab",
    "PortRef",
    "PortStats",
    "Proxy",
    "RedisServer",
    "Wired",
    "dump_flows",
    "dump_groups",
    "flow_durations",
    "flows",
    "free_port",
    "parse_flow",
    "port_stats",
    "sh",
    "unique_prefix",
    "wait_until",
    "wire",
]
