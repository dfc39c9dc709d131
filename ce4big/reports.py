"""Programme figures from the recorded transitions (the exchange timeline), as they stood at the
end of a given day: what a funder or a cluster-label audit asks for."""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum

from sqlalchemy import Subquery
from sqlmodel import Session, col, func, select

from ce4big.catalogue.csvio import neutralise_formula
from ce4big.domain import Outcome, Role, Stage
from ce4big.errors import Forbidden
from ce4big.models import (
    Exchange,
    ExchangeCandidate,
    ExchangeEvent,
    ExchangeStage,
    Organisation,
    SurveyResponse,
    User,
)
from ce4big.visibility import visible_exchanges


class FunnelStep(StrEnum):
    SUBMITTED = "submitted"
    APPROVED = "approved"
    SHORTLISTED = "shortlisted"
    PARTNER_ACCEPTED = "partner_accepted"
    MEETING_SCHEDULED = "meeting_scheduled"
    MEETING_HELD = "meeting_held"
    SURVEY_ANSWERED = "survey_answered"
    COMPLETED = "completed"


# The timeline event that marks each step (completed is read from the closed exchange).
STEP_EVENTS: dict[FunnelStep, str] = {
    FunnelStep.SUBMITTED: "submitted",
    FunnelStep.APPROVED: "vetting_approve",
    FunnelStep.SHORTLISTED: "shortlisted",
    FunnelStep.PARTNER_ACCEPTED: "introduction_accepted",
    FunnelStep.MEETING_SCHEDULED: "meeting_scheduled",
    FunnelStep.MEETING_HELD: "meeting_held",
    FunnelStep.SURVEY_ANSWERED: "survey_answered",
}


@dataclass(frozen=True, slots=True)
class FunnelCount:
    step: FunnelStep
    count: int
    # Share of the previous step's exchanges that reached this one; None for the first.
    conversion: float | None


@dataclass(frozen=True, slots=True)
class Funnel:
    as_of: date
    steps: list[FunnelCount]


def start_of_day(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def end_of_day(day: date) -> datetime:
    return start_of_day(day + timedelta(days=1))


def _scope(
    user: User, *, cutoff: datetime, start: date | None, end: date | None, cluster: str | None
) -> Subquery:
    """The ids of the exchanges a report counts: the caller's (a broker: their own cluster's),
    submitted in [start, end] and before the cutoff."""
    if user.role not in (Role.MANAGER, Role.ADMIN, Role.BROKER):
        raise Forbidden("reports are for managers and brokers")
    scope = visible_exchanges(user).where(col(Exchange.created_at) < cutoff)
    if user.role == Role.BROKER:
        scope = scope.where(Exchange.home_cluster == user.cluster_id)
    if cluster is not None:
        scope = scope.where(Exchange.home_cluster == cluster)
    if start is not None:
        scope = scope.where(col(Exchange.created_at) >= start_of_day(start))
    if end is not None:
        scope = scope.where(col(Exchange.created_at) < end_of_day(end))
    return scope.with_only_columns(col(Exchange.id)).subquery()


def funnel(
    *,
    session: Session,
    user: User,
    as_of: date,
    start: date | None = None,
    end: date | None = None,
    cluster: str | None = None,
) -> Funnel:
    """Exchanges submitted in [start, end] (UTC days) of the caller's scope, counted at each
    step they had reached by the end of `as_of`. Managers see every cluster; a broker, the
    exchanges of their own cluster."""
    cutoff = end_of_day(as_of)
    ids = _scope(user, cutoff=cutoff, start=start, end=end, cluster=cluster)
    reached = dict(
        session.exec(
            select(ExchangeEvent.kind, func.count(func.distinct(ExchangeEvent.exchange_id)))
            .where(
                col(ExchangeEvent.kind).in_(STEP_EVENTS.values()),
                col(ExchangeEvent.at) < cutoff,
                col(ExchangeEvent.exchange_id).in_(select(ids.c.id)),
            )
            .group_by(ExchangeEvent.kind)
        ).all()
    )
    completed = session.exec(
        select(func.count())
        .select_from(Exchange)
        .where(
            col(Exchange.id).in_(select(ids.c.id)),
            Exchange.outcome == Outcome.COMPLETED,
            col(Exchange.closed_at) < cutoff,
        )
    ).one()
    counts = [int(reached.get(STEP_EVENTS[step], 0)) for step in STEP_EVENTS] + [int(completed)]
    steps = []
    for index, (step, count) in enumerate(zip(FunnelStep, counts, strict=True)):
        before = counts[index - 1] if index else None
        conversion = None if before is None else (round(count / before, 4) if before else 0.0)
        steps.append(FunnelCount(step=step, count=count, conversion=conversion))
    return Funnel(as_of=as_of, steps=steps)


class Party(StrEnum):
    """Whom a stage waits on, without the organisation or cluster it names."""

    REQUESTER = "requester"
    PARTNER = "partner"
    HOME_BROKER = "home_broker"
    HOST_BROKER = "host_broker"


@dataclass(frozen=True, slots=True)
class StageTime:
    stage: Stage
    spells: int
    median_hours: float
    p90_hours: float


@dataclass(frozen=True, slots=True)
class WaitingShare:
    party: Party
    share: float


@dataclass(frozen=True, slots=True)
class StageTimes:
    as_of: date
    stages: list[StageTime]
    waiting: list[WaitingShare]


def _percentile(values: list[float], fraction: float) -> float:
    """Linear interpolation between the closest ranks (as PostgreSQL's percentile_cont)."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _party(waiting_on: str) -> Party | None:
    try:
        return Party(waiting_on.split(":")[0])
    except ValueError:
        return None


def stage_times(
    *,
    session: Session,
    user: User,
    as_of: date,
    start: date | None = None,
    end: date | None = None,
    cluster: str | None = None,
) -> StageTimes:
    """How long the stages took (spells ended by the end of `as_of`; a stage entered again is
    another spell), median and 90th percentile in hours, and the share of the waiting time on
    each party (a spell that waits on two parties counts half for each)."""
    cutoff = end_of_day(as_of)
    ids = _scope(user, cutoff=cutoff, start=start, end=end, cluster=cluster)
    durations: dict[Stage, list[float]] = {}
    waited: dict[Party, float] = dict.fromkeys(Party, 0.0)
    for stage, waiting_on, entered_at, left_at in session.exec(
        select(
            ExchangeStage.stage,
            ExchangeStage.waiting_on,
            ExchangeStage.entered_at,
            ExchangeStage.left_at,
        ).where(
            col(ExchangeStage.exchange_id).in_(select(ids.c.id)),
            col(ExchangeStage.left_at).is_not(None),
            col(ExchangeStage.left_at) < cutoff,
        )
    ):
        assert left_at is not None
        hours = (left_at - entered_at).total_seconds() / 3600
        durations.setdefault(Stage(stage), []).append(hours)
        parties = [p for p in (_party(w) for w in waiting_on) if p is not None]
        for party in parties:
            waited[party] += hours / len(parties)
    total = sum(waited.values())
    return StageTimes(
        as_of=as_of,
        stages=[
            StageTime(
                stage=stage,
                spells=len(durations[stage]),
                median_hours=round(_percentile(durations[stage], 0.5), 2),
                p90_hours=round(_percentile(durations[stage], 0.9), 2),
            )
            for stage in Stage
            if stage in durations
        ],
        waiting=[
            WaitingShare(party=party, share=round(hours / total, 4) if total else 0.0)
            for party, hours in waited.items()
        ],
    )


# One row per exchange: the CSV of `GET /api/v1/reports/exchanges.csv` and `ce4big report csv`.
EXPORT_COLUMNS = (
    "exchange_id",
    "title",
    "home_cluster",
    "organisation_id",
    "organisation",
    "partner_organisation_id",
    "partner_organisation",
    "partner_cluster",
    "stage",
    "outcome",
    "result",
    "agreement_type",
    *(f"{step.value}_at" for step in STEP_EVENTS),
    "closed_at",
    "requester_survey_outcome",
    "requester_satisfaction",
    "requester_recommend",
    "partner_survey_outcome",
    "partner_satisfaction",
    "partner_recommend",
)
EXPORT_BATCH = 500


def _iso(value: datetime | None) -> str:
    if value is None:
        return ""
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


def export_rows(
    *, session: Session, user: User, start: date | None = None, end: date | None = None
) -> Iterator[list[str]]:
    """The exchanges the caller may see, submitted in [start, end], in batches (so a large
    export holds one batch in memory), oldest first; cells a spreadsheet would run as a formula
    are neutralised."""
    if user.role not in (Role.MANAGER, Role.ADMIN, Role.BROKER):
        raise Forbidden("reports are for managers and brokers")
    scope = visible_exchanges(user)
    if start is not None:
        scope = scope.where(col(Exchange.created_at) >= start_of_day(start))
    if end is not None:
        scope = scope.where(col(Exchange.created_at) < end_of_day(end))
    after = 0
    while True:
        batch = session.exec(
            scope.where(col(Exchange.id) > after).order_by(col(Exchange.id)).limit(EXPORT_BATCH)
        ).all()
        if not batch:
            return
        ids = [e.id for e in batch]
        after = max(i for i in ids if i is not None)
        firsts: dict[tuple[int, str], datetime] = {}
        for exchange_id, kind, at in session.exec(
            select(ExchangeEvent.exchange_id, ExchangeEvent.kind, func.min(ExchangeEvent.at))
            .where(
                col(ExchangeEvent.exchange_id).in_(ids),
                col(ExchangeEvent.kind).in_(STEP_EVENTS.values()),
            )
            .group_by(col(ExchangeEvent.exchange_id), col(ExchangeEvent.kind))
        ):
            firsts[(exchange_id, kind)] = at
        partners = {
            c.exchange_id: c
            for c in session.exec(
                select(ExchangeCandidate).where(
                    col(ExchangeCandidate.exchange_id).in_(ids),
                    ExchangeCandidate.intro_status == "accepted",
                )
            )
        }
        answers = {
            (s.exchange_id, s.respondent): s
            for s in session.exec(
                select(SurveyResponse).where(
                    col(SurveyResponse.exchange_id).in_(ids), SurveyResponse.wave == "survey"
                )
            )
        }
        wanted = {e.organisation_id for e in batch} | {c.organisation_id for c in partners.values()}
        names = {
            o.id: o
            for o in session.exec(select(Organisation).where(col(Organisation.id).in_(wanted)))
        }
        for exchange in batch:
            assert exchange.id is not None
            partner = partners.get(exchange.id)
            partner_org = names.get(partner.organisation_id) if partner else None
            home_org = names.get(exchange.organisation_id or "")
            row: list[object] = [
                exchange.id,
                exchange.title,
                exchange.home_cluster,
                exchange.organisation_id or "",
                home_org.name if home_org else "",
                partner.organisation_id if partner else "",
                partner_org.name if partner_org else "",
                partner_org.cluster_id if partner_org else "",
                exchange.status,
                exchange.outcome or "",
                exchange.result or "",
                exchange.agreement_type or "",
                *(_iso(firsts.get((exchange.id, kind))) for kind in STEP_EVENTS.values()),
                _iso(exchange.closed_at),
            ]
            for side in ("requester", "partner"):
                answer = answers.get((exchange.id, side))
                row += (
                    [answer.outcome, answer.satisfaction, answer.recommend]
                    if answer
                    else ["", "", ""]
                )
            yield [neutralise_formula("" if cell is None else str(cell)) for cell in row]
