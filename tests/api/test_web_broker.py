"""A broker's pages over HTTP: the inbox and the vet, shortlist and host-review screens, on a
running product (the app, the worker with the real activities, Temporal's test server)."""

import re
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import Engine
from sqlmodel import Session, col, select
from temporalio.testing import WorkflowEnvironment

from bench.drive import REQUEST
from ce4big.models import Exchange, ExchangeCandidate, ExchangeEvent, ExchangeStage, User, utcnow
from ce4big.websessions import redeem_sign_in_link, request_sign_in
from tests.api.conftest import CSRF
from tests.api.world import World, running_world
from tests.polling import eventually

TITLE = str(REQUEST["title"])
EMAILS = {
    "sme": "anna@meuse-kinase.example",
    "broker": "broker@biowin.example",
    "host_biom": "broker@biom.example",
    "host_klsk": "broker@klsk.example",
    "other_broker": "broker@atlanpole.example",
}


@pytest.fixture
async def world(db: Engine, time_skipping_env: WorkflowEnvironment) -> AsyncIterator[World]:
    async with running_world(db, time_skipping_env) as world:
        yield world


def sign_in(world: World, who: str) -> httpx.AsyncClient:
    """The world's client, now carrying `who`'s session cookie (and no one else's); the
    pages in English, whatever the cluster's language."""
    with Session(world.engine) as session:
        user = session.exec(select(User).where(User.email == EMAILS[who])).one()
        user.language = "en"
        session.add(user)
        ticket = request_sign_in(
            session=session, email=EMAILS[who], client=who, settings=world.settings, now=utcnow()
        )
        assert ticket is not None
        opened = redeem_sign_in_link(
            session=session, plain=ticket.token, settings=world.settings, now=utcnow()
        )
        session.commit()
    world.client.cookies.clear()
    world.client.cookies.set("ce4big_session", opened.cookie)
    return world.client


async def csrf(client: httpx.AsyncClient, path: str) -> str:
    page = await client.get(path)
    found = CSRF.search(page.text)
    assert found, page.text
    return found.group(1)


def stage_of(world: World, exchange_id: int) -> str | None:
    """The stage the read model has entered (its open spell)."""
    with Session(world.engine) as session:
        spell = session.exec(
            select(ExchangeStage).where(
                ExchangeStage.exchange_id == exchange_id, col(ExchangeStage.left_at).is_(None)
            )
        ).first()
        return str(spell.stage) if spell else None


def outcome_of(world: World, exchange_id: int) -> str | None:
    with Session(world.engine) as session:
        exchange = session.get(Exchange, exchange_id)
        return str(exchange.outcome) if exchange and exchange.outcome else None


async def at_stage(world: World, exchange_id: int, stage: str) -> None:
    await eventually(lambda: stage_of(world, exchange_id) == stage, what=f"stage {stage}")


def candidates(world: World, exchange_id: int) -> dict[str, ExchangeCandidate]:
    with Session(world.engine) as session:
        rows = session.exec(
            select(ExchangeCandidate).where(ExchangeCandidate.exchange_id == exchange_id)
        ).all()
        return {c.organisation_id: c for c in rows}


async def submitted(world: World) -> int:
    exchange_id = await world.create()
    await at_stage(world, exchange_id, "vetting")
    return exchange_id


async def vet(world: World, exchange_id: int, **fields: str) -> httpx.Response:
    client = sign_in(world, "broker")
    path = f"/exchanges/{exchange_id}/vet"
    return await client.post(path, data={"csrf_token": await csrf(client, path), **fields})


async def matching(world: World) -> int:
    exchange_id = await submitted(world)
    assert (await vet(world, exchange_id, decision="approve")).status_code == 303
    await at_stage(world, exchange_id, "matching")
    await eventually(lambda: candidates(world, exchange_id), what="candidates recorded")
    return exchange_id


class TestInbox:
    async def test_lists_a_request_to_vet_for_the_home_broker_only(self, world: World) -> None:
        exchange_id = await submitted(world)
        home = await sign_in(world, "broker").get("/inbox")
        elsewhere = await sign_in(world, "other_broker").get("/inbox")

        assert home.status_code == 200
        assert TITLE in home.text
        assert f'href="/exchanges/{exchange_id}/vet"' in home.text
        assert 'hx-trigger="every 60s"' in home.text and 'hx-select="#inbox-list"' in home.text
        assert elsewhere.status_code == 200
        assert TITLE not in elsewhere.text
        assert "Nothing waits on you" in elsewhere.text

    async def test_smes_cannot_open_broker_screens(self, world: World) -> None:
        exchange_id = await submitted(world)
        client = sign_in(world, "sme")
        for path in (
            "/inbox",
            f"/exchanges/{exchange_id}/vet",
            f"/exchanges/{exchange_id}/shortlist",
        ):
            response = await client.get(path)
            assert response.status_code == 403, path
            assert "Not part of your role" in response.text


class TestVetting:
    async def test_approving_from_the_screen_moves_the_exchange_on(self, world: World) -> None:
        exchange_id = await submitted(world)
        client = sign_in(world, "broker")
        screen = await client.get(f"/exchanges/{exchange_id}/vet")

        decided = await vet(world, exchange_id, decision="approve", note="")

        assert screen.status_code == 200
        assert str(REQUEST["description"]) in screen.text and "Meuse Kinase SA" in screen.text
        assert decided.status_code == 303
        assert decided.headers["location"] == "/inbox?done=approved"
        await at_stage(world, exchange_id, "matching")
        inbox = await client.get(decided.headers["location"])
        assert "The request is approved" in inbox.text

    async def test_rejecting_without_a_reason_shows_the_error_and_records_nothing(
        self, world: World
    ) -> None:
        exchange_id = await submitted(world)

        refused = await vet(world, exchange_id, decision="reject", note="  ")

        assert refused.status_code == 422
        assert 'href="#note"' in refused.text
        assert 'id="note-error"' in refused.text
        assert re.search(r'<textarea id="note"[^>]*aria-invalid="true"', refused.text)
        # The choice made is kept.
        assert re.search(r'value="reject" id="decision-reject" checked', refused.text)
        with Session(world.engine) as session:
            kinds = session.exec(
                select(ExchangeEvent.kind).where(ExchangeEvent.exchange_id == exchange_id)
            ).all()
            assert session.get(Exchange, exchange_id).status == "vetting"  # type: ignore[union-attr]
        assert not any(kind.startswith("vetting_") for kind in kinds)
        rejected = await vet(world, exchange_id, decision="reject", note="Outside the programme.")
        assert rejected.status_code == 303
        await eventually(lambda: outcome_of(world, exchange_id) == "rejected", what="rejected")

    async def test_a_broker_of_another_cluster_cannot_vet(self, world: World) -> None:
        exchange_id = await submitted(world)
        client = sign_in(world, "other_broker")
        token = await csrf(client, "/inbox")

        looked = await client.get(f"/exchanges/{exchange_id}/vet")
        posted = await client.post(
            f"/exchanges/{exchange_id}/vet", data={"csrf_token": token, "decision": "approve"}
        )

        assert looked.status_code in (403, 404) and posted.status_code in (403, 404)
        assert "<h1>" in looked.text and "Page not found" in looked.text
        assert stage_of(world, exchange_id) == "vetting"

    async def test_a_post_without_the_csrf_token_is_refused(self, world: World) -> None:
        exchange_id = await submitted(world)
        client = sign_in(world, "broker")

        response = await client.post(f"/exchanges/{exchange_id}/vet", data={"decision": "approve"})

        assert response.status_code == 403
        assert "This form has expired" in response.text
        with Session(world.engine) as session:
            assert session.get(Exchange, exchange_id).status == "vetting"  # type: ignore[union-attr]


class TestShortlistAndHostReview:
    async def test_shortlist_with_reasons_then_the_host_broker_endorses(self, world: World) -> None:
        exchange_id = await matching(world)
        client = sign_in(world, "broker")
        path = f"/exchanges/{exchange_id}/shortlist"
        screen = await client.get(path)
        reasons = [r for c in candidates(world, exchange_id).values() for r in c.reasons]

        too_many_order = await client.post(
            path,
            data={"csrf_token": await csrf(client, path), "pick": ["kr-cro"], "order-kr-cro": "9"},
        )
        chosen = await client.post(
            path,
            data={
                "csrf_token": await csrf(client, path),
                "pick": ["bm-cro", "kr-cro"],
                "order-bm-cro": "2",
                "order-kr-cro": "1",
            },
        )

        assert screen.status_code == 200
        assert "Isar Tox GmbH" in screen.text and "Wawel Tox" in screen.text
        assert reasons and reasons[0] in screen.text.replace("&#39;", "'")
        assert too_many_order.status_code == 422 and 'href="#order-kr-cro"' in too_many_order.text
        assert chosen.status_code == 303 and chosen.headers["location"] == "/inbox?done=shortlisted"
        await eventually(
            lambda: (
                {o: c.shortlist_position for o, c in candidates(world, exchange_id).items()}
                == {"kr-cro": 1, "bm-cro": 2}
            ),
            what="the ordered shortlist",
        )
        await at_stage(world, exchange_id, "host_review")

        wrong_cluster = await sign_in(world, "other_broker").get(
            f"/exchanges/{exchange_id}/host-review"
        )
        host = sign_in(world, "host_biom")
        review = f"/exchanges/{exchange_id}/host-review"
        inbox = await host.get("/inbox")
        page = await host.get(review)
        endorsed = await host.post(
            review,
            data={
                "csrf_token": await csrf(host, review),
                "organisation_id": "bm-cro",
                "decision": "endorse",
                "note": "A good fit.",
            },
        )

        assert wrong_cluster.status_code in (403, 404)
        assert f'href="/exchanges/{exchange_id}/host-review"' in inbox.text
        assert page.status_code == 200 and "Isar Tox GmbH" in page.text
        assert "Wawel Tox" not in page.text
        assert endorsed.status_code == 303 and endorsed.headers["location"].endswith("endorsed")
        after = await host.get(review)
        assert "Every candidate of your cluster has been reviewed" in after.text
        # The review waits on the other cluster, but it is off this broker's list at once.
        assert f'href="{review}"' not in (await host.get("/inbox")).text
        # The other cluster's broker vetoes its candidate: the review ends, both are recorded.
        klsk = sign_in(world, "host_klsk")
        vetoed = await klsk.post(
            review,
            data={
                "csrf_token": await csrf(klsk, review),
                "organisation_id": "kr-cro",
                "decision": "veto",
                "note": "Fully booked this quarter.",
            },
        )
        assert vetoed.status_code == 303
        await eventually(
            lambda: (
                {o: c.host_decision for o, c in candidates(world, exchange_id).items()}
                == {"bm-cro": "endorsed", "kr-cro": "vetoed"}
            ),
            what="both host decisions",
        )
