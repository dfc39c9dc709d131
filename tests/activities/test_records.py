from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, col, select
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.email import EmailActivities
from activities.exchange import ExchangeActivities
from activities.records import RecordActivities, RecordEventInput, RecordEventOutput
from activities.types import RecordSurveyInput
from ce4big import tallies
from ce4big.domain import Party
from ce4big.models import (
    Exchange,
    ExchangeCandidate,
    ExchangeEvent,
    ExchangeStage,
    ReportFact,
    ReportTally,
    StageRollup,
    User,
)
from ce4big.rollup import StageFigures, rebuild
from ce4big.settings import Settings
from tests.exchange_world import PARTNER_ID, ExchangeWorld, add_exchange, add_world

AT = datetime(2031, 3, 4, 10, 30, tzinfo=UTC)


@pytest.fixture
def world(session: Session) -> ExchangeWorld:
    return add_world(session)


def record(db: Engine, data: RecordEventInput) -> RecordEventOutput:
    result: RecordEventOutput = ActivityEnvironment().run(RecordActivities(db).record_event, data)
    return result


def events(db: Engine, exchange_id: int) -> list[ExchangeEvent]:
    with Session(db) as session:
        return list(
            session.exec(select(ExchangeEvent).where(ExchangeEvent.exchange_id == exchange_id))
        )


def exchange(db: Engine, exchange_id: int) -> Exchange:
    with Session(db) as session:
        row = session.get(Exchange, exchange_id)
        assert row is not None
        return row


def naive(moment: datetime | None) -> datetime | None:
    """SQLite hands datetimes back without their zone; both databases store UTC."""
    return moment.replace(tzinfo=None) if moment is not None else None


class TestRecordEvent:
    def test_writes_the_event_and_moves_the_status(self, db: Engine, world: ExchangeWorld) -> None:
        result = record(
            db,
            RecordEventInput(
                exchange_id=world.exchange_id,
                event_key="exchange-1:3:vetting_approve",
                kind="vetting_approve",
                actor="broker@biowin.example",
                detail={"note": "fits the programme"},
                at=AT,
                status="matching",
            ),
        )

        assert result == RecordEventOutput(recorded=True)
        (event,) = events(db, world.exchange_id)
        assert (event.kind, event.actor, event.detail) == (
            "vetting_approve",
            "broker@biowin.example",
            {"note": "fits the programme"},
        )
        assert naive(event.at) == naive(AT)
        row = exchange(db, world.exchange_id)
        assert (row.status, row.outcome, row.closed_at) == ("matching", None, None)
        assert naive(row.updated_at) == naive(AT)

    def test_retry_with_the_same_key_writes_nothing(self, db: Engine, world: ExchangeWorld) -> None:
        first = RecordEventInput(
            exchange_id=world.exchange_id,
            event_key="exchange-1:4:shortlisted",
            kind="shortlisted",
            at=AT,
            status="host_review",
        )
        record(db, first)
        # A retry carries the same key; a different status proves it is not applied again.
        retried = RecordEventInput(
            exchange_id=world.exchange_id,
            event_key=first.event_key,
            kind="shortlisted",
            status="introduction",
            outcome="cancelled",
        )

        assert record(db, retried) == RecordEventOutput(recorded=False)
        assert len(events(db, world.exchange_id)) == 1
        row = exchange(db, world.exchange_id)
        assert (row.status, row.outcome) == ("host_review", None)

    def test_outcome_closes_the_exchange_once(self, db: Engine, world: ExchangeWorld) -> None:
        record(
            db,
            RecordEventInput(
                exchange_id=world.exchange_id,
                event_key="exchange-1:20:closed",
                kind="closed",
                at=AT,
                status="closed",
                outcome="completed",
                result="cooperation_possible",
            ),
        )

        row = exchange(db, world.exchange_id)
        assert (row.status, row.outcome, row.result) == (
            "closed",
            "completed",
            "cooperation_possible",
        )
        assert naive(row.closed_at) == naive(AT)

    def test_later_result_keeps_the_outcome_and_closing_time(
        self, db: Engine, world: ExchangeWorld
    ) -> None:
        record(
            db,
            RecordEventInput(
                exchange_id=world.exchange_id,
                event_key="exchange-1:20:closed",
                kind="closed",
                at=AT,
                status="closed",
                outcome="completed",
                result="informative_no_cooperation",
            ),
        )
        record(
            db,
            RecordEventInput(
                exchange_id=world.exchange_id,
                event_key="exchange-1:outcome_wave:recorded",
                kind="outcome_recorded",
                at=datetime(2031, 9, 1, tzinfo=UTC),
                result="agreement_reached",
                agreement_type="licensing",
            ),
        )

        row = exchange(db, world.exchange_id)
        assert (row.status, row.outcome, row.result, row.agreement_type) == (
            "closed",
            "completed",
            "agreement_reached",
            "licensing",
        )
        assert naive(row.closed_at) == naive(AT)
        assert [e.kind for e in events(db, world.exchange_id)] == ["closed", "outcome_recorded"]

    def test_unknown_exchange_fails_for_good(self, db: Engine) -> None:
        with pytest.raises(ApplicationError) as failure:
            record(db, RecordEventInput(exchange_id=999_999, event_key="x:1:submitted", kind="x"))

        assert (failure.value.type, failure.value.non_retryable) == ("UnknownExchange", True)


def stages(db: Engine, exchange_id: int) -> list[ExchangeStage]:
    with Session(db) as session:
        query = (
            select(ExchangeStage)
            .where(ExchangeStage.exchange_id == exchange_id)
            .order_by(col(ExchangeStage.id))
        )
        return list(session.exec(query))


def entry(world: ExchangeWorld, seq: int, stage: str, waiting_on: list[str]) -> RecordEventInput:
    return entry_of(world.exchange_id, seq, stage, waiting_on)


def entry_of(exchange_id: int, seq: int, stage: str, waiting_on: list[str]) -> RecordEventInput:
    return RecordEventInput(
        exchange_id=exchange_id,
        event_key=f"exchange-{exchange_id}:{seq}:stage_entered",
        kind="stage_entered",
        at=AT + timedelta(days=seq),
        status=stage,
        waiting_on=waiting_on,
        deadline=AT + timedelta(days=seq + 5),
    )


class TestStageSpells:
    def test_each_entry_ends_the_open_spell_and_opens_the_next_once(
        self, db: Engine, world: ExchangeWorld
    ) -> None:
        record(db, entry(world, 1, "vetting", ["home_broker"]))
        record(db, entry(world, 2, "scheduling", ["requester"]))
        record(db, entry(world, 2, "scheduling", ["requester"]))  # a retried attempt
        record(db, entry(world, 3, "scheduling", ["partner"]))

        rows = stages(db, world.exchange_id)
        assert [(r.stage, r.waiting_on) for r in rows] == [
            ("vetting", ["home_broker"]),
            ("scheduling", ["requester"]),
            ("scheduling", ["partner"]),
        ]
        assert [naive(r.left_at) for r in rows] == [
            naive(AT + timedelta(days=2)),
            naive(AT + timedelta(days=3)),
            None,
        ]
        assert naive(rows[-1].deadline_at) == naive(AT + timedelta(days=8))
        assert exchange(db, world.exchange_id).status == "scheduling"

    def test_closing_leaves_no_open_spell(self, db: Engine, world: ExchangeWorld) -> None:
        record(db, entry(world, 1, "vetting", ["home_broker"]))
        record(db, entry(world, 2, "closed", []))

        rows = stages(db, world.exchange_id)
        assert all(r.left_at is not None for r in rows)

    def test_an_event_that_is_no_entry_leaves_the_spells_alone(
        self, db: Engine, world: ExchangeWorld
    ) -> None:
        record(db, entry(world, 1, "vetting", ["home_broker"]))
        record(
            db,
            RecordEventInput(
                exchange_id=world.exchange_id,
                event_key="k:2:vetting_approve",
                kind="vetting_approve",
                status="vetting",
            ),
        )
        assert len(stages(db, world.exchange_id)) == 1


def rollup(db: Engine) -> dict[tuple[str, str, date, date], tuple[bytes, dict[str, float]]]:
    with Session(db) as session:
        return {
            (r.stage, r.home_cluster, r.submitted_month, r.left_month): (r.durations, r.waited)
            for r in session.exec(select(StageRollup))
        }


def added_up(db: Engine) -> StageFigures:
    figures = StageFigures()
    for (stage, *_), (durations, waited) in rollup(db).items():
        figures.add_row(stage, durations, waited)
    return figures


class TestStageRollup:
    def test_an_ended_spell_is_counted_once_as_a_rebuild_counts_it(
        self, db: Engine, world: ExchangeWorld
    ) -> None:
        record(db, entry(world, 1, "vetting", ["home_broker"]))
        record(db, entry(world, 2, "host_review", ["host_broker:biom", "host_broker:klsk"]))
        record(db, entry(world, 2, "host_review", ["host_broker:biom", "host_broker:klsk"]))
        record(db, entry(world, 4, "scheduling", ["requester", "partner:bm-cro"]))
        record(db, entry(world, 5, "closed", []))

        figures = added_up(db)
        assert {stage: (d.spells, d.percentile(0.5)) for stage, d in figures.durations.items()} == {
            "vetting": (1, 24.0),
            "host_review": (1, 48.0),
            "scheduling": (1, 24.0),
        }
        assert figures.waited == {
            Party.HOME_BROKER: 24.0,
            Party.HOST_BROKER: 48.0,
            Party.REQUESTER: 12.0,
            Party.PARTNER: 12.0,
        }
        kept = rollup(db)
        assert {month for *_, month in kept} == {date(2031, 3, 1)}
        with db.begin() as connection:
            rebuild(connection)
        assert rollup(db) == kept

    def test_transitions_at_once_lose_no_count(
        self, db: Engine, world: ExchangeWorld, session: Session
    ) -> None:
        # Exchanges of one cluster and month whose spells end in one month: one rollup row.
        requester = session.get(User, world.requester_id)
        assert requester is not None
        ids = [world.exchange_id, *(add_exchange(session, requester).id for _ in range(7))]
        session.commit()
        for exchange_id in ids:
            assert exchange_id is not None
            record(db, entry_of(exchange_id, 1, "vetting", ["home_broker"]))
        with ThreadPoolExecutor(len(ids)) as pool:
            list(pool.map(lambda i: record(db, entry_of(i, 2, "matching", ["home_broker"])), ids))
        assert len(rollup(db)) == 1
        assert added_up(db).durations["vetting"].spells == len(ids)


Facts = set[tuple[str, str, float, datetime | None, str, str]]
Tallies = dict[tuple[str, str, str, date, date], tuple[int, float]]


def facts(db: Engine) -> tuple[Facts, Tallies]:
    """The report facts (without their ids) and the tallies."""
    with Session(db) as session:
        kept = {
            (f.source, f.fact, f.value, naive(f.at), f.home_cluster, f.partner_cluster)
            for f in session.exec(select(ReportFact))
        }
        counted = {
            (t.fact, t.home_cluster, t.partner_cluster, t.submitted_month, t.month): (
                t.count,
                t.total,
            )
            for t in session.exec(select(ReportTally))
            if t.count
        }
    return kept, counted


class TestReportFacts:
    def test_the_activities_keep_the_facts_that_a_rebuild_finds(
        self, db: Engine, world: ExchangeWorld, session: Session, settings: Settings
    ) -> None:
        survey = ExchangeActivities(db, settings, EmailActivities(settings=settings, engine=db))

        # Days before now: the survey activity stamps its answers now.
        start = datetime.now(UTC) - timedelta(days=30)

        def event(seq: int, kind: str, **values: Any) -> None:
            record(
                db,
                RecordEventInput(
                    exchange_id=world.exchange_id,
                    event_key=f"k:{seq}:{kind}",
                    kind=kind,
                    at=start + timedelta(days=seq),
                    **values,
                ),
            )

        def answer(side: str, outcome: str, satisfaction: int, score: int) -> None:
            data = RecordSurveyInput(
                world.exchange_id, side, "survey", outcome, satisfaction, score
            )
            ActivityEnvironment().run(survey.record_survey, data)

        event(0, "submitted")
        event(1, "vetting_approve")
        event(2, "vetting_approve")  # approved again after a change: reached once
        session.add(
            ExchangeCandidate(
                exchange_id=world.exchange_id,
                organisation_id=PARTNER_ID,
                rank=1,
                score=1.0,
                intro_status="accepted",
            )
        )
        session.commit()
        event(3, "introduction_accepted")
        event(4, "meeting_held")
        answer("requester", "informative_no_cooperation", 2, 3)
        answer("requester", "cooperation_possible", 5, 10)  # answered again: replaces
        answer("partner", "cooperation_possible", 4, 7)
        event(5, "closed", status="closed", outcome="completed")
        event(31, "outcome_recorded", result="agreement_reached", agreement_type="licensing")

        kept, counted = facts(db)
        named = sorted(
            (source.split(":", 1)[1], fact, partner) for source, fact, *_, partner in kept
        )
        assert named == [
            ("closed", "closed:completed", "biom"),
            ("step:introduction_accepted", "step:introduction_accepted", "biom"),
            ("step:meeting_held", "step:meeting_held", "biom"),
            ("step:submitted", "step:submitted", ""),
            ("step:vetting_approve", "step:vetting_approve", ""),
            ("survey:partner", "recommend:passive", "biom"),
            ("survey:partner", "satisfaction", "biom"),
            ("survey:partner", "survey:partner:cooperation_possible", "biom"),
            ("survey:requester", "recommend:promoter", "biom"),
            ("survey:requester", "satisfaction", "biom"),
            ("survey:requester", "survey:requester:cooperation_possible", "biom"),
            ("wave", "agreement:licensing", "biom"),
            ("wave", "wave:agreement_reached", "biom"),
        ]
        assert sum(t for (fact, *_), (_, t) in counted.items() if fact == "satisfaction") == 9.0
        with db.begin() as connection:
            tallies.rebuild(connection)
        assert facts(db) == (kept, counted)
