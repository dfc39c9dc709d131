import random

import numpy as np
import pytest

from ce4big.rollup import BUCKET_RATIO, BUCKETS, Durations, StageFigures, bucket_of


def histogram(hours: list[float]) -> Durations:
    durations = Durations()
    for value in hours:
        durations.add(bucket_of(value), 1, value)
    return durations


class TestDurations:
    def test_under_a_minute_is_the_first_bucket_and_decades_the_last(self) -> None:
        assert bucket_of(0.0) == bucket_of(0.5 / 60) == 0
        assert bucket_of(1 / 60) == 1
        assert bucket_of(24 * 365 * 100) == BUCKETS - 1

    @pytest.mark.parametrize("seed", range(5))
    def test_percentiles_are_within_a_bucket_of_the_exact_ones(self, seed: int) -> None:
        rng = random.Random(seed)
        hours = [rng.lognormvariate(3, 1.5) for _ in range(rng.randrange(1, 3000))]
        durations = histogram(hours)
        for fraction in (0.0, 0.5, 0.9, 1.0):
            exact = float(np.percentile(hours, fraction * 100))
            assert durations.percentile(fraction) == pytest.approx(exact, rel=BUCKET_RATIO - 1)

    def test_equal_durations_read_back_exactly(self) -> None:
        assert histogram([24.0, 48.0]).percentile(0.5) == 36.0
        assert histogram([7.25] * 3 + [100.0]).percentile(0.5) == 7.25

    def test_a_packed_histogram_adds_up_as_the_spells(self) -> None:
        rng = random.Random(7)
        first, second = ([rng.uniform(0, 500) for _ in range(200)] for _ in range(2))
        merged = histogram(first)
        merged.merge(histogram(second).packed())
        merged.merge(Durations().packed())
        both = histogram(first + second)
        assert np.array_equal(merged.counts, both.counts)
        assert np.allclose(merged.hours, both.hours)

    def test_waiting_on_two_parties_counts_half_for_each(self) -> None:
        figures = StageFigures()
        figures.add_spell("scheduling", ["requester", "partner:bm-cro"], 10.0)
        figures.add_spell("host_review", ["host_broker:biom", "host_broker:klsk"], 4.0)
        assert {str(p): h for p, h in figures.waited.items() if h} == {
            "requester": 5.0,
            "partner": 5.0,
            "host_broker": 4.0,
        }
