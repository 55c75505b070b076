"""A token bucket driven by a clock passed in."""

from __future__ import annotations


class TokenBucket:
    """Allows ``rate`` events per second on average, bursts up to ``burst``."""

    def __init__(self, rate: float, burst: float | None = None) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate)
        self.tokens = self.burst
        self.last: float | None = None

    def take(self, now: float) -> bool:
        """Spend one token at time ``now``; False when the bucket is empty."""
        if self.last is not None:
            self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False
