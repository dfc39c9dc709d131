import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from bench.drive import REQUEST
from ce4big.models import Exchange, ExchangeEvent
from ce4big.settings import Settings
from tests.api.conftest import ClientFactory
from tests.api.test_lifecycle import LINK, mail_to, text_part
from tests.api.test_web_broker import sign_in
from tests.api.world import World, running_world
from tests.conftest import make_settings
from tests.factories import add_organisation, user_with_token
from tests.polling import eventually

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
        # The stage entry is recorded right after, maybe already.
        assert [e["kind"] for e in detail["timeline"]][:1] == ["submitted"]
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
            ({"title": "Toxicology \x00 study"}, "title"),
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

    async def test_ids_offsets_and_nul_beyond_what_the_database_holds_are_422(
        self, world: World
    ) -> None:
        for path in (
            f"/api/v1/exchanges/{2**31}",
            f"/api/v1/exchanges/{2**64}",
            f"/api/v1/exchanges?offset={2**63}",
            "/api/v1/exchanges?cluster=%00",
        ):
            response = await world.get("manager", path)
            assert response.status_code == 422, (path, response.text)


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
        # The shortlist in force is no answer to whoever may not set it: 403 for any guess.
        for who in ("sme", "manager", "host_biom"):
            for guess in (["bm-cro"], ["kr-cro"]):
                again = await world.post(
                    who,
                    f"/api/v1/exchanges/{exchange_id}/shortlist",
                    {"organisation_ids": guess},
                )
                assert again.status_code == 403, (who, guess)
        nul = await world.post("manager", path, {"organisation_id": "bm\x00", "decision": "veto"})
        assert nul.status_code == 422 and "organisation_id" in nul.json()["error"]["message"]
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
        nul = await world.post(
            "sme", f"/api/v1/exchanges/{exchange_id}/amend", {"title": "New \x00 title"}
        )
        assert nul.status_code == 422 and nul.json()["error"]["message"].startswith("title")
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


class TestAmendOnlyWhileItWaitsForVetting:
    async def test_a_repeated_amendment_after_approval_is_409_and_keeps_the_vetted_text(
        self, world: World, session: Session
    ) -> None:
        exchange_id = await world.create()
        await until_stage(world, exchange_id, "vetting")
        vetting = f"/api/v1/exchanges/{exchange_id}/vetting"
        amend = f"/api/v1/exchanges/{exchange_id}/amend"
        changes = {"decision": "request_changes", "note": "name the assays"}
        assert (await world.post("broker", vetting, changes)).status_code == 200
        await until_stage(world, exchange_id, "changes_requested")
        amended = {"title": "A better title", "note": "assays named"}
        assert (await world.post("sme", amend, amended)).status_code == 200
        await until_stage(world, exchange_id, "vetting")
        again = await world.post("sme", amend, amended)
        assert again.status_code == 200 and again.json()["detail"] == "already decided"
        assert (await world.post("broker", vetting, {"decision": "approve"})).status_code == 200
        await until_stage(world, exchange_id, "matching")

        new_title = await world.post("sme", amend, {**amended, "title": "A title after vetting"})
        same = await world.post("sme", amend, amended)

        assert new_title.status_code == 409, new_title.text
        assert "matching" in new_title.json()["error"]["message"]
        assert same.status_code == 409, same.text
        session.expire_all()
        assert session.get(Exchange, exchange_id).title == "A better title"  # type: ignore[union-attr]


class UnreachableTemporal:
    """A connected client whose server has gone: every call is refused as UNAVAILABLE."""

    def __init__(self) -> None:
        self.starts = 0

    async def start_workflow(self, *_: Any, **__: Any) -> None:
        self.starts += 1
        raise RPCError("connection refused", RPCStatusCode.UNAVAILABLE, b"")


class TestCreateWithTemporalGone:
    async def test_503_and_no_exchange_is_left_without_a_workflow(
        self, db: Engine, session: Session, api_client: ClientFactory, settings: Settings
    ) -> None:
        add_organisation(session, "bw-sme", "biowin")
        _, token = user_with_token(session, "anna@bw.example", "sme", "biowin", "bw-sme")
        temporal = UnreachableTemporal()
        async with api_client(temporal_client=cast(Client, temporal)) as client:
            plain = await client.post(
                "/api/v1/exchanges", json=REQUEST, headers={"Authorization": f"Bearer {token}"}
            )
            keyed = await client.post(
                "/api/v1/exchanges",
                json=REQUEST,
                headers={"Authorization": f"Bearer {token}", "Idempotency-Key": "try-1"},
            )
            retried = await client.post(
                "/api/v1/exchanges",
                json=REQUEST,
                headers={"Authorization": f"Bearer {token}", "Idempotency-Key": "try-1"},
            )
        assert temporal.starts == 3
        for response in (plain, keyed, retried):
            assert response.status_code == 503, response.text
            error = response.json()["error"]
            assert error["code"] == "unavailable" and "nothing was saved" in error["message"]
        session.expire_all()
        assert session.exec(select(Exchange)).all() == []


def declining_contact_named(text: str) -> list[str]:
    return [
        name for name in ("bd@isartox.example", "Jonas Weber", "Isar Tox", "bm-cro") if name in text
    ]


class TestWhoSeesWhat:
    async def test_after_a_decline_only_its_cluster_and_the_home_side_name_the_partner(
        self, world: World
    ) -> None:
        exchange_id = await approved(world)
        path = f"/api/v1/exchanges/{exchange_id}"
        shortlist = await world.post(
            "broker", f"{path}/shortlist", {"organisation_ids": ["bm-cro", "kr-cro"]}
        )
        assert shortlist.status_code == 200, shortlist.text
        await until_stage(world, exchange_id, "host_review")
        for who, candidate in (("host_biom", "bm-cro"), ("host_klsk", "kr-cro")):
            endorsed = await world.post(
                who, f"{path}/host-review", {"organisation_id": candidate, "decision": "endorse"}
            )
            assert endorsed.status_code == 200, endorsed.text
        invitation = await mail_to(world, "bd@isartox.example", "introduction_request")
        token = LINK.findall(text_part(invitation))[0][1]
        declined = await world.client.post(
            f"/api/v1/actions/{token}", json={"action": "decline", "reason": "fully booked"}
        )
        assert declined.status_code == 200, declined.text

        def decline_recorded() -> bool:
            with Session(world.engine) as session:
                return bool(
                    session.exec(
                        select(ExchangeEvent).where(
                            ExchangeEvent.exchange_id == exchange_id,
                            ExchangeEvent.kind == "introduction_declined",
                        )
                    ).first()
                )

        await eventually(decline_recorded, what="the decline in the timeline")
        detail = {
            who: (await world.get(who, path)).text
            for who in ("sme", "broker", "manager", "host_biom", "host_klsk")
        }
        candidates = (await world.get("host_klsk", f"{path}/candidates")).json()

        # The home side and the partner's own cluster read the decline and who declined...
        for who in ("broker", "manager", "host_biom"):
            assert "bd@isartox.example" in detail[who], who
        # ...the requester and the other candidate's cluster never learn who it was.
        for who in ("sme", "host_klsk"):
            assert declining_contact_named(detail[who]) == [], (who, detail[who])
        assert [c["organisation_id"] for c in candidates] == ["kr-cro"]
        klsk = json.loads(detail["host_klsk"])
        assert [c["organisation_id"] for c in klsk["state"]["candidates"]] == ["kr-cro"]
        sme = json.loads(detail["sme"])
        assert sme["state"]["candidates"] == [] and sme["state"]["shortlist"] == []
        # The web app's exchange page follows the same rules.
        pages = {
            who: (await sign_in(world, who).get(f"/exchanges/{exchange_id}")).text
            for who in ("broker", "sme", "host_klsk")
        }
        world.client.cookies.clear()
        assert "bd@isartox.example" in pages["broker"]
        for who in ("sme", "host_klsk"):
            assert declining_contact_named(pages[who]) == [], (who, pages[who])


class TestRepeatsAndLimits:
    async def test_repeats_of_a_decision_in_force_add_nothing_to_the_history(
        self, world: World
    ) -> None:
        exchange_id = await approved(world)
        path = f"/api/v1/exchanges/{exchange_id}"
        await world.post("broker", f"{path}/shortlist", {"organisation_ids": ["bm-cro"]})
        await until_stage(world, exchange_id, "host_review")
        review = {"organisation_id": "bm-cro", "decision": "endorse"}
        first = await world.post("host_biom", f"{path}/host-review", review)
        assert first.status_code == 200 and first.json()["detail"] == ""
        handle = world.env.client.get_workflow_handle(f"exchange-{exchange_id}")

        async def updates() -> int:
            history = await handle.fetch_history()
            return sum(
                e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
                for e in history.events
            )

        before = await updates()
        repeats = [await world.post("host_biom", f"{path}/host-review", review) for _ in range(20)]

        assert {(r.status_code, r.json()["detail"]) for r in repeats} == {(200, "already decided")}
        assert await updates() == before

    async def test_a_first_decision_goes_to_the_workflow_without_asking_its_state(
        self, world: World, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        exchange_id = await world.create()
        await until_stage(world, exchange_id, "vetting")
        asked: list[str] = []
        query = WorkflowHandle.query

        async def counted(
            handle: WorkflowHandle[Any, Any], name: Any, *args: Any, **kw: Any
        ) -> Any:
            asked.append(str(name))
            return await query(handle, name, *args, **kw)

        monkeypatch.setattr(WorkflowHandle, "query", counted)
        path = f"/api/v1/exchanges/{exchange_id}/vetting"
        first = await world.post("broker", path, {"decision": "approve"})
        assert first.status_code == 200 and first.json()["detail"] == ""
        assert asked == []

        def recorded() -> bool:
            with Session(world.engine) as session:
                return (
                    session.exec(
                        select(ExchangeEvent).where(
                            ExchangeEvent.exchange_id == exchange_id,
                            ExchangeEvent.kind == "vetting_approve",
                        )
                    ).first()
                    is not None
                )

        await eventually(recorded, what="the approval recorded")
        # An approval recorded as the latest verdict is final: SQL answers the repeat.
        again = await world.post("broker", path, {"decision": "approve"})
        assert again.status_code == 200 and again.json()["detail"] == "already decided"
        assert asked == []

    async def test_decisions_beyond_the_limit_get_429_with_retry_after(
        self, db: Engine, time_skipping_env: WorkflowEnvironment
    ) -> None:
        async with running_world(db, time_skipping_env, decisions_per_client=3) as world:
            exchange_id = await world.create()
            path = f"/api/v1/exchanges/{exchange_id}/vetting"
            answers = [
                await world.post("other_broker", path, {"decision": "approve"}) for _ in range(4)
            ]
            links = [
                await world.client.post("/api/v1/actions/" + "x" * 32, json={"action": "accept"})
                for _ in range(world.settings.link_actions_per_client + 1)
            ]
            page = await world.client.post("/t/" + "x" * 32, data={"action": "accept"})
        assert page.status_code == 429
        assert "Too many attempts in a short time" in page.text
        assert [a.status_code for a in answers] == [404, 404, 404, 429]
        refused = answers[-1]
        assert refused.json()["error"]["code"] == "too_many_requests"
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        assert {a.status_code for a in links[:-1]} == {404}
        assert links[-1].status_code == 429 and "Retry-After" in links[-1].headers


class TestNoWorker:
    async def test_a_decision_answers_503_busy_within_the_timeout(
        self,
        db: Engine,
        session: Session,
        api_client: ClientFactory,
        time_skipping_env: WorkflowEnvironment,
    ) -> None:
        # A task queue of this test's own, which no worker polls.
        settings = make_settings(
            db.url.render_as_string(hide_password=False), temporal_timeout_seconds=1
        )
        add_organisation(session, "bw-sme", "biowin")
        _, sme = user_with_token(session, "anna@bw.example", "sme", "biowin", "bw-sme")
        _, broker = user_with_token(session, "broker@bw.example", "broker", "biowin")
        async with api_client(settings, time_skipping_env.client) as client:
            created = await client.post(
                "/api/v1/exchanges", json=REQUEST, headers={"Authorization": f"Bearer {sme}"}
            )
            assert created.status_code == 201, created.text
            started = time.monotonic()
            decided = await client.post(
                f"/api/v1/exchanges/{created.json()['id']}/vetting",
                json={"decision": "approve"},
                headers={"Authorization": f"Bearer {broker}"},
            )
            took = time.monotonic() - started
        # Temporal keeps the Update until a worker comes: the decision may still be taken.
        assert decided.status_code == 503, decided.text
        assert decided.json()["error"]["code"] == "pending"
        assert decided.headers["Retry-After"]
        assert took < 5
