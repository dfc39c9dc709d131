"""Stage times at programme scale: every finished stage spell counted once more in a histogram of
durations, by stage, home cluster, month of submission and month the spell ended (StageRollup).

The record activity adds a spell when it ends, in the transition's transaction, so the rollup is
exactly as current as the spells. A report reads whole months from the rollup (a few thousand rows
at 100,000 exchanges) and the rest from the spells themselves: those of the month its as-of day
falls in, and those of exchanges submitted in a month its period covers in part. Both parts are
histograms with the same buckets, so a percentile is read the same way from either."""

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import numpy as np
from sqlalchemy import Connection, bindparam, delete, insert, update
from sqlalchemy import select as sa_select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, SQLModel, col, select

from ce4big.domain import Party, Stage
from ce4big.models import Exchange, ExchangeStage, StageRollup, as_utc

# A bucket holds the durations within 4 % of each other; a percentile is the mean of the spells
# of the bucket its rank falls in, so it is exact when they are equal and within 4 % otherwise.
BUCKET_RATIO = 1.04
_LOG_RATIO = math.log(BUCKET_RATIO)
# Under a minute is bucket 0; the last bucket starts at about twelve years.
BUCKETS = 400
# A stored histogram: the first bucket and the number of buckets (unsigned 16-bit each), then as
# many spell counts (signed 32-bit) and hour sums (64-bit floats), little-endian. Packed rather
# than JSON: a report adds up thousands of them, and decoding them is a copy.
_HEADER = np.dtype("<u2")
_COUNT = np.dtype("<i4")
_HOURS = np.dtype("<f8")


def bucket_of(hours: float) -> int:
    minutes = hours * 60
    if minutes < 1:
        return 0
    return min(BUCKETS - 1, 1 + int(math.log(minutes) / _LOG_RATIO))


def month_of(moment: datetime) -> date:
    return as_utc(moment).date().replace(day=1)


def spell_hours(entered_at: datetime, left_at: datetime) -> float:
    return max(0.0, (as_utc(left_at) - as_utc(entered_at)).total_seconds() / 3600)


def parties(waiting_on: Iterable[str]) -> list[Party]:
    """The parties a spell waited on ("partner:12" is the partner), unknown names left out."""
    found = []
    for name in waiting_on:
        try:
            found.append(Party(name.split(":")[0]))
        except ValueError:
            continue
    return found


class Durations:
    """The durations of one stage's spells as a histogram: spells and hours per bucket."""

    def __init__(self) -> None:
        self.counts = np.zeros(BUCKETS, dtype=np.int64)
        self.hours = np.zeros(BUCKETS, dtype=np.float64)

    @property
    def spells(self) -> int:
        return int(self.counts.sum())

    def add(self, bucket: int, spells: int, hours: float) -> None:
        self.counts[bucket] += spells
        self.hours[bucket] += hours

    def merge(self, packed: bytes) -> None:
        if not packed:
            return
        first, length = (int(n) for n in np.frombuffer(packed, _HEADER, 2))
        counts = np.frombuffer(packed, _COUNT, length, 2 * _HEADER.itemsize)
        hours = np.frombuffer(packed, _HOURS, length, 2 * _HEADER.itemsize + length * 4)
        self.counts[first : first + length] += counts
        self.hours[first : first + length] += hours

    def packed(self) -> bytes:
        used = np.flatnonzero(self.counts)
        first, end = (int(used[0]), int(used[-1]) + 1) if used.size else (0, 0)
        return b"".join(
            (
                np.array([first, end - first], _HEADER).tobytes(),
                self.counts[first:end].astype(_COUNT).tobytes(),
                self.hours[first:end].astype(_HOURS).tobytes(),
            )
        )

    def percentile(self, fraction: float) -> float:
        """Linear interpolation between the closest ranks (as PostgreSQL's percentile_cont),
        each rank read as the mean of its bucket."""
        spells = self.spells
        position = (spells - 1) * fraction
        low = int(position)
        low_value = self._at_rank(low)
        high_value = self._at_rank(min(low + 1, spells - 1))
        return low_value + (high_value - low_value) * (position - low)

    def _at_rank(self, rank: int) -> float:
        bucket = int(np.searchsorted(np.cumsum(self.counts), rank, side="right"))
        return float(self.hours[bucket] / self.counts[bucket])


@dataclass
class StageFigures:
    """What the stage-time report adds up: durations per stage, hours waited per party (a spell
    waiting on two parties counts half for each)."""

    durations: dict[str, Durations] = field(default_factory=dict)
    waited: dict[Party, float] = field(default_factory=lambda: dict.fromkeys(Party, 0.0))

    def add_spell(self, stage: str, waiting_on: Iterable[str], hours: float) -> None:
        self.durations.setdefault(stage, Durations()).add(bucket_of(hours), 1, hours)
        self.add_waiting(waiting_on, hours)

    def add_waiting(self, waiting_on: Iterable[str], hours: float) -> None:
        named = parties(waiting_on)
        for party in named:
            self.waited[party] += hours / len(named)

    def add_row(self, stage: str, durations: bytes, waited: Mapping[str, float]) -> None:
        self.durations.setdefault(stage, Durations()).merge(durations)
        for party, hours in waited.items():
            self.waited[Party(party)] += hours


def ending(entered_at: datetime, left_at: datetime, waiting_on: Iterable[str]) -> dict[str, Any]:
    """The columns of a spell that ends at `left_at`."""
    hours = spell_hours(entered_at, left_at)
    return {
        "left_at": left_at,
        "hours": hours,
        "bucket": bucket_of(hours),
        # The parties it waited on, without the organisation or cluster each names: few
        # distinct values, so that a report adds up the waiting time by them in SQL.
        "parties": " ".join(sorted(parties(waiting_on))),
    }


def _insert_missing(session: Session, key: dict[str, Any]) -> None:
    """The rollup row of `key`, inserted unless there (safe against a concurrent insert)."""
    dialect = session.get_bind().dialect.name
    statement = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(StageRollup)
    session.execute(statement.values(**key, durations=b"", waited={}).on_conflict_do_nothing())


def add_ended_spell(session: Session, *, exchange: Exchange, spell: ExchangeStage) -> None:
    """Counts `spell`, which has just ended, in the rollup (in the caller's transaction; the row
    stays locked until it commits, so two transitions never lose each other's count). A closed
    exchange's last spell is no stage anyone waits in: not counted."""
    if spell.stage == Stage.CLOSED or spell.left_at is None or spell.hours is None:
        return
    key = {
        "stage": str(spell.stage),
        "home_cluster": exchange.home_cluster,
        "submitted_month": month_of(exchange.created_at),
        "left_month": month_of(spell.left_at),
    }
    _insert_missing(session, key)
    row = session.exec(
        select(StageRollup)
        .where(*(getattr(StageRollup, name) == value for name, value in key.items()))
        .with_for_update()
    ).one()
    figures = StageFigures()
    figures.add_row(row.stage, row.durations, row.waited)
    figures.add_spell(row.stage, spell.waiting_on, spell.hours)
    _store(row, figures)
    session.add(row)


def _store(row: StageRollup, figures: StageFigures) -> None:
    row.durations = figures.durations[row.stage].packed()
    row.waited = {str(party): hours for party, hours in figures.waited.items() if hours}


def backfill_spells(connection: Connection) -> int:
    """Hours and bucket for the ended spells recorded before they were kept: returns how many."""
    table = SQLModel.metadata.tables["exchangestage"]
    ended = sa_select(table.c.id, table.c.entered_at, table.c.left_at, table.c.waiting_on).where(
        table.c.left_at.is_not(None), table.c.hours.is_(None)
    )
    kept = ("spell", "hours", "bucket", "parties")
    rows = [
        {"spell": spell, **ending(entered_at, left_at, waiting_on)}
        for spell, entered_at, left_at, waiting_on in connection.execute(ended)
    ]
    change = (
        update(table)
        .where(table.c.id == bindparam("spell"))
        .values(**{name: bindparam(name) for name in kept[1:]})
    )
    for start in range(0, len(rows), 5000):
        connection.execute(change, [{k: r[k] for k in kept} for r in rows[start : start + 5000]])
    return len(rows)


def rebuild(connection: Connection) -> int:
    """The rollup again from every ended spell (the migration that adds it, a database loaded
    without the record activity): returns the rows written."""
    spells = (
        sa_select(
            col(ExchangeStage.stage),
            col(ExchangeStage.waiting_on),
            col(ExchangeStage.hours),
            col(ExchangeStage.left_at),
            col(Exchange.home_cluster),
            col(Exchange.created_at),
        )
        .join(Exchange, col(Exchange.id) == ExchangeStage.exchange_id)
        .where(col(ExchangeStage.hours).is_not(None), col(ExchangeStage.stage) != Stage.CLOSED)
    )
    groups: dict[tuple[str, str, date, date], StageFigures] = {}
    for stage, waiting_on, hours, left_at, home, created_at in connection.execute(
        spells.execution_options(yield_per=10_000)
    ):
        assert left_at is not None and hours is not None
        key = (str(stage), home, month_of(created_at), month_of(left_at))
        groups.setdefault(key, StageFigures()).add_spell(str(stage), waiting_on, hours)
    connection.execute(delete(StageRollup))
    rows = []
    for (name, home, submitted, left), figures in groups.items():
        row = StageRollup(stage=name, home_cluster=home, submitted_month=submitted, left_month=left)
        _store(row, figures)
        rows.append(row.model_dump())
    for start in range(0, len(rows), 1000):
        connection.execute(insert(StageRollup), rows[start : start + 1000])
    return len(rows)
