"""The report figures from hand-built timelines with known timestamps, on SQLite and
PostgreSQL."""

import csv
import io
from datetime import date, timedelta

import pytest
from sqlmodel import Session, select

from ce4big.domain import CooperationType, Outcome, Stage, SurveyOutcome, WaveOutcome
from ce4big.models import (
    Exchange,
    ExchangeStage,
    User,
    utcnow,
)
from ce4big.reports import (
    Figure,
    FigureKind,
    ReportScope,
    StageTime,
    cluster_matrix,
    figure_exchanges,
    funnel,
    outcomes,
    overdue,
    stage_times,
    weekly_submissions,
)
from ce4big.rollup import ending, rebuild
from tests.api.conftest import ClientFactory
from tests.api.report_data import DAY0, EVIL, bearer


def counts(body: dict[str, object]) -> dict[str, int]:
    steps = body["steps"]
    assert isinstance(steps, list)
    return {s["step"]: s["count"] for s in steps}


class TestFunnel:
    async def test_counts_and_conversions_at_the_end_of_the_period(
        self, api_client: ClientFactory, report_tokens: dict[str, str]
    ) -> None:
        async with api_client() as client:
            answer = await client.get(
                "/api/v1/reports/funnel?as_of=2026-06-30", headers=bearer(report_tokens["manager"])
            )
        assert answer.status_code == 200
        assert counts(answer.json()) == {
            "submitted": 4,
            "approved": 3,
            "shortlisted": 2,
            "partner_accepted": 2,
            "meeting_scheduled": 1,
            "meeting_held": 1,
            "survey_answered": 1,
            "completed": 1,
        }
        conversions = [s["conversion"] for s in answer.json()["steps"]]
        assert conversions[:3] == [None, 0.75, 0.6667]

    async def test_as_of_a_day_between_transitions_counts_what_had_happened(
        self, api_client: ClientFactory, report_tokens: dict[str, str]
    ) -> None:
        as_of = (DAY0 + timedelta(days=7)).date()
        async with api_client() as client:
            answer = await client.get(
                f"/api/v1/reports/funnel?as_of={as_of}", headers=bearer(report_tokens["manager"])
            )
        assert counts(answer.json()) == {
            "submitted": 4,
            "approved": 3,
            "shortlisted": 2,
            "partner_accepted": 1,  # "elsewhere" accepted on day 9
            "meeting_scheduled": 0,
            "meeting_held": 0,
            "survey_answered": 0,
            "completed": 0,
        }

    async def test_period_and_cluster_filters(
        self, api_client: ClientFactory, report_tokens: dict[str, str]
    ) -> None:
        first_days = f"from={DAY0.date()}&to={(DAY0 + timedelta(days=2)).date()}"
        async with api_client() as client:
            period = await client.get(
                f"/api/v1/reports/funnel?as_of=2026-06-30&{first_days}",
                headers=bearer(report_tokens["manager"]),
            )
            biom = await client.get(
                "/api/v1/reports/funnel?as_of=2026-06-30&cluster=biom",
                headers=bearer(report_tokens["manager"]),
            )
            backwards = await client.get(
                "/api/v1/reports/funnel?from=2026-05-01&to=2026-04-01",
                headers=bearer(report_tokens["manager"]),
            )
        assert counts(period.json())["submitted"] == 3
        assert counts(biom.json())["submitted"] == 1
        assert backwards.status_code == 422

    async def test_a_broker_sees_their_cluster_and_an_sme_nothing(
        self, api_client: ClientFactory, report_tokens: dict[str, str]
    ) -> None:
        async with api_client() as client:
            broker = await client.get(
                "/api/v1/reports/funnel?as_of=2026-06-30", headers=bearer(report_tokens["broker"])
            )
            sme = await client.get("/api/v1/reports/funnel", headers=bearer(report_tokens["sme"]))
        assert counts(broker.json())["submitted"] == 3
        assert sme.status_code == 403

    async def test_the_steps_are_an_enum_in_the_schema(self, api_client: ClientFactory) -> None:
        async with api_client() as client:
            schema = (await client.get("/openapi.json")).json()
        steps = schema["components"]["schemas"]["FunnelStep"]["enum"]
        assert steps[0] == "submitted" and steps[-1] == "completed"


class TestExchangesCsv:
    async def test_one_row_per_visible_exchange_readable_by_csv_with_formulas_neutralised(
        self, api_client: ClientFactory, report_tokens: dict[str, str], session: Session
    ) -> None:
        exchange = session.exec(select(Exchange).where(Exchange.title == "Exchange rejected")).one()
        exchange.title = EVIL
        session.add(exchange)
        session.commit()
        async with api_client() as client:
            manager = await client.get(
                "/api/v1/reports/exchanges.csv", headers=bearer(report_tokens["manager"])
            )
            broker = await client.get(
                "/api/v1/reports/exchanges.csv", headers=bearer(report_tokens["broker"])
            )
            sme = await client.get(
                "/api/v1/reports/exchanges.csv", headers=bearer(report_tokens["sme"])
            )
        assert manager.status_code == 200
        assert manager.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(manager.text)))
        by_title = {r["title"]: r for r in rows}
        assert len(rows) == 4
        completed = by_title["Exchange completed"]
        assert completed["outcome"] == "completed"
        approved = DAY0 + timedelta(days=1, hours=1)
        assert completed["approved_at"].startswith(approved.isoformat()[:16])
        assert completed["meeting_held_at"] and not by_title["Exchange approved"]["shortlisted_at"]
        assert "'" + EVIL in by_title
        assert len(list(csv.DictReader(io.StringIO(broker.text)))) == 3
        assert sme.status_code == 403


SPELLS: dict[str, list[tuple[str, list[str], int, int | None]]] = {
    # stage, waiting on, entered and left (hours after DAY0; None: still open)
    "completed": [
        ("vetting", ["home_broker"], 0, 24),
        ("matching", ["home_broker"], 24, 72),
        ("scheduling", ["requester"], 72, 96),
        ("scheduling", ["partner:bm-cro"], 96, 120),
        ("introduction", ["partner:bm-cro"], 120, None),
    ],
    "approved": [
        ("vetting", ["home_broker"], 0, 48),
        ("host_review", ["host_broker:biom", "host_broker:klsk"], 48, 60),
    ],
}


class TestStageTimes:
    @pytest.fixture
    def spells(self, report_tokens: dict[str, str], session: Session) -> dict[str, str]:
        for title, spells in SPELLS.items():
            exchange = session.exec(
                select(Exchange).where(Exchange.title == f"Exchange {title}")
            ).one()
            assert exchange.id is not None
            for stage, waiting_on, entered, left in spells:
                start = DAY0 + timedelta(hours=entered)
                ended = (
                    {} if left is None else ending(start, DAY0 + timedelta(hours=left), waiting_on)
                )
                session.add(
                    ExchangeStage(
                        exchange_id=exchange.id,
                        stage=Stage(stage),
                        waiting_on=waiting_on,
                        entered_at=start,
                        **ended,
                    )
                )
        session.flush()
        # What the record activity keeps as the spells end (tests/activities/test_records.py).
        rebuild(session.connection())
        session.commit()
        return report_tokens

    async def test_medians_percentiles_and_waiting_shares(
        self, api_client: ClientFactory, spells: dict[str, str]
    ) -> None:
        async with api_client() as client:
            answer = await client.get(
                "/api/v1/reports/stages?as_of=2026-06-30", headers=bearer(spells["manager"])
            )
            early = await client.get(
                f"/api/v1/reports/stages?as_of={(DAY0 + timedelta(hours=50)).date()}",
                headers=bearer(spells["manager"]),
            )
            sme = await client.get("/api/v1/reports/stages", headers=bearer(spells["sme"]))
        body = answer.json()
        stages = {
            s["stage"]: (s["spells"], s["median_hours"], s["p90_hours"]) for s in body["stages"]
        }
        assert stages == {
            "vetting": (2, 36.0, 45.6),
            "matching": (1, 48.0, 48.0),
            "host_review": (1, 12.0, 12.0),
            "scheduling": (2, 24.0, 24.0),
        }
        assert {w["party"]: w["share"] for w in body["waiting"]} == {
            "home_broker": 0.6667,
            "requester": 0.1333,
            "partner": 0.1333,
            "host_broker": 0.0667,
        }
        # By the end of that day (hour 63): both vettings and the host review had ended, the
        # matching (hour 72) had not.
        assert {s["stage"] for s in early.json()["stages"]} == {"vetting", "host_review"}
        assert sme.status_code == 403

    def test_whole_months_from_the_rollup_agree_with_the_spells(
        self, session: Session, spells: dict[str, str]
    ) -> None:
        # Every spell ended in March 2026, of exchanges submitted that month in biowin.
        manager = reader(session, "m@ce4big.example")
        broker = reader(session, "b@bw.example")

        def figures(
            as_of: date = date(2026, 6, 30), start: date | None = None, end: date | None = None
        ) -> list[StageTime]:
            scope = ReportScope(as_of=as_of, start=start, end=end)
            return stage_times(session=session, user=manager, scope=scope).stages

        everything = figures()
        assert [s.spells for s in everything] == [2, 1, 1, 2]
        # March whole (the rollup), in part (the spells), within a longer period, as of a day
        # of March (the spells of that month): the same figures.
        assert figures(start=date(2026, 3, 1), end=date(2026, 3, 31)) == everything
        assert figures(start=DAY0.date(), end=date(2026, 3, 31)) == everything
        assert figures(start=date(2026, 2, 15), end=date(2026, 4, 30)) == everything
        assert figures(as_of=date(2026, 3, 31)) == everything
        assert figures(start=date(2026, 4, 1)) == []
        assert figures(end=date(2026, 2, 28)) == []
        own = stage_times(session=session, user=broker, scope=ReportScope(as_of=date(2026, 6, 30)))
        assert own.stages == everything
        elsewhere = ReportScope(as_of=date(2026, 6, 30), home="biom")
        assert stage_times(session=session, user=manager, scope=elsewhere).stages == []


def reader(session: Session, email: str) -> User:
    return session.exec(select(User).where(User.email == email)).one()


LATE = ReportScope(as_of=date(2026, 12, 31))


class TestDashboardFigures:
    def test_home_cluster_to_partner_cluster(
        self, session: Session, followed_up: dict[str, str]
    ) -> None:
        manager = reader(session, "m@ce4big.example")
        cells = cluster_matrix(session=session, user=manager, scope=LATE)
        assert [
            (c.home, c.partner, c.introductions, c.meetings_held, c.cooperation_possible)
            for c in cells
        ] == [("biom", "biowin", 1, 0, 0), ("biowin", "biom", 1, 1, 1)]
        # As of day 7, only the completed exchange's partner had accepted (day 6).
        early = ReportScope(as_of=(DAY0 + timedelta(days=7)).date())
        assert [
            (c.home, c.introductions)
            for c in cluster_matrix(session=session, user=manager, scope=early)
        ] == [("biowin", 1)]

    def test_outcomes_and_the_recommend_score(
        self, session: Session, followed_up: dict[str, str]
    ) -> None:
        manager = reader(session, "m@ce4big.example")
        figures = outcomes(session=session, user=manager, scope=LATE)
        assert figures.closed[Outcome.COMPLETED] == 1 and figures.closed[Outcome.REJECTED] == 0
        assert figures.survey["requester"][SurveyOutcome.COOPERATION_POSSIBLE] == 1
        assert figures.survey["partner"][SurveyOutcome.INFORMATIVE_NO_COOPERATION] == 1
        assert figures.answers == 2
        assert figures.mean_satisfaction == 4.0
        # One 10 (promoter), one 8 (neither): (1 - 0) / 2.
        assert figures.recommend_score == 0.5
        assert figures.wave[WaveOutcome.AGREEMENT_REACHED] == 1
        assert figures.agreements[CooperationType.LICENSING] == 1
        # Before the outcome wave was recorded (day 120), no result yet.
        before = ReportScope(as_of=(DAY0 + timedelta(days=100)).date())
        assert sum(outcomes(session=session, user=manager, scope=before).wave.values()) == 0

    def test_overdue_now_oldest_first_with_whom_it_waits_on(
        self, session: Session, followed_up: dict[str, str]
    ) -> None:
        manager = reader(session, "m@ce4big.example")
        broker = reader(session, "b@bw.example")
        items, total = overdue(session=session, user=manager, scope=LATE, now=utcnow())
        assert total == 1
        assert (items[0].title, items[0].stage, items[0].waiting_on) == (
            "Exchange elsewhere",
            Stage.SCHEDULING,
            ["partner:bw-cro"],
        )
        # The overdue exchange is BioM's: not in the BioWin broker's reports.
        assert overdue(session=session, user=broker, scope=LATE, now=utcnow()) == ([], 0)

    def test_submissions_per_week(self, session: Session, followed_up: dict[str, str]) -> None:
        manager = reader(session, "m@ce4big.example")
        scope = ReportScope(as_of=date(2026, 6, 30), start=DAY0.date(), end=date(2026, 3, 22))
        weeks = weekly_submissions(session=session, user=manager, scope=scope)
        # DAY0 is Monday 2 March: submissions on days 0, 1, 2 and 5, all in its week.
        assert [(w.week, w.count) for w in weeks] == [
            (date(2026, 3, 2), 4),
            (date(2026, 3, 9), 0),
            (date(2026, 3, 16), 0),
        ]

    def test_every_figure_counts_the_exchanges_its_list_shows(
        self, session: Session, followed_up: dict[str, str]
    ) -> None:
        manager = reader(session, "m@ce4big.example")
        steps = funnel(session=session, user=manager, scope=LATE).steps
        figures = outcomes(session=session, user=manager, scope=LATE)
        expected = (
            {Figure(FigureKind.STEP, s.step): s.count for s in steps}
            | {Figure(FigureKind.OUTCOME, o): n for o, n in figures.closed.items()}
            | {Figure(FigureKind.WAVE, w): n for w, n in figures.wave.items()}
            | {
                Figure(FigureKind.SURVEY, "requester:cooperation_possible"): 1,
            }
        )
        for figure, count in expected.items():
            ids = session.exec(figure_exchanges(manager, LATE, figure)).all()
            assert len(set(ids)) == count, figure
        for text in ("step:nowhere", "survey:requester", "agreement:", "spell:x:y", ""):
            assert Figure.parse(text) is None

    async def test_the_api_gives_the_same_figures(
        self, api_client: ClientFactory, followed_up: dict[str, str]
    ) -> None:
        manager = bearer(followed_up["manager"])
        async with api_client() as client:
            clusters = await client.get(
                "/api/v1/reports/clusters?as_of=2026-12-31&partner=biom", headers=manager
            )
            answers = await client.get("/api/v1/reports/outcomes?as_of=2026-12-31", headers=manager)
            sme = await client.get("/api/v1/reports/outcomes", headers=bearer(followed_up["sme"]))
        assert clusters.json() == [
            {
                "home": "biowin",
                "partner": "biom",
                "introductions": 1,
                "meetings_held": 1,
                "cooperation_possible": 1,
            }
        ]
        assert answers.json()["recommend_score"] == 0.5
        assert answers.json()["agreements"]["licensing"] == 1
        assert sme.status_code == 403
