import html
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from markupsafe import escape
from sqlmodel import Session, select
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from api.routes.pages import (
    DONE_MESSAGES,
    ERROR_TEXTS,
    FIELD_LABELS,
    HEADINGS,
    PROPOSED_BY,
)
from ce4big.domain import CooperationType, HostVerdict, Language, VettingVerdict
from ce4big.i18n import format_span, translate
from ce4big.lifecycle import (
    Actor,
    HostReviewDecision,
    IntroductionAnswer,
    ShortlistDecision,
    SlotData,
    SlotProposal,
    VettingDecision,
)
from ce4big.models import ActionToken, Exchange, Organisation, utcnow
from ce4big.security import hash_token, new_token
from ce4big.users import add_user, set_user_active
from tests.api.conftest import ClientFactory
from tests.factories import add_organisation
from tests.workflows.conftest import (
    HOME_BROKER,
    Harness,
    exchange_input,
    host_broker,
    partner,
    running_harness,
    state_of,
    wait_stage,
    wait_until,
)
from workflows.exchange import ExchangeWorkflow

Handle = WorkflowHandle[ExchangeWorkflow, str]
PARTNER_ID = "bm-1"
PARTNER_ZONE = "Europe/Warsaw"
PROPOSER_ZONE = "America/New_York"
HOSTILE_TITLE = "<script>alert('x')</script> GLP tox"
_CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')


@pytest.fixture
async def harness(time_skipping_env: WorkflowEnvironment) -> AsyncIterator[Harness]:
    async with running_harness(time_skipping_env) as harness:
        yield harness


def add_exchange(session: Session, *, title: str = "GLP genotoxicity battery") -> Exchange:
    """The requester, the candidates the fake matcher finds, and an exchange of BioWin.

    The exchange gets a random id: a workflow id reused from an earlier test would send queries
    to a task queue that no worker polls any more."""
    add_organisation(session, "bw-sme", "biowin", name="Wallonia Lead Compounds", country="BE")
    for organisation_id, cluster in (
        (PARTNER_ID, "biom"),
        ("kr-1", "klsk"),
        ("atl-1", "atlanpole"),
    ):
        add_organisation(session, organisation_id, cluster, "cro", name=f"Org {organisation_id}")
    requester = add_user(
        session=session, email="sme@biowin.example", role="sme", organisation_id="bw-sme"
    )
    assert requester.id is not None
    exchange = Exchange(
        id=1_000_000 + uuid.uuid4().int % 1_000_000_000,
        title=title,
        description="An Ames test and an in vitro micronucleus assay under GLP.\nSoon.",
        requester_id=requester.id,
        organisation_id="bw-sme",
        home_cluster="biowin",
        cooperation_type=CooperationType.SERVICE_AGREEMENT,
        languages=[Language.EN],
    )
    session.add(exchange)
    session.commit()
    return exchange


def issue_link(
    session: Session,
    exchange: Exchange,
    kind: str,
    *,
    language: str = "en",
    expires_in: timedelta = timedelta(days=7),
    **payload: Any,
) -> str:
    assert exchange.id is not None
    token = new_token()
    values = {
        "side": "partner",
        "role": "partner",
        "organisation_id": PARTNER_ID,
        "cluster": "biom",
        "language": language,
        "timezone": PARTNER_ZONE,
        "subject": PARTNER_ID,
        **payload,
    }
    session.add(
        ActionToken(
            token_hash=token.hash,
            issue_key=f"test:{token.hash}",
            exchange_id=exchange.id,
            recipient="contact@bm-1.example",
            action=kind,
            payload=values,
            expires_at=utcnow() + expires_in,
        )
    )
    session.commit()
    return token.plain


def requester_of(exchange: Exchange) -> Actor:
    return Actor(
        email="sme@biowin.example",
        role="sme",
        user_id=exchange.requester_id,
        cluster="biowin",
        organisation_id="bw-sme",
    )


async def start_exchange(harness: Harness, exchange: Exchange) -> Handle:
    assert exchange.id is not None
    workflow_id = f"exchange-{exchange.id}"
    data = replace(exchange_input(exchange.id), requester_id=exchange.requester_id)
    return await harness.env.client.start_workflow(
        ExchangeWorkflow.run, data, id=workflow_id, task_queue=harness.task_queue
    )


async def drive_to_introduction(handle: Handle) -> None:
    await wait_stage(handle, "vetting")
    await handle.execute_update(
        ExchangeWorkflow.vet, VettingDecision(HOME_BROKER, VettingVerdict.APPROVE)
    )
    await wait_until(handle, lambda s: s.stage == "matching" and bool(s.candidates))
    await handle.execute_update(
        ExchangeWorkflow.set_shortlist, ShortlistDecision(HOME_BROKER, [PARTNER_ID])
    )
    await wait_stage(handle, "host_review")
    await handle.execute_update(
        ExchangeWorkflow.host_review,
        HostReviewDecision(host_broker("biom"), PARTNER_ID, HostVerdict.ENDORSE),
    )
    await wait_stage(handle, "introduction")


async def drive_to_slots(harness: Harness, handle: Handle, exchange: Exchange) -> SlotProposal:
    await drive_to_introduction(handle)
    await handle.execute_update(
        ExchangeWorkflow.answer_introduction,
        IntroductionAnswer(partner(PARTNER_ID), PARTNER_ID, accept=True),
    )
    await wait_stage(handle, "scheduling", ["requester"])
    now = await harness.now()
    proposal = SlotProposal(
        actor=requester_of(exchange),
        slots=[
            SlotData(
                start=(now + timedelta(days=d)).isoformat(),
                end=(now + timedelta(days=d, hours=1)).isoformat(),
            )
            for d in (3, 4)
        ],
        timezone=PROPOSER_ZONE,
    )
    await handle.execute_update(ExchangeWorkflow.propose_slots, proposal)
    await wait_stage(handle, "scheduling", ["partner"])
    return proposal


def token_row(session: Session, plain: str) -> ActionToken:
    session.expire_all()
    return session.exec(
        select(ActionToken).where(ActionToken.token_hash == hash_token(plain))
    ).one()


def csrf_of(page: httpx.Response) -> str:
    found = _CSRF.search(page.text)
    assert found, page.text
    return found.group(1)


async def post_form(
    client: httpx.AsyncClient, plain: str, data: dict[str, Any], *, csrf: bool = True
) -> httpx.Response:
    page = await client.get(f"/t/{plain}")
    assert page.status_code == 200, page.text
    form = {"csrf": csrf_of(page), **data} if csrf else data
    return await client.post(f"/t/{plain}", data=form)


def says(response: httpx.Response, language: str, message: str, **values: Any) -> bool:
    """The page shows the message, translated, as the reader sees it."""
    return translate(language, message, **values) in html.unescape(response.text)


class TestShowLinkPage:
    @pytest.mark.parametrize("language", ["en", "fr", "de", "pl"])
    async def test_renders_in_the_recipients_language(
        self,
        language: str,
        session: Session,
        api_client: ClientFactory,
        time_skipping_env: WorkflowEnvironment,
    ) -> None:
        exchange = add_exchange(session)
        plain = issue_link(session, exchange, "introduction", language=language)
        async with api_client(temporal_client=time_skipping_env.client) as client:
            page = await client.get(f"/t/{plain}")
        assert page.status_code == 200
        assert f'<html lang="{language}">' in page.text
        for message in (
            HEADINGS["introduction"],
            "Accept the introduction",
            "Decline",
            FIELD_LABELS["reason"],
        ):
            assert says(page, language, message), message
        assert "Org bm-1" in page.text and "Wallonia Lead Compounds" in page.text

    @pytest.mark.parametrize(
        "kind", ["vet", "amend", "shortlist", "host_review", "slots", "survey", "outcome", "view"]
    )
    async def test_renders_every_kind_of_link(
        self,
        kind: str,
        session: Session,
        api_client: ClientFactory,
        time_skipping_env: WorkflowEnvironment,
    ) -> None:
        exchange = add_exchange(session)
        plain = issue_link(session, exchange, kind, language="de")
        async with api_client(temporal_client=time_skipping_env.client) as client:
            page = await client.get(f"/t/{plain}")
        assert page.status_code == 200
        assert says(page, "de", HEADINGS[kind])
        forms = page.text.count('<form class="decision"')
        assert forms == {"vet": 3, "host_review": 2, "slots": 1, "shortlist": 0, "view": 0}.get(
            kind, 1
        )

    async def test_get_changes_nothing(
        self,
        session: Session,
        api_client: ClientFactory,
        harness: Harness,
    ) -> None:
        exchange = add_exchange(session)
        handle = await start_exchange(harness, exchange)
        await drive_to_introduction(handle)
        before = await state_of(handle)
        plain = issue_link(session, exchange, "introduction")
        async with api_client(temporal_client=harness.env.client) as client:
            for _ in range(3):  # a scanner, a preview, then the recipient
                assert (await client.get(f"/t/{plain}")).status_code == 200
        assert token_row(session, plain).used_at is None
        after = await state_of(handle)
        assert (after.stage, after.waiting_on, after.partner) == (
            before.stage,
            before.waiting_on,
            before.partner,
        )
        assert not [u for u in harness.fakes.candidate_updates if u.intro_status == "accepted"]

    async def test_sends_strict_security_headers_and_no_cookie(
        self, session: Session, api_client: ClientFactory, time_skipping_env: WorkflowEnvironment
    ) -> None:
        plain = issue_link(session, add_exchange(session), "introduction")
        async with api_client(temporal_client=time_skipping_env.client) as client:
            page = await client.get(f"/t/{plain}")
        policy = page.headers["content-security-policy"]
        assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
        assert "form-action 'self'" in policy
        # Styles and scripts come from the app's own /static only: nothing inline runs.
        assert "style-src 'self';" in policy and "script-src 'self';" in policy
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
        assert page.headers["referrer-policy"] == "no-referrer"
        assert page.headers["cache-control"] == "no-store"
        assert page.headers["x-frame-options"] == "DENY"
        # The token is the credential: nothing ties the page to one browser.
        assert "set-cookie" not in page.headers
        assert "<script" not in page.text

    async def test_escapes_text_from_users(
        self, session: Session, api_client: ClientFactory, time_skipping_env: WorkflowEnvironment
    ) -> None:
        plain = issue_link(session, add_exchange(session, title=HOSTILE_TITLE), "introduction")
        async with api_client(temporal_client=time_skipping_env.client) as client:
            page = await client.get(f"/t/{plain}")
        assert page.status_code == 200
        assert "<script>" not in page.text
        assert str(escape(HOSTILE_TITLE)) in page.text

    async def test_shows_each_slot_in_the_viewers_and_the_proposers_time_zone(
        self, session: Session, api_client: ClientFactory, harness: Harness
    ) -> None:
        exchange = add_exchange(session)
        handle = await start_exchange(harness, exchange)
        proposal = await drive_to_slots(harness, handle, exchange)
        plain = issue_link(session, exchange, "slots", language="fr")
        async with api_client(temporal_client=harness.env.client) as client:
            page = await client.get(f"/t/{plain}")
        assert page.status_code == 200
        for slot in proposal.slots:
            start, end = datetime.fromisoformat(slot.start), datetime.fromisoformat(slot.end)
            for zone in (PARTNER_ZONE, PROPOSER_ZONE):
                shown = format_span(start, end, zone=zone, language="fr")
                assert str(escape(shown)) in page.text, shown
            assert f'value="{slot.start}"' in page.text
        # The long zone names, so that the reader sees which time is whose.
        assert re.search(r"heure (normale|d.été) de l.Est", page.text)
        assert re.search(r"heure (normale|d.été) d.Europe centrale", page.text)
        assert says(page, "fr", PROPOSED_BY["requester"], zone=PROPOSER_ZONE)


class TestBrokenLinks:
    async def test_unknown_link_is_404_in_the_browsers_language(
        self, session: Session, api_client: ClientFactory, time_skipping_env: WorkflowEnvironment
    ) -> None:
        async with api_client(temporal_client=time_skipping_env.client) as client:
            page = await client.get(
                "/t/" + "x" * 43, headers={"Accept-Language": "pl-PL,pl;q=0.9,en;q=0.5"}
            )
            short = await client.get("/t/abc")
            put = await client.put("/t/" + "x" * 43)
        assert page.status_code == 404
        assert page.headers["content-type"].startswith("text/html")
        assert says(page, "pl", ERROR_TEXTS["not_found"][0]) and '<html lang="pl">' in page.text
        assert page.headers["referrer-policy"] == "no-referrer"
        assert short.status_code == 404 and says(short, "en", ERROR_TEXTS["not_found"][0])
        assert put.status_code == 405 and put.headers["content-type"].startswith("text/html")

    @pytest.mark.parametrize("state", ["expired", "revoked", "used"])
    async def test_dead_link_is_409_and_says_why(
        self,
        state: str,
        session: Session,
        api_client: ClientFactory,
        time_skipping_env: WorkflowEnvironment,
    ) -> None:
        exchange = add_exchange(session)
        expires_in = timedelta(seconds=-1) if state == "expired" else timedelta(days=1)
        plain = issue_link(session, exchange, "introduction", language="de", expires_in=expires_in)
        row = token_row(session, plain)
        if state == "revoked":
            row.revoked_at = utcnow()
        if state == "used":
            row.used_at = utcnow()
        session.add(row)
        session.commit()
        async with api_client(temporal_client=time_skipping_env.client) as client:
            page = await client.get(f"/t/{plain}")
            posted = await client.post(f"/t/{plain}", data={"action": "accept"})
        heading, explanation = ERROR_TEXTS[f"link_{state}"]
        for response in (page, posted):
            assert response.status_code == 409
            assert says(response, "de", heading) and says(response, "de", explanation)
            assert '<html lang="de">' in response.text
            assert "<form" not in response.text


CHANGES = ["deactivated", "moved to another cluster", "role changed", "contact changed"]


class TestLinksOfRecipientsWhoseAuthorityChanged:
    @pytest.mark.parametrize("change", CHANGES)
    async def test_is_refused_with_a_page_that_says_why(
        self,
        change: str,
        session: Session,
        api_client: ClientFactory,
        time_skipping_env: WorkflowEnvironment,
    ) -> None:
        exchange = add_exchange(session)
        broker = add_user(
            session=session, email="lea@biom.example", role="broker", cluster_id="biom"
        )
        session.commit()
        if change == "contact changed":
            plain = issue_link(session, exchange, "introduction", language="de")
        else:
            plain = issue_link(
                session,
                exchange,
                "host_review",
                language="de",
                side="broker",
                role="broker",
                user_id=broker.id,
                organisation_id=None,
            )
        async with api_client(temporal_client=time_skipping_env.client) as client:
            before = await client.get(f"/t/{plain}")
            if change == "deactivated":
                set_user_active(session=session, email=broker.email, active=False, now=utcnow())
            elif change == "moved to another cluster":
                add_user(session=session, email=broker.email, role="broker", cluster_id="klsk")
            elif change == "role changed":
                add_user(session=session, email=broker.email, role="manager", cluster_id="biom")
            else:
                organisation = session.get(Organisation, PARTNER_ID)
                assert organisation is not None
                organisation.contact_email = "new.contact@bm-1.example"
                session.add(organisation)
            session.commit()
            page = await client.get(f"/t/{plain}")
            posted = await client.post(
                f"/t/{plain}", data={"csrf": csrf_of(before), "action": "accept"}
            )
            described = await client.get(f"/api/v1/actions/{plain}")
        assert before.status_code == 200
        heading, explanation = ERROR_TEXTS["recipient_changed"]
        for response in (page, posted):
            assert response.status_code == 403
            assert says(response, "de", heading) and says(response, "de", explanation)
            assert "<form" not in response.text
        assert described.status_code == 403
        assert described.json()["error"]["code"] == "recipient_changed"
        assert token_row(session, plain).used_at is None

    async def test_works_again_once_the_account_is_activated(
        self, session: Session, api_client: ClientFactory, time_skipping_env: WorkflowEnvironment
    ) -> None:
        exchange = add_exchange(session)
        broker = add_user(
            session=session, email="lea@biom.example", role="broker", cluster_id="biom"
        )
        plain = issue_link(
            session, exchange, "host_review", role="broker", user_id=broker.id, organisation_id=None
        )
        async with api_client(temporal_client=time_skipping_env.client) as client:
            answers = []
            for active in (False, True):
                set_user_active(session=session, email=broker.email, active=active, now=utcnow())
                session.commit()
                answers.append((await client.get(f"/t/{plain}")).status_code)
        assert answers == [403, 200]


class TestSubmitLinkPage:
    async def test_accept_moves_the_exchange_on_and_uses_the_link(
        self, session: Session, api_client: ClientFactory, harness: Harness
    ) -> None:
        exchange = add_exchange(session)
        handle = await start_exchange(harness, exchange)
        await drive_to_introduction(handle)
        plain = issue_link(session, exchange, "introduction", language="fr")
        async with api_client(temporal_client=harness.env.client) as client:
            done = await post_form(client, plain, {"action": "accept"})
            assert done.status_code == 200, done.text
            assert says(done, "fr", DONE_MESSAGES["accept"]) and '<html lang="fr">' in done.text
            await wait_stage(handle, "scheduling", ["requester"])
            assert token_row(session, plain).used_at is not None
            again = await client.post(f"/t/{plain}", data={"action": "accept"})
        assert again.status_code == 409
        assert says(again, "fr", ERROR_TEXTS["link_used"][0])

    async def test_decline_passes_the_reason_on(
        self, session: Session, api_client: ClientFactory, harness: Harness
    ) -> None:
        exchange = add_exchange(session)
        handle = await start_exchange(harness, exchange)
        await drive_to_introduction(handle)
        plain = issue_link(session, exchange, "introduction")
        reason = "No capacity before the autumn & no GLP slot"
        async with api_client(temporal_client=harness.env.client) as client:
            done = await post_form(client, plain, {"action": "decline", "reason": reason})
        assert done.status_code == 200, done.text
        assert says(done, "en", DONE_MESSAGES["decline"])
        await wait_until(handle, lambda s: s.stage != "introduction")
        declined = [u for u in harness.fakes.candidate_updates if u.intro_status == "declined"]
        assert [(u.organisation_id, u.intro_reason) for u in declined] == [(PARTNER_ID, reason)]

    @pytest.mark.parametrize("csrf", ["missing", "forged", "another link's"])
    async def test_post_without_the_right_csrf_value_is_refused(
        self, csrf: str, session: Session, api_client: ClientFactory, harness: Harness
    ) -> None:
        exchange = add_exchange(session)
        handle = await start_exchange(harness, exchange)
        await drive_to_introduction(handle)
        plain = issue_link(session, exchange, "introduction")
        async with api_client(temporal_client=harness.env.client) as client:
            page = await client.get(f"/t/{plain}")
            form = {"action": "accept"}
            if csrf == "forged":
                form["csrf"] = "0" * 64
            if csrf == "another link's":
                other = issue_link(session, exchange, "introduction")
                form["csrf"] = csrf_of(await client.get(f"/t/{other}"))
                assert form["csrf"] != csrf_of(page)
            refused = await client.post(f"/t/{plain}", data=form)
        assert refused.status_code == 403
        assert says(refused, "en", ERROR_TEXTS["csrf_failed"][0])
        assert token_row(session, plain).used_at is None
        assert (await state_of(handle)).stage == "introduction"

    async def test_pick_slot_confirms_the_meeting(
        self, session: Session, api_client: ClientFactory, harness: Harness
    ) -> None:
        exchange = add_exchange(session)
        handle = await start_exchange(harness, exchange)
        proposal = await drive_to_slots(harness, handle, exchange)
        plain = issue_link(session, exchange, "slots", language="pl")
        chosen = proposal.slots[1]
        async with api_client(temporal_client=harness.env.client) as client:
            done = await post_form(client, plain, {"action": "pick_slot", "start": chosen.start})
        assert done.status_code == 200, done.text
        assert says(done, "pl", DONE_MESSAGES["pick_slot"])
        state = await wait_stage(handle, "meeting_scheduled")
        assert state.meeting is not None and state.meeting.start == chosen.start

    async def test_shortlist_of_checked_candidates_goes_to_host_review(
        self, session: Session, api_client: ClientFactory, harness: Harness
    ) -> None:
        exchange = add_exchange(session)
        handle = await start_exchange(harness, exchange)
        await wait_stage(handle, "vetting")
        await handle.execute_update(
            ExchangeWorkflow.vet, VettingDecision(HOME_BROKER, VettingVerdict.APPROVE)
        )
        await wait_until(handle, lambda s: s.stage == "matching" and bool(s.candidates))
        plain = issue_link(
            session,
            exchange,
            "shortlist",
            role="broker",
            cluster="biowin",
            side=None,
            organisation_id=None,
            subject=None,
        )
        async with api_client(temporal_client=harness.env.client) as client:
            page = await client.get(f"/t/{plain}")
            assert page.text.count('name="organisation_ids"') == 3
            assert "Org kr-1" in page.text and "<li>test</li>" in page.text
            form = {"csrf": csrf_of(page), "action": "shortlist"}
            done = await client.post(
                f"/t/{plain}", data={**form, "organisation_ids": ["kr-1", PARTNER_ID]}
            )
        assert done.status_code == 200, done.text
        assert says(done, "en", DONE_MESSAGES["shortlist"])
        state = await wait_stage(handle, "host_review")
        assert state.shortlist == ["kr-1", PARTNER_ID]

    async def test_decision_at_the_wrong_stage_is_409_and_keeps_the_link(
        self, session: Session, api_client: ClientFactory, harness: Harness
    ) -> None:
        exchange = add_exchange(session)
        handle = await start_exchange(harness, exchange)
        await wait_stage(handle, "vetting")
        plain = issue_link(session, exchange, "introduction", language="de")
        async with api_client(temporal_client=harness.env.client) as client:
            refused = await post_form(client, plain, {"action": "accept"})
        assert refused.status_code == 409
        assert says(refused, "de", ERROR_TEXTS["conflict"][0]) and "vetting" in refused.text
        assert token_row(session, plain).used_at is None
        assert (await state_of(handle)).stage == "vetting"

    async def test_action_the_link_does_not_allow_is_403(
        self, session: Session, api_client: ClientFactory, time_skipping_env: WorkflowEnvironment
    ) -> None:
        plain = issue_link(session, add_exchange(session), "introduction")
        async with api_client(temporal_client=time_skipping_env.client) as client:
            refused = await post_form(client, plain, {"action": "approve"})
        assert refused.status_code == 403
        assert says(refused, "en", ERROR_TEXTS["forbidden"][0])
        assert token_row(session, plain).used_at is None

    @pytest.mark.parametrize(
        ("kind", "form", "field"),
        [
            (
                "survey",
                {"action": "survey", "outcome": "cooperation_possible", "satisfaction": "9"},
                "satisfaction",
            ),
            (
                "slots",
                {
                    "action": "propose_slots",
                    "slot_start_0": "2001-02-03T10:00",
                    "timezone": "Europe/Paris",
                },
                "slots",
            ),
            (
                "slots",
                {"action": "propose_slots", "slot_start_0": "soon", "timezone": "Europe/Paris"},
                "slots",
            ),
            ("host_review", {"action": "veto", "note": "x" * 2001}, "note"),
        ],
    )
    async def test_invalid_input_shows_the_form_again_with_the_problem(
        self,
        kind: str,
        form: dict[str, str],
        field: str,
        session: Session,
        api_client: ClientFactory,
        time_skipping_env: WorkflowEnvironment,
    ) -> None:
        plain = issue_link(session, add_exchange(session), kind)
        async with api_client(temporal_client=time_skipping_env.client) as client:
            page = await post_form(client, plain, form)
        assert page.status_code == 422
        assert says(page, "en", ERROR_TEXTS["invalid"][0]) and says(page, "en", FIELD_LABELS[field])
        assert '<form class="decision"' in page.text
        assert token_row(session, plain).used_at is None
        if "slot_start_0" in form:
            assert f'value="{form["slot_start_0"]}"' in page.text
