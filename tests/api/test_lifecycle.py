"""A whole exchange driven only through the HTTP API and the links in the e-mails that a real
SMTP server receives, on Temporal's time-skipping server."""

import asyncio
import itertools
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, col, select
from temporalio.testing import WorkflowEnvironment

from ce4big.models import ExchangeStage
from tests.api.world import World, running_world

LINK = re.compile(r"^(http://testserver/t/(\S+))\r?$", re.MULTILINE)
DAY = 86400


@pytest.fixture
async def world(db: Engine, time_skipping_env: WorkflowEnvironment) -> AsyncIterator[World]:
    async with running_world(db, time_skipping_env) as world:
        yield world


def text_part(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


async def mail_to(world: World, address: str, kind: str) -> EmailMessage:
    """The e-mail of this kind to this address, waiting for the workflow to send it."""
    for _ in range(600):
        for received in world.mail.received:
            message = received.parsed()
            if address in received.recipients and message["X-CE4BIG-Kind"] == kind:
                return message
        await asyncio.sleep(0.05)
    sent = [(r.recipients, r.parsed()["X-CE4BIG-Kind"]) for r in world.mail.received]
    raise AssertionError(f"no {kind} e-mail to {address}; sent: {sent}")


async def link_in(world: World, address: str, kind: str) -> str:
    links = LINK.findall(text_part(await mail_to(world, address, kind)))
    assert len(links) == 1, links
    return str(links[0][1])


async def act(world: World, token: str, body: dict[str, object]) -> None:
    response = await world.client.post(f"/api/v1/actions/{token}", json=body)
    assert response.status_code == 200, response.text


async def stage(world: World, exchange_id: int) -> str:
    body = (await world.get("manager", f"/api/v1/exchanges/{exchange_id}")).json()
    return str(body["state"]["stage"]) if body["state"] else body["status"]


class TestWholeExchange:
    async def test_request_to_recorded_outcome_through_http_and_email_links(
        self, world: World, db: Engine
    ) -> None:
        sme, broker = "anna@meuse-kinase.example", "broker@biowin.example"
        host, partner = "broker@biom.example", "bd@isartox.example"
        exchange_id = await world.create()
        await mail_to(world, sme, "request_received")

        await act(world, await link_in(world, broker, "vetting_needed"), {"action": "approve"})
        await mail_to(world, sme, "request_approved")

        shortlist_link = await link_in(world, broker, "shortlist_needed")
        described = (await world.client.get(f"/api/v1/actions/{shortlist_link}")).json()
        assert described["kind"] == "shortlist"
        first = described["candidates"][0]["organisation_id"]
        assert first == "bm-cro"
        await act(world, shortlist_link, {"action": "shortlist", "organisation_ids": [first]})

        await act(world, await link_in(world, host, "host_review_request"), {"action": "endorse"})

        invitation = await mail_to(world, partner, "introduction_request")
        assert sme not in text_part(invitation), "no contact details before the partner accepts"
        intro_link = LINK.findall(text_part(invitation))[0][1]
        page = await world.client.get(f"/t/{intro_link}")
        assert page.status_code == 200
        assert await stage(world, exchange_id) == "introduction", "a GET never acts"
        await act(world, intro_link, {"action": "accept"})
        twice = await world.client.post(f"/api/v1/actions/{intro_link}", json={"action": "accept"})
        assert twice.status_code == 409 and twice.json()["error"]["code"] == "link_used"

        made = text_part(await mail_to(world, sme, "introduction_made"))
        assert partner in made, "the requester now has the partner's contact"
        assert sme in text_part(await mail_to(world, partner, "introduction_made"))

        # The workflow's clock is the test server's, which earlier tests may have moved ahead.
        now = max(datetime.now(UTC), await world.env.get_current_time())
        start = (now + timedelta(days=20)).replace(microsecond=0)
        slots = [
            {
                "start": (start + timedelta(days=d)).isoformat(),
                "end": (start + timedelta(days=d, hours=1)).isoformat(),
            }
            for d in (0, 1)
        ]
        proposal_link = LINK.findall(made)[0][1]
        await act(
            world,
            proposal_link,
            {"action": "propose_slots", "slots": slots, "timezone": "Europe/Brussels"},
        )
        pick_link = await link_in(world, partner, "slots_proposed")
        offered = (await world.client.get(f"/api/v1/actions/{pick_link}")).json()
        assert [s["start"] for s in offered["proposed_slots"]] == [s["start"] for s in slots]
        await act(world, pick_link, {"action": "pick_slot", "start": slots[1]["start"]})

        confirmed = await mail_to(world, partner, "meeting_confirmed")
        invites = [p for p in confirmed.walk() if p.get_content_type() == "text/calendar"]
        assert invites and "METHOD:REQUEST" in invites[0].get_content()
        assert await stage(world, exchange_id) == "meeting_scheduled"

        # Past the meeting (its wait is real time until the slot) and the survey delay.
        await world.env.sleep(30 * DAY)
        for address in (sme, partner):
            survey_link = await link_in(world, address, "survey_invitation")
            await act(
                world,
                survey_link,
                {
                    "action": "survey",
                    "outcome": "cooperation_possible",
                    "satisfaction": 5,
                    "recommend": 9,
                },
            )

        for _ in range(600):
            body = (await world.get("manager", f"/api/v1/exchanges/{exchange_id}")).json()
            if body["outcome"]:
                break
            await asyncio.sleep(0.05)
        assert (body["status"], body["outcome"], body["result"]) == (
            "closed",
            "completed",
            "cooperation_possible",
        )
        kinds = [e["kind"] for e in body["timeline"]]
        for kind in (
            "submitted",
            "vetting_approve",
            "shortlisted",
            "host_review_done",
            "introduction_accepted",
            "meeting_scheduled",
            "meeting_held",
            "survey_closed",
            "closed",
        ):
            assert kind in kinds, kind
        keys = [r.parsed()["Message-ID"] for r in world.mail.received]
        assert len(keys) == len(set(keys)), "no e-mail was sent twice"
        # The stage read model walked the same way, one spell after the other.
        with Session(db) as session:
            spells = session.exec(
                select(ExchangeStage)
                .where(ExchangeStage.exchange_id == exchange_id)
                .order_by(col(ExchangeStage.id))
            ).all()
        walked = list(dict.fromkeys(s.stage for s in spells))
        assert walked == [
            "vetting",
            "matching",
            "host_review",
            "introduction",
            "scheduling",
            "meeting_scheduled",
            "follow_up",
            "closed",
        ]
        assert all(a.left_at == b.entered_at for a, b in itertools.pairwise(spells))
