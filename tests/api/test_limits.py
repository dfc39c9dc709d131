"""The fixed-window counter behind the decision and link limits."""

from api.limits import FixedWindowCounter


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class TestFixedWindowCounter:
    def test_counts_each_key_within_its_window_then_starts_again(self) -> None:
        clock = Clock(1_000.0)
        counter = FixedWindowCounter(clock)
        hits = [counter.hit("decision:10.0.0.1", limit=2, window_seconds=60) for _ in range(3)]
        assert hits == [None, None, 20]  # the window of 960 to 1020 ends in 20 s
        assert counter.hit("decision:10.0.0.2", limit=2, window_seconds=60) is None
        assert counter.hit("link:10.0.0.1", limit=2, window_seconds=60) is None
        clock.now = 1_020.0
        assert counter.hit("decision:10.0.0.1", limit=2, window_seconds=60) is None

    def test_the_wait_is_at_least_a_second(self) -> None:
        clock = Clock(1_019.9)
        counter = FixedWindowCounter(clock)
        counter.hit("k", limit=1, window_seconds=60)
        assert counter.hit("k", limit=1, window_seconds=60) == 1
