"""Activities that write the SQL read model: transitions and the exchange timeline."""

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select
from temporalio import activity
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError
from temporalio.workflow import ActivityConfig

from ce4big.db import session_scope
from ce4big.domain import Outcome, Stage
from ce4big.models import Exchange, ExchangeEvent, ExchangeStage, utcnow
from ce4big.rollup import add_ended_spell, ending
from ce4big.tallies import (
    STEP_EVENTS,
    WAVE_EVENT,
    Fact,
    closed,
    closed_source,
    has_facts,
    set_facts,
    step,
    step_source,
    wave_facts,
    wave_source,
)


@dataclass(frozen=True)
class RecordEventInput:
    exchange_id: int
    event_key: str
    kind: str
    actor: str = "system"
    detail: dict[str, Any] = field(default_factory=dict)
    at: datetime | None = None
    status: str | None = None
    outcome: str | None = None
    result: str | None = None
    agreement_type: str | None = None
    # Set when the event is the entry into a stage (`status`): the stage read model gets a row.
    waiting_on: list[str] | None = None
    deadline: datetime | None = None


@dataclass(frozen=True)
class RecordEventOutput:
    recorded: bool


# How the workflows call record_event; the other bookkeeping activities share these options.
RECORD_EVENT_OPTIONS = ActivityConfig(
    start_to_close_timeout=timedelta(seconds=30),
    retry_policy=RetryPolicy(
        maximum_interval=timedelta(minutes=1), non_retryable_error_types=["UnknownExchange"]
    ),
)


class RecordActivities:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @activity.defn(name="record_event")
    def record_event(self, data: RecordEventInput) -> RecordEventOutput:
        """Append one timeline event and move the exchange's status, once per event key."""
        try:
            with session_scope(self._engine) as session:
                if session.exec(
                    select(ExchangeEvent.id).where(ExchangeEvent.event_key == data.event_key)
                ).first():
                    return RecordEventOutput(recorded=False)
                exchange = session.get(Exchange, data.exchange_id)
                if exchange is None:
                    raise ApplicationError(
                        f"exchange {data.exchange_id} does not exist",
                        type="UnknownExchange",
                        non_retryable=True,
                    )
                at = data.at or utcnow()
                session.add(
                    ExchangeEvent(
                        exchange_id=data.exchange_id,
                        event_key=data.event_key,
                        at=at,
                        kind=data.kind,
                        actor=data.actor,
                        detail=data.detail,
                    )
                )
                if data.status is not None:
                    exchange.status = Stage(data.status)
                if data.status is not None and data.waiting_on is not None:
                    _enter_stage(session, exchange, data, at)
                if data.result is not None:
                    exchange.result = data.result
                    exchange.agreement_type = data.agreement_type
                was_closed = exchange.closed_at is not None
                if data.outcome is not None:
                    exchange.outcome = Outcome(data.outcome)
                    exchange.closed_at = exchange.closed_at or at
                _count(session, exchange, data, at, closing=not was_closed)
                exchange.updated_at = at
                session.add(exchange)
        except IntegrityError:
            # A concurrent attempt with the same key won the insert: the event is recorded.
            return RecordEventOutput(recorded=False)
        return RecordEventOutput(recorded=True)


def _count(
    session: Session, exchange: Exchange, data: RecordEventInput, at: datetime, *, closing: bool
) -> None:
    """What the event adds to the programme figures (ce4big/tallies.py): the first arrival at a
    step, the closing, the outcome wave's result (the latest)."""
    assert exchange.id is not None
    counted: list[tuple[str, list[Fact]]] = []
    if data.kind in STEP_KINDS:
        source = step_source(exchange.id, data.kind)
        if not has_facts(session, source):
            counted.append((source, [Fact(step(data.kind))]))
    if data.outcome is not None and closing:
        counted.append((closed_source(exchange.id), [Fact(closed(data.outcome))]))
    if data.kind == WAVE_EVENT:
        facts = wave_facts(exchange.result, exchange.agreement_type)
        counted.append((wave_source(exchange.id), facts))
    for source, facts in counted:
        set_facts(session, source=source, exchange=exchange, at=at, facts=facts)


STEP_KINDS = frozenset(STEP_EVENTS.values())


def _enter_stage(
    session: Session, exchange: Exchange, data: RecordEventInput, at: datetime
) -> None:
    """Ends the exchange's open stage spell (counted in the stage-time rollup) and opens the
    next, in the event's transaction (so the event key's uniqueness makes it happen once)."""
    assert data.status is not None and data.waiting_on is not None
    for spell in session.exec(
        select(ExchangeStage).where(
            col(ExchangeStage.exchange_id) == data.exchange_id,
            col(ExchangeStage.left_at).is_(None),
        )
    ).all():
        for name, value in ending(spell.entered_at, at, spell.waiting_on).items():
            setattr(spell, name, value)
        session.add(spell)
        add_ended_spell(session, exchange=exchange, spell=spell)
    session.add(
        ExchangeStage(
            exchange_id=data.exchange_id,
            stage=Stage(data.status),
            waiting_on=list(data.waiting_on),
            entered_at=at,
            # A closed exchange waits on nobody and has no next stage.
            **(ending(at, at, []) if data.status == Stage.CLOSED else {}),
            deadline_at=data.deadline,
        )
    )
