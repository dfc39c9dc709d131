"""The demo data: seeding again changes nothing, and its past exchanges fill the reports."""

from datetime import UTC, datetime, timedelta

from sqlmodel import Session, col, func, select

from ce4big.domain import Outcome, Stage, WaveOutcome
from ce4big.models import (
    Exchange,
    ExchangeCandidate,
    ExchangeEvent,
    ExchangeStage,
    SurveyResponse,
    User,
)
from ce4big.reports import ReportScope, funnel, stage_times
from ce4big.security import get_user_by_email
from ce4big.seed import DEMO_EXCHANGES, demo_email, seed_demo

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def counts(session: Session) -> dict[str, int]:
    return {
        model.__name__: session.exec(select(func.count()).select_from(model)).one()
        for model in (
            User,
            Exchange,
            ExchangeEvent,
            ExchangeStage,
            ExchangeCandidate,
            SurveyResponse,
        )
    }


def manager(session: Session) -> User:
    user = get_user_by_email(session=session, email=demo_email("manager.biowin"))
    assert user is not None
    return user


class TestSeedDemo:
    def test_seeding_again_changes_nothing(self, session: Session) -> None:
        first = seed_demo(session=session, now=NOW)
        session.commit()
        before = counts(session)
        second = seed_demo(session=session, now=NOW + timedelta(days=3))
        session.commit()
        assert second == first
        assert counts(session) == before
        assert before["Exchange"] == first.exchanges == len(DEMO_EXCHANGES)

    def test_every_step_of_the_funnel_and_every_stage_and_party_have_figures(
        self, session: Session
    ) -> None:
        seed_demo(session=session, now=NOW)
        session.commit()
        scope = ReportScope(as_of=NOW.date())
        steps = funnel(session=session, user=manager(session), scope=scope).steps
        assert all(s.count > 0 for s in steps), steps
        times = stage_times(session=session, user=manager(session), scope=scope)
        # Closed is no stage anyone waits in.
        assert {s.stage for s in times.stages} == set(Stage) - {Stage.CLOSED}
        assert {str(w.party) for w in times.waiting if w.share > 0} == {
            "requester",
            "partner",
            "home_broker",
            "host_broker",
        }

    def test_past_exchanges_end_every_way_and_two_wait_past_their_deadline(
        self, session: Session
    ) -> None:
        seed_demo(session=session, now=NOW)
        session.commit()
        exchanges = session.exec(select(Exchange)).all()
        closed = [e for e in exchanges if e.status == Stage.CLOSED]
        assert {e.outcome for e in closed} == set(Outcome)
        assert all(e.closed_at is not None and e.closed_at <= NOW for e in closed)
        assert {e.home_cluster for e in exchanges} == {"atlanpole", "biowin", "biom", "klsk"}
        open_spells = session.exec(
            select(ExchangeStage).where(col(ExchangeStage.left_at).is_(None))
        ).all()
        assert sorted(s.stage for s in open_spells) == [Stage.MATCHING, Stage.VETTING]
        assert all(s.deadline_at is not None and s.deadline_at < NOW for s in open_spells)
        assert all(s.waiting_on == ["home_broker"] for s in open_spells)
        waves = session.exec(select(SurveyResponse).where(SurveyResponse.wave == "outcome")).all()
        assert WaveOutcome.AGREEMENT_REACHED in {w.outcome for w in waves}
        agreed = [e for e in closed if e.result == WaveOutcome.AGREEMENT_REACHED]
        assert agreed and all(e.agreement_type for e in agreed)
