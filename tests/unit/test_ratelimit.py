"""How packet_in_rate sizes the meter burst, OVS's controller queue and the controller's bucket."""

from __future__ import annotations

import pytest

from controller.ratelimit import TokenBucket, controller_queue_size, meter_burst


def test_meter_burst_is_one_second_of_the_rate() -> None:
    assert [meter_burst(r) for r in (1, 200, 1000, 1_000_000)] == [1, 200, 1000, 1_000_000]


def test_controller_queue_follows_the_burst_within_ovs_bounds() -> None:
    assert [controller_queue_size(r) for r in (1, 100, 150, 512, 1000, 1_000_000)] == [100, 100, 150, 512, 512, 512]


@pytest.mark.parametrize("fn", [meter_burst, controller_queue_size])
def test_a_rate_below_one_is_refused_by_name(fn: object) -> None:
    with pytest.raises(ValueError, match="packet_in_rate must be at least 1, got 0"):
        fn(0)  # type: ignore[operator]


def test_bucket_admits_a_burst_of_one_second_then_the_rate() -> None:
    bucket = TokenBucket(100)
    assert sum(bucket.take(0.0) for _ in range(150)) == 100  # a burst of 150 at once: one second's worth
    assert sum(bucket.take(0.5) for _ in range(100)) == 50  # half a second later: half the rate refilled
