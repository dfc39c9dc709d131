import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select
from temporalio.testing import WorkflowEnvironment

from ce4big.models import Exchange
from tests.api.world import REQUEST, World, running_world

ROLES = ["sme", "other_sme", "broker", "host_biom", "other_broker", "manager", "admin"]


@pytest.fixture
async def world(db: Engine, time_skipping_env: WorkflowEnvironment) -> AsyncIterator[World]:
    async with running_world(db, time_skipping_env) as world:
        yield world


async def until_stage(world: World, exchange_id: int, stage: str) -> dict[str, Any]:
    for _ in range(600):
        response = await world.get("manager", f"/api/v1/exchanges/{exchange_id}")
        body: dict[str, Any] = response.json()
        if body["state"] and body["state"]["stage"] == stage:
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"exchange {exchange_id} never reached {stage}: {body['state']}")


async def approved(world: World) -> int:
    exchange_id = await world.create()
    await until_stage(world, exchange_id, "vetting")
    response = await world.post(
        "broker", f"/api/v1/exchanges/{exchange_id}/vetting", {"decision": "approve"}
    )
    assert response.status_code == 200, response.text
    for _ in range(600):
        state = (await until_stage(world, exchange_id, "matching"))["state"]
        if state["candidates"]:
            return exchange_id
        await asyncio.sleep(0.05)
    raise AssertionError("no candidates were found")


def slot(days: float, hours: float = 1) -> dict[str, str]:
    start = datetime.now(UTC) + timedelta(days=days)
    return {"start": start.isoformat(), "end": (start + timedelta(hours=hours)).isoformat()}


class TestCreate:
    async def test_sme_creates_and_the_workflow_starts(self, world: World) -> None:
        response = await world.post("sme", "/api/v1/exchanges", REQUEST)
        assert response.status_code == 201
        body = response.json()
        assert body["status"] == "vetting" and body["home_cluster"] == "biowin"
        detail = await until_stage(world, body["id"], "vetting")
        assert detail["state"]["waiting_on"] == ["home_broker"]
        for _ in range(600):
            detail = (await world.get("sme", f"/api/v1/exchanges/{body['id']}")).json()
            if detail["timeline"]:
                break
            await asyncio.sleep(0.05)
        assert [e["kind"] for e in detail["timeline"]] == ["submitted"]
        for _ in range(600):
            if world.mail.received:
                break
            await asyncio.sleep(0.05)
        assert world.mail.received[0].recipients == ["anna@meuse-kinase.example"]

    async def test_retried_submit_with_the_same_key_is_one_exchange(
        self, world: World, session: Session
    ) -> None:
        headers = {**world.auth("sme"), "Idempotency-Key": "submit-1"}
        responses = await asyncio.gather(
            *(
                world.client.post("/api/v1/exchanges", json=REQUEST, headers=headers)
                for _ in range(5)
            )
        )
        assert {r.status_code for r in responses} == {201}
        assert len({r.json()["id"] for r in responses}) == 1
        assert len(session.exec(select(Exchange)).all()) == 1
        again = await world.client.post("/api/v1/exchanges", json=REQUEST, headers=headers)
        assert again.json()["id"] == responses[0].json()["id"]

    @pytest.mark.parametrize(
        ("change", "field"),
        [
            ({"target_clusters": ["mars"]}, "target_clusters"),
            ({"partner_kinds": ["bakery"]}, "partner_kinds"),
            ({"required_certifications": ["ISO 0"]}, "required_certifications"),
            ({"cooperation_type": "marriage"}, "cooperation_type"),
            ({"meeting_format": "telepathy"}, "meeting_format"),
            ({"languages": ["xx"]}, "languages"),
            ({"title": "x" * 201}, "title"),
            ({"description": "short"}, "description"),
            ({"surprise": 1}, "surprise"),
        ],
    )
    async def test_invalid_request_names_the_field_and_saves_nothing(
        self, world: World, session: Session, change: dict[str, Any], field: str
    ) -> None:
        response = await world.post("sme", "/api/v1/exchanges", {**REQUEST, **change})
        assert response.status_code == 422
        assert response.json()["error"]["message"].startswith(field)
        assert session.exec(select(Exchange)).all() == []

    async def test_only_smes_create(self, world: World) -> None:
        for who in ("broker", "manager", "admin"):
            response = await world.post(who, "/api/v1/exchanges", REQUEST)
            assert response.status_code == 403, who

    async def test_needs_a_token(self, world: World) -> None:
        response = await world.client.post("/api/v1/exchanges", json=REQUEST)
        assert response.status_code == 401

    async def test_body_over_the_limit_is_413(self, world: World, session: Session) -> None:
        huge = {**REQUEST, "description": "x" * 2_000_000}
        response = await world.post("sme", "/api/v1/exchanges", huge)
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "payload_too_large"
        assert session.exec(select(Exchange)).all() == []


class TestListAndRead:
    async def test_each_role_sees_its_scope(self, world: World) -> None:
        exchange_id = await world.create()
        seen = {}
        for who in ROLES:
            response = await world.get(who, "/api/v1/exchanges")
            assert response.status_code == 200
            seen[who] = [e["id"] for e in response.json()["data"]]
        assert seen == {
            "sme": [exchange_id],
            "other_sme": [],
            "broker": [exchange_id],
            "host_biom": [],
            "other_broker": [],
            "manager": [exchange_id],
            "admin": [exchange_id],
        }

    async def test_host_broker_sees_exchanges_with_candidates_in_their_cluster(
        self, world: World
    ) -> None:
        exchange_id = await approved(world)
        response = await world.get("host_biom", "/api/v1/exchanges")
        assert [e["id"] for e in response.json()["data"]] == [exchange_id]
        detail = await world.get("host_biom", f"/api/v1/exchanges/{exchange_id}")
        assert detail.status_code == 200

    async def test_filters_and_pagination(self, world: World) -> None:
        ids = [await world.create(title=f"Request number {n}") for n in range(3)]
        page = (await world.get("manager", "/api/v1/exchanges?limit=2&offset=0")).json()
        assert page["count"] == 3 and len(page["data"]) == 2
        rest = (await world.get("manager", "/api/v1/exchanges?limit=2&offset=2")).json()
        assert {e["id"] for e in page["data"] + rest["data"]} == set(ids)
        atlanpole = (await world.get("manager", "/api/v1/exchanges?cluster=atlanpole")).json()
        assert atlanpole["count"] == 0
        vetting = (await world.get("manager", "/api/v1/exchanges?status=vetting")).json()
        assert vetting["count"] == 3
        bad = await world.get("manager", "/api/v1/exchanges?status=dreaming")
        assert bad.status_code == 422

    async def test_unknown_and_invisible_exchanges_are_404(self, world: World) -> None:
        exchange_id = await world.create()
        assert (await world.get("sme", "/api/v1/exchanges/999999")).status_code == 404
        hidden = await world.get("other_sme", f"/api/v1/exchanges/{exchange_id}")
        assert hidden.status_code == 404
        assert hidden.json()["error"]["code"] == "not_found"


class TestDecisions:
    async def test_vetting_by_the_home_broker_only(self, world: World) -> None:
        exchange_id = await world.create()
        await until_stage(world, exchange_id, "vetting")
        path = f"/api/v1/exchanges/{exchange_id}/vetting"
        assert (await world.post("sme", path, {"decision": "approve"})).status_code == 403
        assert (await world.post("manager", path, {"decision": "approve"})).status_code == 403
        assert (await world.post("other_broker", path, {"decision": "approve"})).status_code == 404
        invalid = await world.post("broker", path, {"decision": "maybe"})
        assert invalid.status_code == 422
        no_reason = await world.post("broker", path, {"decision": "reject"})
        assert no_reason.status_code == 422
        assert "note" in no_reason.json()["error"]["message"]
        ok = await world.post("broker", path, {"decision": "approve"})
        assert ok.status_code == 200, ok.text
        assert ok.json()["exchange_id"] == exchange_id
        twice = await world.post("broker", path, {"decision": "approve"})
        assert twice.status_code == 200 and twice.json()["detail"] == "already decided"
        late = await world.post("broker", path, {"decision": "reject", "note": "no"})
        assert late.status_code == 409
        assert "stage" in late.json()["error"]["message"]

    async def test_out_of_stage_decision_is_409_with_the_stage(self, world: World) -> None:
        exchange_id = await world.create()
        await until_stage(world, exchange_id, "vetting")
        response = await world.post(
            "broker", f"/api/v1/exchanges/{exchange_id}/shortlist", {"organisation_ids": ["bm-cro"]}
        )
        assert response.status_code == 409
        assert "vetting" in response.json()["error"]["message"]

    async def test_candidates_shortlist_and_host_review(self, world: World) -> None:
        exchange_id = await approved(world)
        assert (
            await world.get("sme", f"/api/v1/exchanges/{exchange_id}/candidates")
        ).status_code == 403
        candidates = (
            await world.get("broker", f"/api/v1/exchanges/{exchange_id}/candidates")
        ).json()
        ids = [c["organisation_id"] for c in candidates]
        assert set(ids) == {"bm-cro", "kr-cro"}
        assert all(c["reasons"] for c in candidates)
        shortlist = await world.post(
            "broker", f"/api/v1/exchanges/{exchange_id}/shortlist", {"organisation_ids": ["bm-cro"]}
        )
        assert shortlist.status_code == 200
        await until_stage(world, exchange_id, "host_review")
        path = f"/api/v1/exchanges/{exchange_id}/host-review"
        wrong = await world.post(
            "host_klsk", path, {"organisation_id": "bm-cro", "decision": "veto"}
        )
        assert wrong.status_code in (403, 404)
        ok = await world.post(
            "host_biom", path, {"organisation_id": "bm-cro", "decision": "endorse"}
        )
        assert ok.status_code == 200
        await until_stage(world, exchange_id, "introduction")

    async def test_amend_changes_the_request_only_when_accepted(
        self, world: World, session: Session
    ) -> None:
        exchange_id = await world.create()
        await until_stage(world, exchange_id, "vetting")
        early = await world.post(
            "sme", f"/api/v1/exchanges/{exchange_id}/amend", {"title": "A better title"}
        )
        assert early.status_code == 409
        assert session.get(Exchange, exchange_id).title == REQUEST["title"]  # type: ignore[union-attr]
        await world.post(
            "broker",
            f"/api/v1/exchanges/{exchange_id}/vetting",
            {"decision": "request_changes", "note": "name the assays"},
        )
        await until_stage(world, exchange_id, "changes_requested")
        ok = await world.post(
            "sme",
            f"/api/v1/exchanges/{exchange_id}/amend",
            {"title": "A better title", "note": "assays named"},
        )
        assert ok.status_code == 200
        session.expire_all()
        assert session.get(Exchange, exchange_id).title == "A better title"  # type: ignore[union-attr]
        await until_stage(world, exchange_id, "vetting")

    @pytest.mark.parametrize(
        ("slots", "field"),
        [
            ([slot(-1)], "slots.0"),
            ([{"start": slot(2)["end"], "end": slot(2)["start"]}], "slots.0"),
            ([slot(800)], "slots.0"),
            ([slot(2, hours=12)], "slots.0"),
            ([slot(n + 1) for n in range(6)], "slots"),
        ],
    )
    async def test_slot_sanity(self, world: World, slots: list[dict[str, str]], field: str) -> None:
        exchange_id = await world.create()
        response = await world.post(
            "sme",
            f"/api/v1/exchanges/{exchange_id}/meeting/proposals",
            {"slots": slots, "timezone": "Europe/Brussels"},
        )
        assert response.status_code == 422
        assert response.json()["error"]["message"].startswith(field)

    async def test_unknown_time_zone_is_422(self, world: World) -> None:
        exchange_id = await world.create()
        response = await world.post(
            "sme",
            f"/api/v1/exchanges/{exchange_id}/meeting/proposals",
            {"slots": [slot(3)], "timezone": "Mars/Olympus"},
        )
        assert response.status_code == 422
        assert "timezone" in response.json()["error"]["message"]

    async def test_withdraw_by_the_requester_and_cancel_by_a_manager(self, world: World) -> None:
        first = await world.create()
        second = await world.create(title="Another request")
        await until_stage(world, second, "vetting")
        assert (
            await world.post("broker", f"/api/v1/exchanges/{first}/withdraw")
        ).status_code == 403
        assert (await world.post("sme", f"/api/v1/exchanges/{second}/cancel")).status_code == 403
        withdrawn = await world.post(
            "sme", f"/api/v1/exchanges/{first}/withdraw", {"reason": "solved"}
        )
        assert withdrawn.status_code == 200
        cancelled = await world.post("manager", f"/api/v1/exchanges/{second}/cancel")
        assert cancelled.status_code == 200
        for exchange_id, outcome in ((first, "withdrawn"), (second, "cancelled")):
            for _ in range(600):
                body = (await world.get("manager", f"/api/v1/exchanges/{exchange_id}")).json()
                if body["outcome"]:
                    break
                await asyncio.sleep(0.05)
            assert (body["status"], body["outcome"]) == ("closed", outcome)
        closed = await world.post("sme", f"/api/v1/exchanges/{first}/withdraw")
        assert closed.status_code == 409


ENDPOINTS: list[tuple[str, str, dict[str, Any] | None, set[str]]] = [
    ("GET", "", None, {"sme", "broker", "manager", "admin"}),
    ("GET", "/candidates", None, {"broker", "manager", "admin"}),
    ("POST", "/vetting", {"decision": "approve"}, {"broker"}),
    ("POST", "/amend", {"title": "New title here"}, {"sme"}),
    ("POST", "/shortlist", {"organisation_ids": ["bm-cro"]}, {"broker"}),
    ("POST", "/host-review", {"organisation_id": "bm-cro", "decision": "endorse"}, set()),
    ("POST", "/meeting/proposals", {"slots": [slot(3)], "timezone": "Europe/Paris"}, {"sme"}),
    ("POST", "/meeting/pick", {"start": slot(3)["start"]}, {"sme"}),
    ("POST", "/meeting/cancel", {}, {"sme"}),
    ("POST", "/meeting/not-held", {}, {"sme"}),
    ("POST", "/survey", {"outcome": "cooperation_possible"}, {"sme"}),
    ("POST", "/withdraw", {}, {"sme"}),
    ("POST", "/cancel", {}, {"manager", "admin"}),
]


class TestRoleMatrix:
    @pytest.mark.parametrize(("method", "suffix", "body", "allowed"), ENDPOINTS)
    async def test_every_role_on_every_endpoint(
        self,
        world: World,
        method: str,
        suffix: str,
        body: dict[str, Any] | None,
        allowed: set[str],
    ) -> None:
        """At the vetting stage: a role that may act is never refused for who it is (it may
        get 409 for the stage); a role that may not gets 403, or 404 when it may not even see
        the exchange."""
        exchange_id = await world.create()
        await until_stage(world, exchange_id, "vetting")
        path = f"/api/v1/exchanges/{exchange_id}{suffix}"
        # Roles that may not act go first, so that an allowed decision cannot hide their refusal.
        for who in sorted(ROLES, key=lambda r: r in allowed):
            if method == "GET":
                response = await world.get(who, path)
            else:
                response = await world.post(who, path, body)
            if who in allowed:
                assert response.status_code in (200, 409), (who, response.text)
            else:
                assert response.status_code in (403, 404), (who, response.text)
            if who in ("other_sme", "other_broker", "host_biom"):
                assert response.status_code == 404, (who, response.text)
        unknown = f"/api/v1/exchanges/999999{suffix}"
        response = await (
            world.get("manager", unknown)
            if method == "GET"
            else world.post("manager", unknown, body)
        )
        assert response.status_code == 404
        anonymous = await world.client.request(method, path, json=body)
        assert anonymous.status_code == 401
