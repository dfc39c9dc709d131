"""Connections are held only while SQL runs: a request waiting on Temporal holds none. A
decision Temporal has not answered in time is said to be on its way, not lost."""

import asyncio
from typing import Any, cast

import httpx
from sqlalchemy import Engine
from sqlmodel import Session
from temporalio.client import Client

from api.main import create_app
from ce4big.domain import CooperationType, Stage
from ce4big.lifecycle import DecisionResult
from ce4big.models import Exchange
from ce4big.settings import Settings
from tests.api.conftest import CSRF, ClientFactory, sign_in
from tests.conftest import make_settings
from tests.factories import add_organisation, user_with_token


class SlowUpdates:
    """A Temporal client whose Updates wait until the test lets them through, as a busy
    server's do."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.updates = 0

    def get_workflow_handle(self, workflow_id: str) -> "SlowUpdates":
        return self

    async def query(self, query: str, **_: Any) -> dict[str, Any]:
        return {"stage": "vetting", "waiting_on": ["home_broker"]}

    async def execute_update(self, update: str, argument: Any, **_: Any) -> DecisionResult:
        self.updates += 1
        self.started.set()
        await self.release.wait()
        return DecisionResult(stage=Stage.MATCHING)


def one_connection_settings(db: Engine) -> Settings:
    return make_settings(
        db.url.render_as_string(hide_password=False),
        db_pool_size=1,
        db_max_overflow=0,
        db_pool_timeout_seconds=0.5,
    )


def vetting_exchange(session: Session) -> tuple[int, str, str]:
    add_organisation(session, "sme-a", "biowin")
    sme, sme_token = user_with_token(session, "sme@a.example", "sme", "biowin", "sme-a")
    _, broker_token = user_with_token(session, "broker@biowin.example", "broker", "biowin")
    assert sme.id is not None
    exchange = Exchange(
        title="GLP toxicology",
        description="A repeated-dose study.",
        requester_id=sme.id,
        organisation_id="sme-a",
        home_cluster="biowin",
        cooperation_type=CooperationType.SERVICE_AGREEMENT,
    )
    session.add(exchange)
    session.commit()
    assert exchange.id is not None
    return exchange.id, sme_token, broker_token


class TestConnectionPool:
    async def test_a_decision_waiting_on_temporal_leaves_the_pool_to_others(
        self, db: Engine, session: Session, api_client: ClientFactory
    ) -> None:
        exchange_id, sme_token, broker_token = vetting_exchange(session)
        temporal = SlowUpdates()
        async with api_client(one_connection_settings(db), cast(Client, temporal)) as client:
            decision = asyncio.create_task(
                client.post(
                    f"/api/v1/exchanges/{exchange_id}/vetting",
                    json={"decision": "approve"},
                    headers={"Authorization": f"Bearer {broker_token}"},
                )
            )
            await asyncio.wait_for(temporal.started.wait(), timeout=10)
            # The only connection is free while the Update waits: others are served.
            me = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {sme_token}"})
            listed = await client.get(
                "/api/v1/exchanges", headers={"Authorization": f"Bearer {sme_token}"}
            )
            temporal.release.set()
            decided = await decision
        assert me.status_code == 200, me.text
        assert listed.status_code == 200 and listed.json()["count"] == 1
        assert decided.status_code == 200 and decided.json()["stage"] == "matching"

    async def test_an_exhausted_pool_answers_503_with_retry_after(
        self, db: Engine, session: Session
    ) -> None:
        _, sme_token, _ = vetting_exchange(session)
        app = create_app(one_connection_settings(db))
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://testserver") as client,
        ):
            # Another request's SQL holds the only connection.
            with app.state.engine.connect():
                response = await client.get(
                    "/api/v1/me", headers={"Authorization": f"Bearer {sme_token}"}
                )
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "2"
        assert response.json()["error"]["code"] == "unavailable"


def slow_temporal_settings(db: Engine) -> Settings:
    return make_settings(db.url.render_as_string(hide_password=False), temporal_timeout_seconds=0.3)


class TestDecisionNotConfirmedInTime:
    async def test_the_api_says_it_may_still_be_taken_and_a_retry_sends_it_once(
        self, db: Engine, session: Session, api_client: ClientFactory
    ) -> None:
        exchange_id, _, broker_token = vetting_exchange(session)
        temporal = SlowUpdates()
        path = f"/api/v1/exchanges/{exchange_id}/vetting"
        headers = {"Authorization": f"Bearer {broker_token}"}
        async with api_client(slow_temporal_settings(db), cast(Client, temporal)) as client:
            waited = await client.post(path, json={"decision": "approve"}, headers=headers)
            retried = await client.post(path, json={"decision": "approve"}, headers=headers)
            temporal.release.set()
        for answer in (waited, retried):
            assert answer.status_code == 503 and answer.headers["Retry-After"]
            error = answer.json()["error"]
            assert error["code"] == "pending"
            assert "not confirmed yet, and may still be taken" in error["message"]
        # The retry joined the Update in flight: one decision reached the workflow.
        assert temporal.updates == 1

    async def test_the_broker_page_does_not_say_nothing_was_recorded(
        self, db: Engine, session: Session, api_client: ClientFactory
    ) -> None:
        exchange_id, _, _ = vetting_exchange(session)
        settings = slow_temporal_settings(db)
        temporal = SlowUpdates()
        path = f"/exchanges/{exchange_id}/vet"
        async with api_client(settings, cast(Client, temporal)) as client:
            sign_in(client, session, settings, "broker@biowin.example")
            form = await client.get(path)
            token = CSRF.search(form.text)
            assert token is not None, form.text
            answer = await client.post(
                path, data={"decision": "approve", "csrf_token": token.group(1)}
            )
            temporal.release.set()
        assert answer.status_code == 503
        assert "Not confirmed yet" in answer.text and "may still be taken" in answer.text
        assert "Nothing was recorded" not in answer.text
        assert temporal.updates == 1
