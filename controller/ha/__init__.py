"""High availability: several controller instances, one leader, OpenFlow roles to fence.

With ``controller.coordination`` (a tooz backend URL) every instance
connects to every switch. :mod:`controller.ha.elector` runs for leader
through tooz on a thread of its own and holds a *lease*: the leader acts
only while its last successful heartbeat is recent enough that the
coordination service cannot have elected another. :mod:`controller.ha.roles`
is the pure state machine of this instance's OpenFlow role on each switch
(OpenFlow 1.3.5 §6.3.5 "Role Request", §7.3.9 "Role Request Message"): the
leader claims ``MASTER`` with a generation id that only grows, the others
are ``SLAVE``, and a claim the switch refuses as stale demotes the instance
at once. The shim (:mod:`controller.app`) sends what they decide and writes
to a switch only where :meth:`Roles.writable` and the lease allow.

HA keeps no state of its own: a new leader rebuilds from each switch's flow
dump through the same adoption path as a controller restart
(:meth:`controller.core.Core.reconcile`).
"""
