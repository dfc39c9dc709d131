"""The exchange pages of the web app, driven over HTTP by signed-in browsers, with a worker on
Temporal's time-skipping server and a real SMTP server."""

import asyncio
import re
import time
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import Engine
from sqlmodel import Session, col, select
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from bench.drive import REQUEST
from ce4big.models import Exchange, ExchangeCandidate, ExchangeStage, utcnow
from ce4big.settings import Settings
from ce4big.websessions import redeem_sign_in_link, request_sign_in
from tests.api.conftest import CSRF, ClientFactory
from tests.api.test_exchanges import UnreachableTemporal, approved
from tests.api.world import World, running_world
from tests.factories import add_organisation, user_with_token
from tests.polling import INTERVAL_SECONDS, TIMEOUT_SECONDS, eventually

LINK = re.compile(r"^http://testserver/t/(\S+?)\r?$", re.MULTILINE)
EMAILS = {
    "sme": "anna@meuse-kinase.example",
    "other_sme": "luc@erdre.example",
    "broker": "broker@biowin.example",
    "manager": "manager@ce4big.example",
}
PARTNER = "bd@isartox.example"
FORM = {
    "title": "Viral vector lot for a tox study",
    "description": "We need a GMP-like AAV lot of 1e15 vg for a GLP toxicology study in Q3.",
    "cooperation_type": "service_agreement",
    "partner_kinds": ["cdmo", "cro"],
    "required_certifications": ["GMP"],
    "target_clusters": ["biom", "klsk"],
    "meeting_format": "video",
    "languages": ["en", "de"],
}


@pytest.fixture
async def world(db: Engine, time_skipping_env: WorkflowEnvironment) -> AsyncIterator[World]:
    async with running_world(db, time_skipping_env) as world:
        yield world


class Browsers:
    """One signed-in browser per person, taking turns on the app's client."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.cookies: dict[str, str] = {}

    def as_(self, who: str) -> httpx.AsyncClient:
        if who not in self.cookies:
            with Session(self.world.engine) as session:
                ticket = request_sign_in(
                    session=session,
                    email=EMAILS[who],
                    client=f"test-{who}",
                    settings=self.world.settings,
                    now=utcnow(),
                )
                assert ticket is not None
                opened = redeem_sign_in_link(
                    session=session, plain=ticket.token, settings=self.world.settings, now=utcnow()
                )
                # The tests read the English messages (the users' clusters speak others).
                ticket.user.language = "en"
                session.add(ticket.user)
                session.commit()
            self.cookies[who] = opened.cookie
        client = self.world.client
        client.cookies.clear()
        client.cookies.set("ce4big_session", self.cookies[who])
        return client

    async def csrf(self, who: str, path: str) -> str:
        page = await self.as_(who).get(path)
        found = CSRF.search(page.text)
        assert found, page.text
        return found.group(1)

    async def post(self, who: str, path: str, data: Mapping[str, Any], page: str) -> httpx.Response:
        """A form of `page` sent as `who` does: with the page's CSRF token."""
        token = await self.csrf(who, page)
        return await self.as_(who).post(path, data={**data, "csrf_token": token})

    async def page_with(self, who: str, path: str, text: str) -> str:
        """The page once it shows `text`: the workflow records each step in its own time."""
        deadline = time.monotonic() + TIMEOUT_SECONDS
        while True:
            page = await self.as_(who).get(path)
            assert page.status_code == 200, page.text
            if text in page.text:
                return page.text
            if time.monotonic() > deadline:
                raise AssertionError(f"{path} never showed {text!r}:\n{page.text}")
            await asyncio.sleep(INTERVAL_SECONDS)


@pytest.fixture
def web(world: World) -> Browsers:
    return Browsers(world)


def exchanges(world: World) -> list[Exchange]:
    with Session(world.engine) as session:
        return list(session.exec(select(Exchange)).all())


def outcome_of(world: World, exchange_id: int) -> str | None:
    with Session(world.engine) as session:
        exchange = session.get(Exchange, exchange_id)
        return exchange.outcome if exchange else None


def mail_link(world: World, address: str, kind: str) -> str | None:
    for received in world.mail.received:
        message = received.parsed()
        if address in received.recipients and message["X-CE4BIG-Kind"] == kind:
            body = message.get_body(preferencelist=("plain",))
            assert body is not None
            found = LINK.findall(str(body.get_content()))
            return str(found[0]) if found else None
    return None


class TestRequestForm:
    async def test_an_sme_sends_a_request_and_a_double_submit_makes_one_exchange(
        self, web: Browsers, world: World
    ) -> None:
        form = await web.as_("sme").get("/exchanges/new")
        assert form.status_code == 200
        key = re.search(r'name="idempotency_key" value="([^"]+)"', form.text)
        assert key is not None
        token = CSRF.search(form.text)
        assert token is not None
        data = {**FORM, "idempotency_key": key.group(1), "csrf_token": token.group(1)}
        sent = await web.as_("sme").post("/exchanges/new", data=data)
        again = await web.as_("sme").post("/exchanges/new", data=data)
        assert sent.status_code == again.status_code == 303
        assert sent.headers["location"] == again.headers["location"]
        [exchange] = exchanges(world)
        assert sent.headers["location"] == f"/exchanges/{exchange.id}?done=created"
        assert exchange.title == FORM["title"]
        assert exchange.partner_kinds == ["cdmo", "cro"]
        assert exchange.target_clusters == ["biom", "klsk"]
        page = await web.as_("sme").get(sent.headers["location"])
        assert "sent to your cluster" in page.text and FORM["title"] in page.text

    async def test_bad_input_comes_back_with_inline_errors_and_what_was_typed(
        self, web: Browsers, world: World
    ) -> None:
        data = {**FORM, "title": "AB", "description": "too short", "cooperation_type": ""}
        del data["languages"]
        answer = await web.post("sme", "/exchanges/new", data, page="/exchanges/new")
        assert answer.status_code == 422
        text = answer.text
        assert 'class="error-summary"' in text
        for field in ("title", "description", "cooperation_type", "languages"):
            assert f'href="#new-{field}"' in text, field
            assert f'id="new-{field}-error"' in text, field
        assert 'id="new-title" name="title" maxlength="200" required value="AB"' in text
        assert 'aria-invalid="true"' in text
        assert 'value="cdmo" checked' in text and 'value="biom" checked' in text
        assert exchanges(world) == []

    async def test_only_an_sme_gets_the_form(self, web: Browsers) -> None:
        assert (await web.as_("manager").get("/exchanges/new")).status_code == 403

    async def test_a_post_without_the_csrf_token_is_refused(
        self, web: Browsers, world: World
    ) -> None:
        refused = await web.as_("sme").post("/exchanges/new", data=FORM)
        assert refused.status_code == 403 and "This form has expired" in refused.text
        assert exchanges(world) == []


class TestRequestFormWithTemporalGone:
    async def test_the_form_comes_back_as_typed_with_a_503_and_nothing_is_saved(
        self, session: Session, settings: Settings, api_client: ClientFactory
    ) -> None:
        add_organisation(session, "bw-sme", "biowin")
        user, _ = user_with_token(session, "anna@bw.example", "sme", "biowin", "bw-sme")
        user.language = "en"
        session.add(user)
        ticket = request_sign_in(
            session=session, email=user.email, client="test", settings=settings, now=utcnow()
        )
        assert ticket is not None
        opened = redeem_sign_in_link(
            session=session, plain=ticket.token, settings=settings, now=utcnow()
        )
        session.commit()
        temporal = UnreachableTemporal()
        async with api_client(temporal_client=cast(Client, temporal)) as client:
            client.cookies.set("ce4big_session", opened.cookie)
            form = await client.get("/exchanges/new")
            token = CSRF.search(form.text)
            assert token is not None, form.text
            answer = await client.post(
                "/exchanges/new",
                data={**FORM, "idempotency_key": "k-1", "csrf_token": token.group(1)},
            )
        assert temporal.starts == 1
        assert answer.status_code == 503
        assert 'class="error-summary"' in answer.text
        assert "The service is busy" in answer.text and "Nothing was recorded" in answer.text
        assert f'value="{FORM["title"]}"' in answer.text
        session.expire_all()
        assert session.exec(select(Exchange)).all() == []


class TestList:
    async def test_an_sme_sees_only_its_organisations_exchanges(
        self, web: Browsers, world: World
    ) -> None:
        mine = await world.create(title="Our toxicology request")
        theirs = await world.create("other_sme", title="Somebody else's request")
        page = await web.as_("sme").get("/exchanges")
        assert page.status_code == 200 and "My exchanges" in page.text
        assert f'href="/exchanges/{mine}"' in page.text
        assert "Somebody else" not in page.text
        hidden = await web.as_("sme").get(f"/exchanges/{theirs}")
        assert hidden.status_code == 404 and "Page not found" in hidden.text
        assert (await web.as_("sme").get("/exchanges/999999")).status_code == 404

    async def test_an_exchange_id_beyond_the_integer_column_is_not_found(
        self, web: Browsers
    ) -> None:
        for exchange_id in (2**31, 2**64):
            page = await web.as_("sme").get(f"/exchanges/{exchange_id}")
            assert page.status_code == 404 and "Page not found" in page.text
            shortlist = await web.as_("broker").get(f"/exchanges/{exchange_id}/shortlist")
            assert shortlist.status_code == 404

    async def test_the_filters_narrow_the_list(self, web: Browsers, world: World) -> None:
        changes = await world.create(title="Request alpha")
        late = await world.create(title="Request bravo")
        await world.create("other_sme", title="Request charlie")
        asked = await world.post(
            "broker",
            f"/api/v1/exchanges/{changes}/vetting",
            {"decision": "request_changes", "note": "name the assays"},
        )
        assert asked.status_code == 200, asked.text

        def spell_of_bravo() -> ExchangeStage | None:
            with Session(world.engine) as session:
                return session.exec(
                    select(ExchangeStage).where(
                        ExchangeStage.exchange_id == late, col(ExchangeStage.left_at).is_(None)
                    )
                ).first()

        spell = await eventually(spell_of_bravo, what="the vetting spell of bravo")
        assert spell is not None
        with Session(world.engine) as session:
            spell.deadline_at = utcnow() - timedelta(hours=1)
            session.add(spell)
            session.commit()

        async def titles(query: str) -> list[str]:
            page = await web.as_("manager").get(f"/exchanges?{query}")
            assert page.status_code == 200
            return re.findall(r"Request (alpha|bravo|charlie)</a>", page.text)

        assert sorted(await titles("")) == ["alpha", "bravo", "charlie"]
        assert await titles("home=atlanpole") == ["charlie"]
        assert await titles("overdue=1") == ["bravo"]
        tomorrow = (datetime.now(UTC) + timedelta(days=2)).date().isoformat()
        assert await titles(f"created_from={tomorrow}") == []
        assert sorted(await titles(f"created_to={tomorrow}")) == ["alpha", "bravo", "charlie"]
        await web.page_with("manager", "/exchanges?stage=changes_requested", "Request alpha")
        assert await titles("stage=changes_requested") == ["alpha"]
        overdue = await web.as_("manager").get("/exchanges?overdue=1")
        assert 'class="tag overdue"' in overdue.text
        nonsense = await web.as_("manager").get("/exchanges?stage=dreaming&page=x")
        assert nonsense.status_code == 200


class TestActions:
    async def test_the_requester_amends_when_changes_were_requested(
        self, web: Browsers, world: World
    ) -> None:
        exchange_id = await world.create()
        path = f"/exchanges/{exchange_id}"
        before = await web.as_("sme").get(path)
        assert "Amend your request" not in before.text
        await world.post(
            "broker",
            f"/api/v1/exchanges/{exchange_id}/vetting",
            {"decision": "request_changes", "note": "name the assays"},
        )
        page = await web.page_with("sme", path, "Amend your request")
        assert "name the assays" in page
        short = await web.post(
            "sme", f"{path}/amend", {"title": "No", "description": REQUEST["description"]}, path
        )
        assert short.status_code == 422 and 'href="#amend-title"' in short.text
        assert 'value="No"' in short.text
        other = await web.post(
            "other_sme", f"{path}/amend", {"title": "Hijacked"}, page="/exchanges"
        )
        assert other.status_code == 404
        done = await web.post(
            "sme",
            f"{path}/amend",
            {
                "title": "GLP toxicology: repeated-dose and Ames",
                "description": REQUEST["description"],
                "note": "assays named",
            },
            path,
        )
        assert done.status_code == 303 and done.headers["location"] == f"{path}?done=amended"
        [exchange] = exchanges(world)
        assert exchange.title == "GLP toxicology: repeated-dose and Ames"

    async def test_withdrawing_asks_for_confirmation_first(
        self, web: Browsers, world: World
    ) -> None:
        exchange_id = await world.create()
        path = f"/exchanges/{exchange_id}"
        confirm = await web.as_("sme").get(f"{path}/withdraw")
        assert confirm.status_code == 200 and "Withdraw this request?" in confirm.text
        assert outcome_of(world, exchange_id) is None, "a GET never acts"
        assert (await web.as_("broker").get(f"{path}/withdraw")).status_code == 403
        forged = await web.as_("sme").post(f"{path}/withdraw", data={"reason": "x"})
        assert forged.status_code == 403
        done = await web.post("sme", f"{path}/withdraw", {"reason": "solved"}, f"{path}/withdraw")
        assert done.status_code == 303 and done.headers["location"] == f"{path}?done=withdrawn"
        await eventually(
            lambda: outcome_of(world, exchange_id) == "withdrawn", what="the withdrawal"
        )
        page = await web.as_("sme").get(path)
        assert "Withdraw this request…" not in page.text

    async def test_a_manager_cancels_with_a_reason(self, web: Browsers, world: World) -> None:
        exchange_id = await world.create()
        path = f"/exchanges/{exchange_id}"
        assert (await web.as_("sme").get(f"{path}/cancel")).status_code == 403
        page = await web.as_("manager").get(path)
        assert f'href="{path}/cancel"' in page.text
        confirm = await web.as_("manager").get(f"{path}/cancel")
        assert "Cancel this exchange?" in confirm.text
        done = await web.post(
            "manager", f"{path}/cancel", {"reason": "duplicate request"}, f"{path}/cancel"
        )
        assert done.status_code == 303 and done.headers["location"] == f"{path}?done=cancelled"
        await eventually(
            lambda: outcome_of(world, exchange_id) == "cancelled", what="the cancellation"
        )

    async def test_the_partner_stays_hidden_until_it_accepts_then_slots_are_proposed(
        self, web: Browsers, world: World
    ) -> None:
        exchange_id = await approved(world)
        path = f"/exchanges/{exchange_id}"
        shortlist = await world.post(
            "broker", f"/api/v1/exchanges/{exchange_id}/shortlist", {"organisation_ids": ["bm-cro"]}
        )
        assert shortlist.status_code == 200, shortlist.text
        intro_link = await eventually(
            lambda: mail_link(world, "broker@biom.example", "host_review_request"),
            what="the host review e-mail",
        )
        endorsed = await world.client.post(
            f"/api/v1/actions/{intro_link}", json={"action": "endorse"}
        )
        assert endorsed.status_code == 200, endorsed.text

        def asked() -> bool:
            with Session(world.engine) as session:
                candidate = session.exec(
                    select(ExchangeCandidate).where(
                        ExchangeCandidate.exchange_id == exchange_id,
                        ExchangeCandidate.organisation_id == "bm-cro",
                    )
                ).first()
                return candidate is not None and candidate.intro_status == "asked"

        await eventually(asked, what="the introduction request")
        before = (await web.as_("sme").get(path)).text
        assert "Isar Tox" not in before and PARTNER not in before and "Jonas Weber" not in before
        assert "bm-cro" not in before and "BioM" not in before
        staff = (await web.as_("manager").get(path)).text
        assert "Isar Tox" in staff

        accept = await eventually(
            lambda: mail_link(world, PARTNER, "introduction_request"), what="the introduction"
        )
        accepted = await world.client.post(f"/api/v1/actions/{accept}", json={"action": "accept"})
        assert accepted.status_code == 200, accepted.text
        page = await web.page_with("sme", path, "Propose meeting slots")
        assert PARTNER in page and "Jonas Weber" in page

        zone = ZoneInfo("Europe/Brussels")
        now = max(datetime.now(UTC), await world.env.get_current_time())
        start = (
            (now + timedelta(days=20))
            .astimezone(zone)
            .replace(hour=10, minute=0, second=0, microsecond=0)
        )
        slots = {
            "slot_start_0": start.strftime("%Y-%m-%dT%H:%M"),
            "slot_minutes_0": "60",
            "slot_start_1": "",
            "timezone": "Europe/Brussels",
            "mode": "video",
            "location": "",
        }
        past = await web.post(
            "sme", f"{path}/slots", {**slots, "slot_start_0": "2020-01-06T10:00"}, path
        )
        assert past.status_code == 422
        assert 'href="#propose-slot_start_0"' in past.text and "in the future" in past.text
        assert 'value="2020-01-06T10:00"' in past.text
        sent = await web.post("sme", f"{path}/slots", slots, path)
        assert sent.status_code == 303, sent.text
        assert sent.headers["location"] == f"{path}?done=slots_proposed"
        await eventually(
            lambda: mail_link(world, PARTNER, "slots_proposed"), what="the slots e-mail"
        )
        shown = await web.page_with("sme", path, "Proposed meeting slots")
        assert "10:00" in shown
