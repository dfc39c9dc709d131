"""What the funnel, the cluster matrix and the outcomes count, kept as it happens: a fact for
each thing counted (ReportFact) and the facts added up by month (ReportTally), written in the
transaction of what they count. A report adds up whole months from the tallies and the rest from
the facts (ce4big/reports.py), so its cost no longer grows with the number of exchanges.

Facts are named `kind:detail`: `step:<event kind>` (the first time an exchange reached a step of
the funnel), `closed:<outcome>`, `survey:<side>:<answer>`, `satisfaction` (its value the score),
`recommend:<promoter|passive|detractor>`, `wave:<result>` and `agreement:<type>` (the outcome
wave). Each source (one per exchange and thing counted) holds the facts of its latest version:
an exchange reaches a step once, a survey answer given again replaces the earlier one."""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, delete, insert
from sqlalchemy import select as sa_select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, func, select

from ce4big.domain import FunnelStep, WaveOutcome
from ce4big.models import (
    Exchange,
    ExchangeCandidate,
    ExchangeEvent,
    Organisation,
    ReportFact,
    ReportTally,
    SurveyResponse,
)
from ce4big.rollup import month_of

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
# The event that records the outcome wave's result on the exchange (its result, agreement type).
WAVE_EVENT = "outcome_recorded"
SATISFACTION = "satisfaction"
ACCEPTED = STEP_EVENTS[FunnelStep.PARTNER_ACCEPTED]


def step(kind: str) -> str:
    return f"step:{kind}"


def closed(outcome: str) -> str:
    return f"closed:{outcome}"


def survey(side: str, answer: str) -> str:
    return f"survey:{side}:{answer}"


def recommend(score: int) -> str:
    if score >= 9:
        return "recommend:promoter"
    return "recommend:detractor" if score <= 6 else "recommend:passive"


def wave(result: str) -> str:
    return f"wave:{result}"


def agreement(kind: str) -> str:
    return f"agreement:{kind}"


@dataclass(frozen=True, slots=True)
class Fact:
    name: str
    value: float = 0.0


def step_source(exchange_id: int, kind: str) -> str:
    return f"{exchange_id}:step:{kind}"


def closed_source(exchange_id: int) -> str:
    return f"{exchange_id}:closed"


def wave_source(exchange_id: int) -> str:
    return f"{exchange_id}:wave"


def survey_source(exchange_id: int, side: str) -> str:
    return f"{exchange_id}:survey:{side}"


def wave_facts(result: str | None, agreement_type: str | None) -> list[Fact]:
    if result is None:
        return []
    facts = [Fact(wave(result))]
    if result == WaveOutcome.AGREEMENT_REACHED and agreement_type:
        facts.append(Fact(agreement(agreement_type)))
    return facts


def survey_facts(side: str, answer: str, satisfaction: int | None, score: int | None) -> list[Fact]:
    facts = [Fact(survey(side, answer))]
    if satisfaction is not None:
        facts.append(Fact(SATISFACTION, satisfaction))
    if score is not None:
        facts.append(Fact(recommend(score)))
    return facts


def has_facts(session: Session, source: str) -> bool:
    return (
        session.exec(select(ReportFact.id).where(ReportFact.source == source)).first() is not None
    )


def partner_cluster(session: Session, exchange_id: int) -> str:
    """The cluster of the partner who accepted the introduction, "" while none has."""
    found = session.exec(
        select(Organisation.cluster_id)
        .join(ExchangeCandidate, col(ExchangeCandidate.organisation_id) == Organisation.id)
        .where(
            ExchangeCandidate.exchange_id == exchange_id,
            ExchangeCandidate.intro_status == "accepted",
        )
    ).first()
    return found or ""


def set_facts(
    session: Session, *, source: str, exchange: Exchange, at: datetime, facts: Iterable[Fact]
) -> None:
    """The facts of `source` are now `facts` (none before, the first time), and the tallies move
    with them, in the caller's transaction."""
    assert exchange.id is not None
    for old in session.exec(select(ReportFact).where(ReportFact.source == source)).all():
        _tally(session, old, -1)
        session.delete(old)
    partner = partner_cluster(session, exchange.id)
    for fact in facts:
        row = ReportFact(
            source=source,
            exchange_id=exchange.id,
            fact=fact.name,
            value=fact.value,
            at=at,
            home_cluster=exchange.home_cluster,
            partner_cluster=partner,
            submitted_at=exchange.created_at,
        )
        session.add(row)
        _tally(session, row, 1)


def _tally(session: Session, fact: ReportFact, sign: int) -> None:
    """Adds `fact` to its tally (sign 1) or takes it away (-1), atomically."""
    dialect = session.get_bind().dialect.name
    statement = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(ReportTally)
    statement = statement.values(
        fact=fact.fact,
        home_cluster=fact.home_cluster,
        partner_cluster=fact.partner_cluster,
        submitted_month=month_of(fact.submitted_at),
        month=month_of(fact.at),
        count=sign,
        total=sign * fact.value,
    )
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["fact", "home_cluster", "partner_cluster", "submitted_month", "month"],
            set_={
                "count": ReportTally.count + statement.excluded.count,
                "total": ReportTally.total + statement.excluded.total,
            },
        )
    )


# ---------------------------------------------------------------- from the recorded rows


def _backfilled(connection: Connection) -> Iterable[dict[str, object]]:
    """The facts of every exchange, from its timeline, its closing and its survey answers."""
    exchanges = {
        row.id: row
        for row in connection.execute(
            sa_select(
                col(Exchange.id),
                col(Exchange.home_cluster),
                col(Exchange.created_at),
                col(Exchange.outcome),
                col(Exchange.closed_at),
                col(Exchange.result),
                col(Exchange.agreement_type),
            )
        )
    }
    partners = dict(
        connection.execute(
            sa_select(col(ExchangeCandidate.exchange_id), col(Organisation.cluster_id))
            .join(Organisation, col(Organisation.id) == ExchangeCandidate.organisation_id)
            .where(col(ExchangeCandidate.intro_status) == "accepted")
        ).all()
    )
    firsts = sa_select(
        col(ExchangeEvent.exchange_id), col(ExchangeEvent.kind), func.min(ExchangeEvent.at)
    ).group_by(col(ExchangeEvent.exchange_id), col(ExchangeEvent.kind))
    reached: dict[int, dict[str, datetime]] = {}
    for exchange_id, kind, at in connection.execute(
        firsts.where(col(ExchangeEvent.kind).in_([*STEP_EVENTS.values(), WAVE_EVENT]))
    ):
        reached.setdefault(exchange_id, {})[kind] = at
    lasts = dict(
        connection.execute(
            sa_select(col(ExchangeEvent.exchange_id), func.max(ExchangeEvent.at))
            .where(col(ExchangeEvent.kind) == WAVE_EVENT)
            .group_by(col(ExchangeEvent.exchange_id))
        ).all()
    )

    def rows(
        exchange_id: int, source: str, at: datetime, facts: list[Fact]
    ) -> list[dict[str, object]]:
        exchange = exchanges[exchange_id]
        accepted = reached.get(exchange_id, {}).get(ACCEPTED)
        partner = partners.get(exchange_id, "") if accepted is not None and at >= accepted else ""
        return [
            {
                "source": source,
                "exchange_id": exchange_id,
                "fact": fact.name,
                "value": fact.value,
                "at": at,
                "home_cluster": exchange.home_cluster,
                "partner_cluster": partner,
                "submitted_at": exchange.created_at,
            }
            for fact in facts
        ]

    for exchange_id, kinds in reached.items():
        for kind, at in kinds.items():
            if kind != WAVE_EVENT:
                yield from rows(exchange_id, step_source(exchange_id, kind), at, [Fact(step(kind))])
    for exchange_id, exchange in exchanges.items():
        if exchange.outcome is not None and exchange.closed_at is not None:
            facts = [Fact(closed(exchange.outcome))]
            yield from rows(exchange_id, closed_source(exchange_id), exchange.closed_at, facts)
        if exchange_id in lasts:
            facts = wave_facts(exchange.result, exchange.agreement_type)
            yield from rows(exchange_id, wave_source(exchange_id), lasts[exchange_id], facts)
    for answer in connection.execute(
        sa_select(
            col(SurveyResponse.exchange_id),
            col(SurveyResponse.respondent),
            col(SurveyResponse.outcome),
            col(SurveyResponse.satisfaction),
            col(SurveyResponse.recommend),
            col(SurveyResponse.at),
        ).where(col(SurveyResponse.wave) == "survey")
    ):
        facts = survey_facts(
            answer.respondent, answer.outcome, answer.satisfaction, answer.recommend
        )
        source = survey_source(answer.exchange_id, answer.respondent)
        yield from rows(answer.exchange_id, source, answer.at, facts)


def rebuild(connection: Connection) -> int:
    """The facts and the tallies again from the recorded rows (the migration that adds them, a
    database loaded without the activities): returns the facts written."""
    connection.execute(delete(ReportTally))
    connection.execute(delete(ReportFact))
    tallies: dict[tuple[str, str, str, object, object], list[float]] = {}
    batch: list[dict[str, object]] = []
    written = 0
    for fact in _backfilled(connection):
        key = (
            str(fact["fact"]),
            str(fact["home_cluster"]),
            str(fact["partner_cluster"]),
            month_of(fact["submitted_at"]),  # type: ignore[arg-type]
            month_of(fact["at"]),  # type: ignore[arg-type]
        )
        held = tallies.setdefault(key, [0, 0.0])
        held[0] += 1
        held[1] += float(fact["value"])  # type: ignore[arg-type]
        batch.append(fact)
        if len(batch) == 5000:
            connection.execute(insert(ReportFact), batch)
            written += len(batch)
            batch = []
    if batch:
        connection.execute(insert(ReportFact), batch)
        written += len(batch)
    rows = [
        {
            "fact": fact,
            "home_cluster": home,
            "partner_cluster": partner,
            "submitted_month": submitted,
            "month": month,
            "count": int(count),
            "total": total,
        }
        for (fact, home, partner, submitted, month), (count, total) in tallies.items()
    ]
    for start in range(0, len(rows), 5000):
        connection.execute(insert(ReportTally), rows[start : start + 5000])
    return written
