from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.records import RecordActivities, RecordEventInput, RecordEventOutput
from ce4big.models import Exchange, ExchangeEvent
from tests.exchange_world import ExchangeWorld, add_world

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
