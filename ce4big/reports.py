"""Programme figures from the recorded transitions (the exchange timeline), as they stood at the
end of a given day: what a funder or a cluster-label audit asks for."""

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy import Subquery
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, func, select
from sqlmodel.sql.expression import Select, SelectOfScalar

from ce4big.catalogue.csvio import neutralise_formula
from ce4big.domain import (
    CooperationType,
    FunnelStep,
    Outcome,
    Party,
    Role,
    Stage,
    SurveyOutcome,
    WaveOutcome,
)
from ce4big.errors import Forbidden
from ce4big.models import (
    Exchange,
    ExchangeCandidate,
    ExchangeEvent,
    ExchangeStage,
    Organisation,
    ReportFact,
    ReportTally,
    StageRollup,
    SurveyResponse,
    User,
    as_utc,
)
from ce4big.rollup import Durations, StageFigures
from ce4big.tallies import (
    SATISFACTION,
    STEP_EVENTS,
    WAVE_EVENT,
    agreement,
    closed,
    recommend,
    step,
    survey,
    wave,
)
from ce4big.visibility import visible_exchanges


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


@dataclass(frozen=True, slots=True)
class ReportScope:
    """Which exchanges a report counts (submitted in [start, end], UTC days; of a home cluster;
    introduced to a partner of a partner cluster) and the day whose end its figures stand at."""

    as_of: date
    start: date | None = None
    end: date | None = None
    home: str | None = None
    partner: str | None = None

    @property
    def cutoff(self) -> datetime:
        return end_of_day(self.as_of)


def require_reader(user: User) -> None:
    if user.role not in (Role.MANAGER, Role.ADMIN, Role.BROKER):
        raise Forbidden("reports are for managers and brokers")


def reached(kind: str, cutoff: datetime) -> SelectOfScalar[int]:
    """The exchanges whose timeline has an event of `kind` before the cutoff."""
    return select(ExchangeEvent.exchange_id).where(
        ExchangeEvent.kind == kind, col(ExchangeEvent.at) < cutoff
    )


def _accepted_partners() -> Select[int, str]:
    """Each exchange's partner: the organisation that accepted the introduction, by cluster."""
    return (
        select(ExchangeCandidate.exchange_id, Organisation.cluster_id)
        .join(Organisation, col(Organisation.id) == ExchangeCandidate.organisation_id)
        .where(ExchangeCandidate.intro_status == "accepted")
    )


def _submitted(user: User, scope: ReportScope) -> SelectOfScalar[Exchange]:
    """The exchanges of the caller's reports (a broker: their own cluster's) that the scope
    selects, whatever the day of its figures."""
    require_reader(user)
    query = visible_exchanges(user)
    if user.role == Role.BROKER:
        query = query.where(Exchange.home_cluster == user.cluster_id)
    if scope.home is not None:
        query = query.where(Exchange.home_cluster == scope.home)
    if scope.start is not None:
        query = query.where(col(Exchange.created_at) >= start_of_day(scope.start))
    if scope.end is not None:
        query = query.where(col(Exchange.created_at) < end_of_day(scope.end))
    if scope.partner is not None:
        partners = _accepted_partners().subquery()
        query = query.where(
            col(Exchange.id).in_(
                select(partners.c.exchange_id).where(partners.c.cluster_id == scope.partner)
            )
        )
    return query


def scoped(user: User, scope: ReportScope) -> Subquery:
    """The ids of the exchanges a report counts: submitted before the cutoff and, with a
    partner cluster, introduced to that cluster's partner before it."""
    query = _submitted(user, scope).where(col(Exchange.created_at) < scope.cutoff)
    if scope.partner is not None:
        query = query.where(
            col(Exchange.id).in_(reached(STEP_EVENTS[FunnelStep.PARTNER_ACCEPTED], scope.cutoff))
        )
    return query.with_only_columns(col(Exchange.id)).subquery()


def _everything(user: User, scope: ReportScope) -> bool:
    """A manager's report over every exchange: then a figure needs no list of ids, since an
    event, a spell or an answer before the cutoff belongs to an exchange submitted before it."""
    unfiltered = (scope.start, scope.end, scope.home, scope.partner) == (None, None, None, None)
    return unfiltered and user.role in (Role.MANAGER, Role.ADMIN)


def in_scope(column: Any, user: User, scope: ReportScope) -> list[Any]:
    """The condition that `column` (an exchange id) is one the report counts."""
    if _everything(user, scope):
        require_reader(user)
        return []
    return [col(column).in_(select(scoped(user, scope).c.id))]


@dataclass
class Tally:
    """The scope's facts (ce4big/tallies.py) that happened by the cutoff, added up by fact, home
    cluster and partner cluster: [count, total]."""

    added: dict[tuple[str, str, str], list[float]] = field(default_factory=dict)

    def add(self, fact: str, home: str, partner: str, count: float, total: float) -> None:
        held = self.added.setdefault((fact, home, partner), [0, 0.0])
        held[0] += count
        held[1] += total

    def count(self, fact: str) -> int:
        return int(sum(c for (name, *_), (c, _) in self.added.items() if name == fact))

    def total(self, fact: str) -> float:
        return sum(t for (name, *_), (_, t) in self.added.items() if name == fact)

    def by_clusters(self, fact: str) -> dict[tuple[str, str], int]:
        """Home cluster and partner cluster -> count, for the facts of an accepted partner."""
        return {
            (home, partner): int(c)
            for (name, home, partner), (c, _) in self.added.items()
            if name == fact and partner and c
        }


def _add_facts(session: Session, found: Tally, *conditions: Any) -> None:
    """Adds up the facts that `conditions` select, in SQL."""
    fact, home, partner = (
        col(ReportFact.fact),
        col(ReportFact.home_cluster),
        col(ReportFact.partner_cluster),
    )
    for name, cluster, partner_cluster, count, total in session.execute(
        sa_select(fact, home, partner, func.count(), func.sum(ReportFact.value))
        .where(*conditions)
        .group_by(fact, home, partner)
    ):
        found.add(name, cluster, partner_cluster, count, total or 0.0)


def _submitted_between(scope: ReportScope) -> list[Any]:
    conditions = []
    if scope.start is not None:
        conditions.append(col(ReportFact.submitted_at) >= start_of_day(scope.start))
    if scope.end is not None:
        conditions.append(col(ReportFact.submitted_at) < end_of_day(scope.end))
    return conditions


def tally(*, session: Session, user: User, scope: ReportScope) -> Tally:
    """The scope's facts by the cutoff: whole months from the tallies, the rest from the facts
    (those of the as-of day's month, those of exchanges submitted in a month the period covers
    in part). With a partner cluster, every fact of the exchanges introduced to it (a fact's
    partner is known only from the acceptance on, the funnel's first steps have none)."""
    found = Tally()
    cutoff = scope.cutoff
    if scope.partner is not None:
        _add_facts(
            session,
            found,
            col(ReportFact.at) < cutoff,
            *in_scope(ReportFact.exchange_id, user, scope),
        )
        return found
    require_reader(user)
    whole = _in_whole_months(
        user,
        scope,
        month=ReportTally.month,
        submitted=ReportTally.submitted_month,
        home=ReportTally.home_cluster,
    )
    fact, home, partner = (
        col(ReportTally.fact),
        col(ReportTally.home_cluster),
        col(ReportTally.partner_cluster),
    )
    for name, cluster, partner_cluster, count, total in session.execute(
        sa_select(fact, home, partner, func.sum(ReportTally.count), func.sum(ReportTally.total))
        .where(*whole)
        .group_by(fact, home, partner)
    ):
        found.add(name, cluster, partner_cluster, count or 0, total or 0.0)
    homes = _homes(ReportFact.home_cluster, user, scope)
    month_start = start_of_day(scope.as_of.replace(day=1))
    _add_facts(
        session,
        found,
        col(ReportFact.at) >= month_start,
        col(ReportFact.at) < cutoff,
        *homes,
        *_submitted_between(scope),
    )
    for part in _whole_months(scope)[2]:
        _add_facts(
            session,
            found,
            col(ReportFact.at) < month_start,
            *homes,
            *_submitted_between(part),
        )
    return found


def funnel(
    *, session: Session, user: User, scope: ReportScope, counted: Tally | None = None
) -> Funnel:
    """Exchanges of the scope counted at each step they had reached by the cutoff, with the
    conversion from the step before."""
    found = counted or tally(session=session, user=user, scope=scope)
    counts = [found.count(step(kind)) for kind in STEP_EVENTS.values()]
    counts.append(found.count(closed(Outcome.COMPLETED)))
    steps = []
    for index, (funnel_step, count) in enumerate(zip(FunnelStep, counts, strict=True)):
        before = counts[index - 1] if index else None
        steps.append(FunnelCount(step=funnel_step, count=count, conversion=_share(count, before)))
    return Funnel(as_of=scope.as_of, steps=steps)


def _share(part: int, whole: int | None) -> float | None:
    if whole is None:
        return None
    return round(part / whole, 4) if whole else 0.0


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


def _month_after(month: date) -> date:
    return (month + timedelta(days=32)).replace(day=1)


def _whole_months(scope: ReportScope) -> tuple[date | None, date | None, list[ReportScope]]:
    """The submission months the scope's period covers whole, as [first, end) (None: unbounded),
    and the scopes of the days it covers in part (none, one or two)."""
    first = None
    if scope.start is not None:
        first = scope.start if scope.start.day == 1 else _month_after(scope.start)
    end = None
    if scope.end is not None:
        end = (scope.end + timedelta(days=1)).replace(day=1)
    if first is not None and end is not None and first >= end:
        return first, first, [scope]
    partial = []
    if scope.start is not None and first is not None and scope.start < first:
        partial.append(replace(scope, end=first - timedelta(days=1)))
    if scope.end is not None and end is not None and end <= scope.end:
        partial.append(replace(scope, start=end))
    return first, end, partial


def _homes(column: Any, user: User, scope: ReportScope) -> list[Any]:
    """The home cluster a broker's report, and the scope, are limited to."""
    conditions = []
    if user.role == Role.BROKER:
        conditions.append(col(column) == user.cluster_id)
    if scope.home is not None:
        conditions.append(col(column) == scope.home)
    return conditions


def _in_whole_months(
    user: User, scope: ReportScope, *, month: Any, submitted: Any, home: Any
) -> list[Any]:
    """The rows of a rollup (by `month` it happened, `submitted` month, `home` cluster) that a
    report reads whole: before the as-of day's month, of the months its period covers whole, of
    the reader's and the scope's home cluster."""
    first, end, _ = _whole_months(scope)
    conditions = [col(month) < scope.as_of.replace(day=1), *_homes(home, user, scope)]
    if first is not None:
        conditions.append(col(submitted) >= first)
    if end is not None:
        conditions.append(col(submitted) < end)
    return conditions


def _add_spells(session: Session, figures: StageFigures, *conditions: Any) -> None:
    """Adds up the ended spells that `conditions` select, in SQL."""
    chosen = (
        col(ExchangeStage.hours).is_not(None),
        col(ExchangeStage.stage) != Stage.CLOSED,
        *conditions,
    )
    stage, bucket, named = (
        col(ExchangeStage.stage),
        col(ExchangeStage.bucket),
        col(ExchangeStage.parties),
    )
    for name, number, waited_on, spells, spent in session.execute(
        sa_select(stage, bucket, named, func.count(), func.sum(ExchangeStage.hours))
        .where(*chosen)
        .group_by(stage, bucket, named)
    ):
        figures.durations.setdefault(str(name), Durations()).add(number or 0, spells, spent or 0.0)
        figures.add_waiting((waited_on or "").split(), spent or 0.0)


def _stage_figures(session: Session, user: User, scope: ReportScope) -> StageFigures:
    """The spells of the scope that ended by the cutoff, added up: whole months from the rollup,
    the rest from the spells (those of the as-of day's month, those of exchanges submitted in a
    month the period covers in part). A partner cluster is no dimension of the rollup (an
    exchange has its partner only from the acceptance on): then every spell is read."""
    figures = StageFigures()
    cutoff = scope.cutoff
    if scope.partner is not None:
        _add_spells(
            session,
            figures,
            col(ExchangeStage.left_at) < cutoff,
            *in_scope(ExchangeStage.exchange_id, user, scope),
        )
        return figures
    require_reader(user)
    whole = _in_whole_months(
        user,
        scope,
        month=StageRollup.left_month,
        submitted=StageRollup.submitted_month,
        home=StageRollup.home_cluster,
    )
    rows = select(StageRollup.stage, StageRollup.durations, StageRollup.waited).where(*whole)
    for stage, durations, waited in session.exec(rows):
        figures.add_row(stage, durations, waited)
    month_start = start_of_day(scope.as_of.replace(day=1))
    _add_spells(
        session,
        figures,
        col(ExchangeStage.left_at) >= month_start,
        col(ExchangeStage.left_at) < cutoff,
        *in_scope(ExchangeStage.exchange_id, user, scope),
    )
    for part in _whole_months(scope)[2]:
        _add_spells(
            session,
            figures,
            col(ExchangeStage.left_at) < month_start,
            *in_scope(ExchangeStage.exchange_id, user, part),
        )
    return figures


def stage_times(*, session: Session, user: User, scope: ReportScope) -> StageTimes:
    """How long the stages took (spells ended by the cutoff; a stage entered again is another
    spell), median and 90th percentile in hours (read from a histogram whose buckets are 4 %
    wide: exact when a bucket's spells are equal, within 4 % otherwise), and the share of the
    waiting time on each party (a spell that waits on two parties counts half for each)."""
    figures = _stage_figures(session, user, scope)
    total = sum(figures.waited.values())
    return StageTimes(
        as_of=scope.as_of,
        stages=[
            StageTime(
                stage=stage,
                spells=durations.spells,
                median_hours=round(durations.percentile(0.5), 2),
                p90_hours=round(durations.percentile(0.9), 2),
            )
            for stage in Stage
            if (durations := figures.durations.get(stage.value)) is not None and durations.spells
        ],
        waiting=[
            WaitingShare(party=party, share=round(hours / total, 4) if total else 0.0)
            for party, hours in figures.waited.items()
        ],
    )


# ---------------------------------------------------------------- work overdue now


@dataclass(frozen=True, slots=True)
class OverdueItem:
    exchange_id: int
    title: str
    home_cluster: str
    stage: Stage
    waiting_on: list[str]
    deadline: datetime


def overdue(
    *, session: Session, user: User, scope: ReportScope, now: datetime, limit: int = 25
) -> tuple[list[OverdueItem], int]:
    """Open stages past their deadline now (of the scope's exchanges, whatever its as-of day),
    the oldest deadline first, and how many there are in all."""
    chosen = (
        []
        if _everything(user, scope)
        else [
            col(ExchangeStage.exchange_id).in_(
                select(_submitted(user, scope).with_only_columns(col(Exchange.id)).subquery().c.id)
            )
        ]
    )
    past_deadline = (
        col(ExchangeStage.left_at).is_(None),
        col(ExchangeStage.deadline_at) <= now,
        *chosen,
    )
    total = session.exec(
        select(func.count()).select_from(ExchangeStage).where(*past_deadline)
    ).one()
    late = (
        select(ExchangeStage, Exchange)
        .join(Exchange, col(Exchange.id) == ExchangeStage.exchange_id)
        .where(*past_deadline)
    )
    items = []
    for spell, exchange in session.exec(
        late.order_by(col(ExchangeStage.deadline_at), col(ExchangeStage.id)).limit(limit)
    ):
        assert exchange.id is not None and spell.deadline_at is not None
        items.append(
            OverdueItem(
                exchange_id=exchange.id,
                title=exchange.title,
                home_cluster=exchange.home_cluster,
                stage=Stage(spell.stage),
                waiting_on=list(spell.waiting_on),
                deadline=as_utc(spell.deadline_at),
            )
        )
    return items, int(total)


# ---------------------------------------------------------------- home cluster to partner cluster


@dataclass(frozen=True, slots=True)
class MatrixCell:
    home: str
    partner: str
    introductions: int
    meetings_held: int
    cooperation_possible: int


MATRIX_FACTS = {
    "introductions": step(STEP_EVENTS[FunnelStep.PARTNER_ACCEPTED]),
    "meetings_held": step(STEP_EVENTS[FunnelStep.MEETING_HELD]),
    "cooperation_possible": survey("requester", SurveyOutcome.COOPERATION_POSSIBLE),
}


def cluster_matrix(
    *, session: Session, user: User, scope: ReportScope, counted: Tally | None = None
) -> list[MatrixCell]:
    """For each home cluster and the cluster of the partner who accepted the introduction
    (by the cutoff): introductions, meetings held, and requesters who answered that a
    cooperation is possible."""
    found = counted or tally(session=session, user=user, scope=scope)
    cells: dict[tuple[str, str], dict[str, int]] = {}
    for measure, fact in MATRIX_FACTS.items():
        for (home, partner), count in found.by_clusters(fact).items():
            cells.setdefault((home, partner), {})[measure] = count
    return [
        MatrixCell(
            home=home,
            partner=partner,
            introductions=counts.get("introductions", 0),
            meetings_held=counts.get("meetings_held", 0),
            cooperation_possible=counts.get("cooperation_possible", 0),
        )
        for (home, partner), counts in sorted(cells.items())
    ]


# ---------------------------------------------------------------- outcomes


@dataclass(frozen=True, slots=True)
class Outcomes:
    # Closed exchanges by how they ended.
    closed: dict[Outcome, int]
    # Survey answers by side (requester, partner) and answer.
    survey: dict[str, dict[SurveyOutcome, int]]
    answers: int
    mean_satisfaction: float | None
    # Share of 9 and 10 minus share of 0 to 6 among the answers that gave a score (-1 to 1).
    recommend_score: float | None
    recommend_answers: int
    # The outcome wave months later: how far each exchange got, and the agreements by type.
    wave: dict[WaveOutcome, int]
    agreements: dict[CooperationType, int]


SIDES = ("requester", "partner")


def outcomes(
    *, session: Session, user: User, scope: ReportScope, counted: Tally | None = None
) -> Outcomes:
    found = counted or tally(session=session, user=user, scope=scope)
    answered = {side: {a: found.count(survey(side, a)) for a in SurveyOutcome} for side in SIDES}
    scored = found.count(SATISFACTION)
    promoters, detractors = found.count(recommend(10)), found.count(recommend(0))
    recommending = promoters + detractors + found.count(recommend(7))
    wave_results = {result: found.count(wave(result)) for result in WaveOutcome}
    return Outcomes(
        closed={outcome: found.count(closed(outcome)) for outcome in Outcome},
        survey=answered,
        answers=sum(sum(s.values()) for s in answered.values()),
        mean_satisfaction=round(found.total(SATISFACTION) / scored, 2) if scored else None,
        recommend_score=(
            round((promoters - detractors) / recommending, 4) if recommending else None
        ),
        recommend_answers=recommending,
        wave=wave_results,
        agreements={kind: found.count(agreement(kind)) for kind in CooperationType},
    )


# ---------------------------------------------------------------- submissions per week


@dataclass(frozen=True, slots=True)
class WeekCount:
    week: date  # its Monday
    count: int


MAX_WEEKS = 104


def weekly_submissions(
    *, session: Session, user: User, scope: ReportScope, weeks: int = 26
) -> list[WeekCount]:
    """Submissions per week (Monday to Sunday, UTC) over the period, or over the `weeks`
    weeks up to the as-of day without one (at most two years)."""
    last = min(scope.end or scope.as_of, scope.as_of)
    last_monday = last - timedelta(days=last.weekday())
    first_monday = last_monday - timedelta(weeks=weeks - 1)
    if scope.start is not None:
        first_monday = max(
            scope.start - timedelta(days=scope.start.weekday()),
            last_monday - timedelta(weeks=MAX_WEEKS - 1),
        )
    since = max(start_of_day(first_monday), start_of_day(scope.start or first_monday))
    day = func.date(Exchange.created_at)
    counts = dict.fromkeys(
        (
            first_monday + timedelta(weeks=w)
            for w in range((last_monday - first_monday).days // 7 + 1)
        ),
        0,
    )
    window = (
        _submitted(user, scope)
        .where(col(Exchange.created_at) >= since, col(Exchange.created_at) < end_of_day(last))
        .with_only_columns(day, func.count())
        .group_by(day)
    )
    for submitted_on, count in session.execute(window):
        on = submitted_on if isinstance(submitted_on, date) else date.fromisoformat(submitted_on)
        monday = on - timedelta(days=on.weekday())
        if monday in counts:
            counts[monday] += int(count)
    return [WeekCount(week=monday, count=count) for monday, count in counts.items()]


# ---------------------------------------------------------------- the exchanges behind a figure


class FigureKind(StrEnum):
    STEP = "step"  # reached a funnel step
    SPELL = "spell"  # spent a (finished) spell in a stage
    OUTCOME = "outcome"  # closed with an outcome
    SURVEY = "survey"  # a side answered the survey so: "requester:cooperation_possible"
    WAVE = "wave"  # the outcome wave's result
    AGREEMENT = "agreement"  # an agreement of a type reached


@dataclass(frozen=True, slots=True)
class Figure:
    kind: FigureKind
    value: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.value}"

    @classmethod
    def parse(cls, text: str) -> "Figure | None":
        """`kind:value` as the dashboard links write it; None for anything else."""
        kind, _, value = text.partition(":")
        allowed: dict[str, set[str]] = {
            FigureKind.STEP: set(FunnelStep),
            FigureKind.SPELL: set(Stage),
            FigureKind.OUTCOME: set(Outcome),
            FigureKind.SURVEY: {f"{side}:{answer}" for side in SIDES for answer in SurveyOutcome},
            FigureKind.WAVE: set(WaveOutcome),
            FigureKind.AGREEMENT: set(CooperationType),
        }
        if kind not in allowed or value not in allowed[kind]:
            return None
        return cls(FigureKind(kind), value)


def _fact_of(figure: Figure) -> str:
    """The report fact (ce4big/tallies.py) that a figure other than a stage counts."""
    match figure.kind:
        case FigureKind.STEP if figure.value == FunnelStep.COMPLETED:
            return closed(Outcome.COMPLETED)
        case FigureKind.STEP:
            return step(STEP_EVENTS[FunnelStep(figure.value)])
        case FigureKind.OUTCOME:
            return closed(figure.value)
        case FigureKind.SURVEY:
            return survey(*figure.value.split(":"))
        case FigureKind.WAVE:
            return wave(figure.value)
        case _:
            return agreement(figure.value)


def figure_exchanges(user: User, scope: ReportScope, figure: Figure) -> SelectOfScalar[Any]:
    """The ids of the exchanges a figure of the reports counts, from what the figure counts."""
    ids = select(scoped(user, scope).c.id)
    cutoff = scope.cutoff
    query: SelectOfScalar[Any]
    if figure.kind == FigureKind.SPELL:
        query = select(ExchangeStage.exchange_id).where(
            ExchangeStage.stage == figure.value, col(ExchangeStage.left_at) < cutoff
        )
    else:
        query = select(ReportFact.exchange_id).where(
            ReportFact.fact == _fact_of(figure), col(ReportFact.at) < cutoff
        )
    return query.where(col(query.selected_columns[0]).in_(ids))


# ---------------------------------------------------------------- completed exchanges

E = TypeVar("E", bound=StrEnum)


@dataclass(frozen=True, slots=True)
class CompletedExchange:
    exchange_id: int
    title: str
    home_cluster: str
    organisation: str
    partner: str
    partner_cluster: str
    closed_at: datetime
    # The requester's survey answer, and the outcome wave's result with its agreement type.
    survey: SurveyOutcome | None
    wave: WaveOutcome | None
    agreement_type: CooperationType | None


def completed_exchanges(
    *, session: Session, user: User, scope: ReportScope, limit: int = 500
) -> list[CompletedExchange]:
    """The exchanges of the scope completed by the cutoff, in the order they closed."""
    ids = figure_exchanges(user, scope, Figure(FigureKind.STEP, FunnelStep.COMPLETED))
    exchanges = session.exec(
        select(Exchange)
        .where(col(Exchange.id).in_(ids))
        .order_by(col(Exchange.closed_at), col(Exchange.id))
        .limit(limit)
    ).all()
    wanted = [e.id for e in exchanges]
    partners = {
        exchange_id: (name, cluster)
        for exchange_id, name, cluster in session.exec(
            select(ExchangeCandidate.exchange_id, Organisation.name, Organisation.cluster_id)
            .join(Organisation, col(Organisation.id) == ExchangeCandidate.organisation_id)
            .where(
                col(ExchangeCandidate.exchange_id).in_(wanted),
                ExchangeCandidate.intro_status == "accepted",
            )
        )
    }
    homes = dict(
        session.exec(
            select(Organisation.id, Organisation.name).where(
                col(Organisation.id).in_({e.organisation_id for e in exchanges})
            )
        ).all()
    )
    answers = dict(
        session.exec(
            select(SurveyResponse.exchange_id, SurveyResponse.outcome).where(
                col(SurveyResponse.exchange_id).in_(wanted),
                SurveyResponse.wave == "survey",
                SurveyResponse.respondent == "requester",
                col(SurveyResponse.at) < scope.cutoff,
            )
        ).all()
    )
    waved = set(
        session.exec(
            reached(WAVE_EVENT, scope.cutoff).where(col(ExchangeEvent.exchange_id).in_(wanted))
        )
    )
    rows = []
    for exchange in exchanges:
        assert exchange.id is not None and exchange.closed_at is not None
        partner, partner_cluster = partners.get(exchange.id, ("", ""))
        result = exchange.result if exchange.id in waved else None
        rows.append(
            CompletedExchange(
                exchange_id=exchange.id,
                title=exchange.title,
                home_cluster=exchange.home_cluster,
                organisation=homes.get(exchange.organisation_id or "", ""),
                partner=partner,
                partner_cluster=partner_cluster,
                closed_at=as_utc(exchange.closed_at),
                survey=_member(SurveyOutcome, answers.get(exchange.id)),
                wave=_member(WaveOutcome, result),
                agreement_type=(
                    _member(CooperationType, exchange.agreement_type)
                    if result == WaveOutcome.AGREEMENT_REACHED
                    else None
                ),
            )
        )
    return rows


def _member(vocabulary: type[E], value: str | None) -> E | None:
    try:
        return vocabulary(value) if value is not None else None
    except ValueError:
        return None


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
EXPORT_BATCH = 2000
EXPORTED = (
    "id",
    "title",
    "home_cluster",
    "organisation_id",
    "status",
    "outcome",
    "result",
    "agreement_type",
    "closed_at",
)


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
    require_reader(user)
    scope = visible_exchanges(user)
    if start is not None:
        scope = scope.where(col(Exchange.created_at) >= start_of_day(start))
    if end is not None:
        scope = scope.where(col(Exchange.created_at) < end_of_day(end))
    # The columns of the file, not the descriptions.
    columns = scope.with_only_columns(*(col(getattr(Exchange, name)) for name in EXPORTED))
    steps = {step(kind): kind for kind in STEP_EVENTS.values()}
    after = 0
    while True:
        batch = session.execute(
            columns.where(col(Exchange.id) > after).order_by(col(Exchange.id)).limit(EXPORT_BATCH)
        ).all()
        if not batch:
            return
        ids = [e.id for e in batch]
        after = ids[-1]
        # When each step was first reached: the report facts hold it (ce4big/tallies.py).
        firsts: dict[tuple[int, str], datetime] = {}
        for exchange_id, fact, at in session.exec(
            select(ReportFact.exchange_id, ReportFact.fact, ReportFact.at).where(
                col(ReportFact.exchange_id).in_(ids), col(ReportFact.fact).in_(steps)
            )
        ):
            firsts[(exchange_id, steps[fact])] = at
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
