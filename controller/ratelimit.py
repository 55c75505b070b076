"""Rate limits toward the controller: a token bucket driven by a clock passed in, and how the
datapath's limits are sized from ``controller.packet_in_rate``.

One number, ``packet_in_rate`` (packet-ins per second per switch), sizes every
stage a packet-in passes, so they agree and none of them is the bottleneck
of a burst the others admit:

1. the packet-in meter on the learn table's controller output (OpenFlow 1.3.5
   §7.3.4.5 ``OFPMF_PKTPS | OFPMF_BURST``): rate ``packet_in_rate``, burst
   :func:`meter_burst` packets;
2. ovs-vswitchd's queue toward the controller, ``Controller:controller_queue_size``
   (ovs-vswitchd.conf.db(5): packets, 1-512, default 100), set by
   ``vmn provision`` to :func:`controller_queue_size`;
3. the controller's own token bucket (:class:`TokenBucket`), rate and burst
   as the meter's.
"""

from __future__ import annotations

OVS_QUEUE_MIN = 1
OVS_QUEUE_MAX = 512
"""Bounds of ``Controller:controller_queue_size`` (ovs-vswitchd.conf.db(5))."""
OVS_QUEUE_DEFAULT = 100
BURST_SECONDS = 1.0
"""How many seconds of ``packet_in_rate`` the meter and the bucket admit at once."""


def meter_burst(rate: int) -> int:
    """Burst size (packets) of the packet-in meter for ``rate`` packet-ins/s: one second's worth.

    A burst of new hosts (VMs booting together, a host reconnecting) then
    reaches the controller at once instead of a tenth of it per burst.

    Raises ValueError if ``rate`` < 1.
    """
    if rate < 1:
        raise ValueError(f"packet_in_rate must be at least 1, got {rate}")
    return max(1, int(rate * BURST_SECONDS))


def controller_queue_size(rate: int) -> int:
    """``controller_queue_size`` for ``rate`` packet-ins/s: the meter's burst, within OVS's 1-512.

    Never below OVS's default (100). Raises ValueError if ``rate`` < 1.
    """
    return min(OVS_QUEUE_MAX, max(OVS_QUEUE_DEFAULT, meter_burst(rate)))


class TokenBucket:
    """Allows ``rate`` events per second on average, bursts up to ``burst`` (default :func:`meter_burst`)."""

    def __init__(self, rate: float, burst: float | None = None) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate * BURST_SECONDS)
        self.tokens = self.burst
        self.last: float | None = None

    def take(self, now: float) -> bool:
        """Spend one token at time ``now`` (seconds); False when the bucket is empty."""
        if self.last is not None:
            self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False
