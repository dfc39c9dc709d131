"""Exchanges with hand-built timelines and known timestamps, for the report tests: four
exchanges in BioWin and BioM, one completed with its survey and outcome wave."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import Session, select

from ce4big import tallies
from ce4big.domain import CooperationType, Outcome, Stage, SurveyOutcome, WaveOutcome
from ce4big.models import (
    Exchange,
    ExchangeCandidate,
    ExchangeEvent,
    ExchangeStage,
    SurveyResponse,
    utcnow,
)
from tests.factories import add_organisation, user_with_token

DAY0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
# The events each exchange reached, as days after DAY0.
TIMELINES: dict[str, list[tuple[str, int]]] = {
    # biowin: one completed, one stopped after approval, one rejected
    "completed": [
        ("submitted", 0),
        ("vetting_approve", 1),
        ("shortlisted", 3),
        ("introduction_accepted", 6),
        ("meeting_scheduled", 8),
        ("meeting_held", 20),
        ("survey_answered", 30),
    ],
    "approved": [("submitted", 2), ("vetting_approve", 4)],
    "rejected": [("submitted", 5), ("vetting_reject", 6)],
    # biom: accepted by a partner, not further
    "elsewhere": [
        ("submitted", 1),
        ("vetting_approve", 2),
        ("shortlisted", 3),
        ("introduction_accepted", 9),
    ],
}
EVIL = '=HYPERLINK("http://evil.example")'
HOMES = {"completed": "biowin", "approved": "biowin", "rejected": "biowin", "elsewhere": "biom"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def report_tokens(session: Session) -> dict[str, str]:
    add_organisation(session, "bw-sme", "biowin", country="BE")
    add_organisation(session, "bm-sme", "biom", country="DE")
    sme, sme_token = user_with_token(session, "sme@bw.example", "sme", organisation="bw-sme")
    assert sme.id is not None
    for name, events in TIMELINES.items():
        created = DAY0 + timedelta(days=events[0][1])
        exchange = Exchange(
            title=f"Exchange {name}",
            description="A request built by hand for the report tests.",
            requester_id=sme.id,
            organisation_id="bw-sme" if HOMES[name] == "biowin" else "bm-sme",
            home_cluster=HOMES[name],
            cooperation_type=CooperationType.SERVICE_AGREEMENT,
            status=Stage.CLOSED if name in ("completed", "rejected") else Stage.MATCHING,
            outcome={"completed": Outcome.COMPLETED, "rejected": Outcome.REJECTED}.get(name),
            created_at=created,
            closed_at=DAY0 + timedelta(days=31) if name == "completed" else None,
        )
        session.add(exchange)
        session.flush()
        assert exchange.id is not None
        for kind, day in events:
            session.add(
                ExchangeEvent(
                    exchange_id=exchange.id,
                    event_key=f"{exchange.id}:{kind}",
                    kind=kind,
                    at=DAY0 + timedelta(days=day, hours=1),
                )
            )
    count_for_reports(session)
    return {
        "sme": sme_token,
        "manager": user_with_token(session, "m@ce4big.example", "manager")[1],
        "broker": user_with_token(session, "b@bw.example", "broker", cluster="biowin")[1],
    }


@pytest.fixture
def followed_up(report_tokens: dict[str, str], session: Session) -> dict[str, str]:
    """The completed exchange met a BioM partner, both sides answered the survey and, months
    later, reported a licence; "elsewhere" met a BioWin partner; two stages are open, one
    past its deadline."""
    add_organisation(session, "bm-cro", "biom", kind="cro", country="DE")
    add_organisation(session, "bw-cro", "biowin", kind="cro", country="BE")
    by_title = {e.title: e for e in session.exec(select(Exchange))}
    completed = by_title["Exchange completed"]
    elsewhere = by_title["Exchange elsewhere"]
    approved = by_title["Exchange approved"]
    assert completed.id and elsewhere.id and approved.id
    for exchange_id, partner in ((completed.id, "bm-cro"), (elsewhere.id, "bw-cro")):
        session.add(
            ExchangeCandidate(
                exchange_id=exchange_id,
                organisation_id=partner,
                rank=1,
                score=1.0,
                shortlist_position=1,
                intro_status="accepted",
            )
        )
    for side, answer, satisfaction, recommend in (
        ("requester", SurveyOutcome.COOPERATION_POSSIBLE, 5, 10),
        ("partner", SurveyOutcome.INFORMATIVE_NO_COOPERATION, 3, 8),
    ):
        session.add(
            SurveyResponse(
                exchange_id=completed.id,
                respondent=side,
                outcome=answer,
                satisfaction=satisfaction,
                recommend=recommend,
                at=DAY0 + timedelta(days=30),
            )
        )
    session.add(
        ExchangeEvent(
            exchange_id=completed.id,
            event_key=f"{completed.id}:outcome_recorded",
            kind="outcome_recorded",
            at=DAY0 + timedelta(days=120),
        )
    )
    completed.result = WaveOutcome.AGREEMENT_REACHED
    completed.agreement_type = CooperationType.LICENSING
    session.add(completed)
    session.add(
        ExchangeStage(
            exchange_id=elsewhere.id,
            stage=Stage.SCHEDULING,
            waiting_on=["partner:bw-cro"],
            entered_at=DAY0 + timedelta(days=9),
            deadline_at=DAY0 + timedelta(days=16),
        )
    )
    session.add(
        ExchangeStage(
            exchange_id=approved.id,
            stage=Stage.MATCHING,
            waiting_on=["home_broker"],
            entered_at=DAY0 + timedelta(days=4),
            deadline_at=utcnow() + timedelta(days=30),
        )
    )
    count_for_reports(session)
    return report_tokens


def count_for_reports(session: Session) -> None:
    """Commits the rows written by hand, with the report tallies the activities would have kept
    (tests/activities/test_records.py checks that they keep the same)."""
    session.flush()
    tallies.rebuild(session.connection())
    session.commit()
