"""The funnel from hand-built timelines with known timestamps, on SQLite and PostgreSQL."""

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import Session, select

from ce4big.domain import CooperationType, Outcome, Stage
from ce4big.models import Exchange, ExchangeEvent, ExchangeStage
from tests.api.conftest import ClientFactory
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
def tokens(session: Session) -> dict[str, str]:
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
    session.commit()
    return {
        "sme": sme_token,
        "manager": user_with_token(session, "m@ce4big.example", "manager")[1],
        "broker": user_with_token(session, "b@bw.example", "broker", cluster="biowin")[1],
    }


def counts(body: dict[str, object]) -> dict[str, int]:
    steps = body["steps"]
    assert isinstance(steps, list)
    return {s["step"]: s["count"] for s in steps}


class TestFunnel:
    async def test_counts_and_conversions_at_the_end_of_the_period(
        self, api_client: ClientFactory, tokens: dict[str, str]
    ) -> None:
        async with api_client() as client:
            answer = await client.get(
                "/api/v1/reports/funnel?as_of=2026-06-30", headers=bearer(tokens["manager"])
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
        self, api_client: ClientFactory, tokens: dict[str, str]
    ) -> None:
        as_of = (DAY0 + timedelta(days=7)).date()
        async with api_client() as client:
            answer = await client.get(
                f"/api/v1/reports/funnel?as_of={as_of}", headers=bearer(tokens["manager"])
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
        self, api_client: ClientFactory, tokens: dict[str, str]
    ) -> None:
        first_days = f"from={DAY0.date()}&to={(DAY0 + timedelta(days=2)).date()}"
        async with api_client() as client:
            period = await client.get(
                f"/api/v1/reports/funnel?as_of=2026-06-30&{first_days}",
                headers=bearer(tokens["manager"]),
            )
            biom = await client.get(
                "/api/v1/reports/funnel?as_of=2026-06-30&cluster=biom",
                headers=bearer(tokens["manager"]),
            )
            backwards = await client.get(
                "/api/v1/reports/funnel?from=2026-05-01&to=2026-04-01",
                headers=bearer(tokens["manager"]),
            )
        assert counts(period.json())["submitted"] == 3
        assert counts(biom.json())["submitted"] == 1
        assert backwards.status_code == 422

    async def test_a_broker_sees_their_cluster_and_an_sme_nothing(
        self, api_client: ClientFactory, tokens: dict[str, str]
    ) -> None:
        async with api_client() as client:
            broker = await client.get(
                "/api/v1/reports/funnel?as_of=2026-06-30", headers=bearer(tokens["broker"])
            )
            sme = await client.get("/api/v1/reports/funnel", headers=bearer(tokens["sme"]))
        assert counts(broker.json())["submitted"] == 3
        assert sme.status_code == 403

    async def test_the_steps_are_an_enum_in_the_schema(self, api_client: ClientFactory) -> None:
        async with api_client() as client:
            schema = (await client.get("/openapi.json")).json()
        steps = schema["components"]["schemas"]["FunnelStep"]["enum"]
        assert steps[0] == "submitted" and steps[-1] == "completed"


class TestExchangesCsv:
    async def test_one_row_per_visible_exchange_readable_by_csv_with_formulas_neutralised(
        self, api_client: ClientFactory, tokens: dict[str, str], session: Session
    ) -> None:
        exchange = session.exec(select(Exchange).where(Exchange.title == "Exchange rejected")).one()
        exchange.title = EVIL
        session.add(exchange)
        session.commit()
        async with api_client() as client:
            manager = await client.get(
                "/api/v1/reports/exchanges.csv", headers=bearer(tokens["manager"])
            )
            broker = await client.get(
                "/api/v1/reports/exchanges.csv", headers=bearer(tokens["broker"])
            )
            sme = await client.get("/api/v1/reports/exchanges.csv", headers=bearer(tokens["sme"]))
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
    def spells(self, tokens: dict[str, str], session: Session) -> dict[str, str]:
        for title, spells in SPELLS.items():
            exchange = session.exec(
                select(Exchange).where(Exchange.title == f"Exchange {title}")
            ).one()
            assert exchange.id is not None
            for stage, waiting_on, entered, left in spells:
                session.add(
                    ExchangeStage(
                        exchange_id=exchange.id,
                        stage=Stage(stage),
                        waiting_on=waiting_on,
                        entered_at=DAY0 + timedelta(hours=entered),
                        left_at=None if left is None else DAY0 + timedelta(hours=left),
                    )
                )
        session.commit()
        return tokens

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
