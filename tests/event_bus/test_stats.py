"""The throttled log line: bursts each logged, floods counted, the count said on the next line;
the count of rejections bounded whatever channels garbage arrives on."""

from __future__ import annotations

from structlog.testing import capture_logs

from event_bus.stats import OTHER_CHANNELS, REJECTED_CHANNELS_KEPT, BusStats, ThrottledLog


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_is_logged_a_flood_counted_and_the_count_reported_later() -> None:
    clock = Clock()
    throttled = ThrottledLog("event_rejected", per_second=2.0, burst=3, clock=clock)
    with capture_logs() as logs:
        for n in range(10):
            throttled(n=n)
        assert [log["n"] for log in logs] == [0, 1, 2]
        assert throttled.suppressed == 7
        clock.now += 0.4  # 0.8 of a line earned back: still nothing
        throttled(n=10)
        clock.now += 0.1
        throttled(n=11)
        clock.now += 60.0  # refills to the burst, not beyond
        for n in range(12, 17):
            throttled(n=n)
    assert [log["n"] for log in logs] == [0, 1, 2, 11, 12, 13, 14]
    assert logs[3]["suppressed_since_last"] == 8
    assert logs[4].get("suppressed_since_last") is None
    assert logs[3]["log_level"] == "warning"
    assert throttled.suppressed == 2


def test_rejections_on_ever_new_channels_are_counted_without_growing_the_counter() -> None:
    stats = BusStats()
    for n in range(REJECTED_CHANNELS_KEPT + 500):
        stats.count_rejected(f"trading:signal:JUNK{n}")
    total = stats.count_rejected("trading:signal:JUNK0")  # a channel already kept

    assert total == REJECTED_CHANNELS_KEPT + 501
    assert len(stats.rejected) == REJECTED_CHANNELS_KEPT + 1
    assert stats.rejected["trading:signal:JUNK0"] == 2
    assert stats.rejected[OTHER_CHANNELS] == 500
    assert sum(stats.rejected.values()) == stats.rejected_total
