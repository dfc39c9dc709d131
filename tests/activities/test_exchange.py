import base64
import json
import logging
import re
import traceback
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from icalendar import Calendar
from sqlalchemy import Engine
from sqlmodel import Session, col, select
from temporalio import workflow
from temporalio.api.enums.v1 import EventType
from temporalio.converter import value_to_type
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment
from temporalio.worker import Worker
from temporalio.workflow import ActivityConfig

from activities.email import EmailActivities
from activities.exchange import NOTIFY_OPTIONS, ExchangeActivities, email_data
from activities.types import (
    CandidateEmail,
    ChangesRequestedEmail,
    ExchangeClosedEmail,
    FindCandidatesInput,
    FindCandidatesOutput,
    NotifyInput,
    NotifyOutput,
    PartnerDeclinedEmail,
    RecordSurveyInput,
    RequestRejectedEmail,
    RevokeTokensInput,
    UpdateCandidateInput,
)
from ce4big.domain import Outcome
from ce4big.gdpr import ERASED_DOMAIN
from ce4big.lifecycle import Meeting
from ce4big.links import open_link
from ce4big.mailerrors import TemporaryEmailError
from ce4big.models import (
    ActionToken,
    EmailLog,
    ExchangeCandidate,
    Organisation,
    SurveyResponse,
    User,
    utcnow,
)
from ce4big.security import hash_token
from ce4big.settings import Settings
from emails.sender import SmtpTransport
from tests.conftest import make_settings
from tests.emails.mailserver import Received, RecordingHandler, smtp_server
from tests.exchange_world import (
    HOME_BROKERS,
    HOME_CLUSTER_TOX_ID,
    HOST_BROKER,
    MANAGER,
    PARTNER_EMAIL,
    PARTNER_ID,
    PARTNER_NAME,
    REQUESTER_EMAIL,
    REQUESTER_NAME,
    SECOND_PARTNER_ID,
    UNRELATED_ID,
    ExchangeWorld,
    add_exchange,
    add_world,
)

BASE_URL = "http://testserver"
STEP = "exchange-1:7:vetting_needed"


@dataclass
class Mail:
    handler: RecordingHandler
    activities: ExchangeActivities
    settings: Settings

    def to(self, address: str) -> list[Received]:
        return [r for r in self.handler.received if r.recipients == [address]]

    def one_to(self, address: str) -> EmailMessage:
        (received,) = self.to(address)
        return received.parsed()


@pytest.fixture
def world(session: Session) -> ExchangeWorld:
    return add_world(session)


@pytest.fixture
async def mail(db: Engine) -> AsyncIterator[Mail]:
    handler = RecordingHandler()
    async with smtp_server(handler) as port:
        settings = make_settings(
            db.url.render_as_string(hide_password=False),
            smtp_host="127.0.0.1",
            smtp_port=port,
            base_url=BASE_URL,
        )
        email = EmailActivities(settings=settings, engine=db)
        yield Mail(handler, ExchangeActivities(db, settings, email), settings)


@pytest.fixture
def activities(settings: Settings, db: Engine) -> ExchangeActivities:
    """For the activities that send nothing: no SMTP server behind them."""
    return ExchangeActivities(db, settings, EmailActivities(settings=settings, engine=db))


async def notify(mail: Mail, world: ExchangeWorld, **values: Any) -> NotifyOutput:
    data = NotifyInput(exchange_id=world.exchange_id, **{"step_key": STEP, **values})
    result: NotifyOutput = await ActivityEnvironment().run(mail.activities.notify, data)
    return result


def find(
    activities: ExchangeActivities, world: ExchangeWorld, exclude: list[str] | None = None
) -> FindCandidatesOutput:
    result: FindCandidatesOutput = ActivityEnvironment().run(
        activities.find_candidates,
        FindCandidatesInput(exchange_id=world.exchange_id, exclude=exclude or []),
    )
    return result


def stored_candidates(db: Engine, world: ExchangeWorld) -> list[ExchangeCandidate]:
    with Session(db) as session:
        query = select(ExchangeCandidate).where(ExchangeCandidate.exchange_id == world.exchange_id)
        return list(session.exec(query.order_by(col(ExchangeCandidate.rank))))


def add_candidate(
    session: Session, world: ExchangeWorld, organisation_id: str, intro_status: str | None = None
) -> None:
    session.add(
        ExchangeCandidate(
            exchange_id=world.exchange_id,
            organisation_id=organisation_id,
            rank=1,
            score=0.9,
            reasons=["GLP certified"],
            intro_status=intro_status,
        )
    )
    session.commit()


def tokens(db: Engine, world: ExchangeWorld) -> list[ActionToken]:
    with Session(db) as session:
        query = select(ActionToken).where(ActionToken.exchange_id == world.exchange_id)
        return list(session.exec(query.order_by(col(ActionToken.id))))


def text_of(message: EmailMessage) -> str:
    body = message.get_body(preferencelist=("plain",))
    assert isinstance(body, EmailMessage)
    return str(body.get_content())


def action_token(message: EmailMessage) -> str:
    """The token of the one action link, which must stand alone on a line of the text part."""
    link = re.compile(rf"{re.escape(BASE_URL)}/t/(\S+)")
    found = [m for line in text_of(message).splitlines() if (m := link.fullmatch(line))]
    assert len(found) == 1, text_of(message)
    return found[0].group(1)


def aware(moment: datetime) -> datetime:
    """SQLite hands datetimes back without their zone; both databases store UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def meeting(sequence: int = 0) -> Meeting:
    return Meeting(
        start="2031-05-06T10:00:00+02:00",
        end="2031-05-06T11:00:00+02:00",
        timezone="Europe/Brussels",
        mode="video",
        location="",
        sequence=sequence,
    )


class TestFindCandidates:
    def test_stores_ranked_candidates_with_their_reasons(
        self, db: Engine, world: ExchangeWorld, activities: ExchangeActivities
    ) -> None:
        found = find(activities, world)

        ids = [c.organisation_id for c in found.candidates]
        assert set(ids) == {PARTNER_ID, SECOND_PARTNER_ID}
        assert [c.score for c in found.candidates] == sorted(
            (c.score for c in found.candidates), reverse=True
        )
        assert all(c.reasons for c in found.candidates)
        rows = stored_candidates(db, world)
        assert [(r.organisation_id, r.rank) for r in rows] == [
            (organisation_id, rank) for rank, organisation_id in enumerate(ids, start=1)
        ]
        assert [r.reasons for r in rows] == [c.reasons for c in found.candidates]
        assert [r.score for r in rows] == [c.score for c in found.candidates]
        partner = next(c for c in found.candidates if c.organisation_id == PARTNER_ID)
        assert (partner.name, partner.cluster) == ("Munich Genetic Toxicology", "biom")

    def test_never_proposes_the_home_cluster_or_unrelated_organisations(
        self, world: ExchangeWorld, activities: ExchangeActivities
    ) -> None:
        ids = {c.organisation_id for c in find(activities, world).candidates}

        assert HOME_CLUSTER_TOX_ID not in ids and UNRELATED_ID not in ids

    def test_leaves_out_the_excluded_organisations(
        self, db: Engine, world: ExchangeWorld, activities: ExchangeActivities
    ) -> None:
        find(activities, world)

        second = find(activities, world, exclude=[PARTNER_ID])

        assert [c.organisation_id for c in second.candidates] == [SECOND_PARTNER_ID]
        rows = {r.organisation_id: r for r in stored_candidates(db, world)}
        assert rows[SECOND_PARTNER_ID].rank == 1
        # The candidate asked in the first round keeps its row and its history.
        assert PARTNER_ID in rows

    def test_retry_stores_each_candidate_once(
        self, db: Engine, world: ExchangeWorld, activities: ExchangeActivities
    ) -> None:
        first = find(activities, world)
        before = [(r.id, r.organisation_id, r.rank) for r in stored_candidates(db, world)]

        retried = find(activities, world)

        assert retried == first
        assert [(r.id, r.organisation_id, r.rank) for r in stored_candidates(db, world)] == before

    def test_unknown_exchange_fails_for_good(self, activities: ExchangeActivities) -> None:
        with pytest.raises(ApplicationError) as failure:
            ActivityEnvironment().run(
                activities.find_candidates, FindCandidatesInput(exchange_id=999_999)
            )

        assert (failure.value.type, failure.value.non_retryable) == ("UnknownExchange", True)


class TestUpdateCandidate:
    def test_sets_the_given_fields_and_keeps_the_others(
        self,
        db: Engine,
        session: Session,
        world: ExchangeWorld,
        activities: ExchangeActivities,
    ) -> None:
        add_candidate(session, world, PARTNER_ID)
        run = ActivityEnvironment().run
        update = activities.update_candidate

        run(update, UpdateCandidateInput(world.exchange_id, PARTNER_ID, shortlist_position=2))
        run(update, UpdateCandidateInput(world.exchange_id, PARTNER_ID, host_decision="endorsed"))
        run(
            update,
            UpdateCandidateInput(
                world.exchange_id, PARTNER_ID, intro_status="declined", intro_reason="booked"
            ),
        )

        (row,) = stored_candidates(db, world)
        assert (row.shortlist_position, row.host_decision, row.intro_status, row.intro_reason) == (
            2,
            "endorsed",
            "declined",
            "booked",
        )
        assert (row.rank, row.score, row.reasons) == (1, 0.9, ["GLP certified"])

    def test_an_organisation_that_is_no_candidate_fails_for_good(
        self, world: ExchangeWorld, activities: ExchangeActivities
    ) -> None:
        with pytest.raises(ApplicationError) as failure:
            ActivityEnvironment().run(
                activities.update_candidate,
                UpdateCandidateInput(world.exchange_id, PARTNER_ID, intro_status="asked"),
            )

        assert failure.value.non_retryable


def add_token(
    session: Session, exchange_id: int, action: str, *, used: bool = False
) -> ActionToken:
    key = f"exchange-{exchange_id}:{action}:{len(session.exec(select(ActionToken)).all())}"
    row = ActionToken(
        issue_key=key,
        exchange_id=exchange_id,
        recipient=HOME_BROKERS[0],
        action=action,
        token_hash=hash_token(key),
        expires_at=utcnow() + timedelta(days=30),
        used_at=utcnow() if used else None,
    )
    session.add(row)
    session.commit()
    return row


class TestRevokeTokens:
    @pytest.fixture
    def other_exchange(self, session: Session, world: ExchangeWorld) -> int:
        requester = session.get(User, world.requester_id)
        assert requester is not None
        other = add_exchange(session, requester)
        session.commit()
        assert other.id is not None
        return other.id

    def test_revokes_every_open_token_of_the_exchange(
        self,
        db: Engine,
        session: Session,
        world: ExchangeWorld,
        other_exchange: int,
        activities: ExchangeActivities,
    ) -> None:
        add_token(session, world.exchange_id, "vet")
        add_token(session, world.exchange_id, "shortlist")
        add_token(session, world.exchange_id, "vet", used=True)
        add_token(session, other_exchange, "vet")

        revoked = ActivityEnvironment().run(
            activities.revoke_tokens, RevokeTokensInput(world.exchange_id)
        )

        assert revoked == 2
        states = [(t.action, t.used_at is None, t.revoked_at is None) for t in tokens(db, world)]
        assert states == [("vet", True, False), ("shortlist", True, False), ("vet", False, True)]
        with Session(db) as fresh:
            others = fresh.exec(
                select(ActionToken).where(ActionToken.exchange_id == other_exchange)
            ).all()
        assert [t.revoked_at for t in others] == [None]

    def test_revokes_only_the_given_action(
        self,
        db: Engine,
        session: Session,
        world: ExchangeWorld,
        activities: ExchangeActivities,
    ) -> None:
        add_token(session, world.exchange_id, "vet")
        add_token(session, world.exchange_id, "shortlist")

        revoked = ActivityEnvironment().run(
            activities.revoke_tokens, RevokeTokensInput(world.exchange_id, action="vet")
        )

        assert revoked == 1
        states = [(t.action, t.revoked_at is not None) for t in tokens(db, world)]
        assert states == [("vet", True), ("shortlist", False)]

    def test_revoking_again_changes_nothing(
        self,
        db: Engine,
        session: Session,
        world: ExchangeWorld,
        activities: ExchangeActivities,
    ) -> None:
        add_token(session, world.exchange_id, "vet")
        run = ActivityEnvironment().run
        run(activities.revoke_tokens, RevokeTokensInput(world.exchange_id))
        first = [t.revoked_at for t in tokens(db, world)]

        again = run(activities.revoke_tokens, RevokeTokensInput(world.exchange_id))

        assert again == 0
        assert [t.revoked_at for t in tokens(db, world)] == first


EVERYONE = [
    "requester",
    "home_brokers",
    "managers",
    "host_brokers:biom",
    f"partner:{PARTNER_ID}",
]
EVERYONE_ADDRESSES = {REQUESTER_EMAIL, *HOME_BROKERS, MANAGER, HOST_BROKER, PARTNER_EMAIL}


class TestNotify:
    async def test_each_recipient_of_each_audience_gets_one_email(
        self, db: Engine, world: ExchangeWorld, mail: Mail
    ) -> None:
        result = await notify(
            mail,
            world,
            kind="exchange_closed",
            audiences=EVERYONE,
            email=ExchangeClosedEmail(outcome=Outcome.WITHDRAWN, reason="found a partner at home"),
        )

        assert result == NotifyOutput(sent=len(EVERYONE_ADDRESSES))
        received = [r.recipients for r in mail.handler.received]
        assert sorted(received) == sorted([a] for a in EVERYONE_ADDRESSES)
        for address in EVERYONE_ADDRESSES:
            assert "found a partner at home" in text_of(mail.one_to(address))
        with Session(db) as session:
            logs = session.exec(select(EmailLog)).all()
        assert {(log.idempotency_key, log.status) for log in logs} == {
            (f"{STEP}:{address}", "sent") for address in EVERYONE_ADDRESSES
        }

    async def test_action_email_carries_a_link_whose_token_is_stored_hashed(
        self, db: Engine, world: ExchangeWorld, mail: Mail
    ) -> None:
        before = utcnow()
        await notify(mail, world, kind="vetting_needed", audiences=["home_brokers"], action="vet")

        links = {address: action_token(mail.one_to(address)) for address in HOME_BROKERS}
        assert len(set(links.values())) == 2
        rows = {t.recipient: t for t in tokens(db, world)}
        assert set(rows) == set(HOME_BROKERS)
        for address, token in links.items():
            row = rows[address]
            assert row.token_hash == hash_token(token)
            assert token not in repr(row)
            assert (row.exchange_id, row.action, row.issue_key) == (
                world.exchange_id,
                "vet",
                f"{STEP}:{address}",
            )
            assert (row.used_at, row.revoked_at) == (None, None)
            lifetime = aware(row.expires_at) - before
            assert timedelta(days=29.9) < lifetime < timedelta(days=30.1)
            assert row.payload["side"] == "broker" and row.payload["role"] == "broker"

    async def test_same_step_again_sends_nothing_and_keeps_the_token(
        self, db: Engine, world: ExchangeWorld, mail: Mail
    ) -> None:
        await notify(mail, world, kind="vetting_needed", audiences=["home_brokers"], action="vet")
        first = [(t.id, t.token_hash, t.expires_at) for t in tokens(db, world)]

        again = await notify(
            mail, world, kind="vetting_needed", audiences=["home_brokers"], action="vet"
        )

        assert again == NotifyOutput(sent=0)
        assert len(mail.handler.received) == 2
        assert [(t.id, t.token_hash, t.expires_at) for t in tokens(db, world)] == first

    async def test_introduction_request_tells_the_partner_nothing_of_the_requesters_contact(
        self, world: ExchangeWorld, mail: Mail
    ) -> None:
        await notify(
            mail,
            world,
            kind="introduction_request",
            audiences=[f"partner:{PARTNER_ID}"],
            action="introduction",
            email=CandidateEmail(organisation_id=PARTNER_ID, kind="introduction_request"),
        )

        (received,) = mail.to(PARTNER_EMAIL)
        raw = received.raw.decode().lower()
        assert REQUESTER_EMAIL not in raw and REQUESTER_NAME.lower() not in raw
        assert "Wallonia Lead Compounds" in text_of(received.parsed())
        action_token(received.parsed())

    async def test_nothing_goes_to_an_erased_contact(
        self, db: Engine, world: ExchangeWorld, mail: Mail
    ) -> None:
        with Session(db) as session:
            organisation = session.get(Organisation, PARTNER_ID)
            assert organisation is not None
            organisation.contact_email = f"erased-0123456789ab@{ERASED_DOMAIN}"
            session.add(organisation)
            session.commit()

        result = await notify(
            mail,
            world,
            kind="introduction_request",
            audiences=[f"partner:{PARTNER_ID}"],
            action="introduction",
            email=CandidateEmail(organisation_id=PARTNER_ID, kind="introduction_request"),
        )

        assert result == NotifyOutput(sent=0) and mail.handler.received == []
        assert tokens(db, world) == []

    async def test_introduction_made_gives_each_side_the_others_contact(
        self, world: ExchangeWorld, mail: Mail
    ) -> None:
        made = CandidateEmail(organisation_id=PARTNER_ID, kind="introduction_made")
        await notify(
            mail,
            world,
            kind="introduction_made",
            audiences=["requester"],
            action="slots",
            step_key="exchange-1:12:introduction_made",
            email=made,
        )
        await notify(
            mail,
            world,
            kind="introduction_made",
            audiences=[f"partner:{PARTNER_ID}"],
            step_key="exchange-1:13:introduction_made",
            email=made,
        )

        to_requester = text_of(mail.one_to(REQUESTER_EMAIL))
        to_partner = text_of(mail.one_to(PARTNER_EMAIL))
        assert PARTNER_EMAIL in to_requester and PARTNER_NAME in to_requester
        assert "https://bm-tox.example" in to_requester
        assert REQUESTER_EMAIL in to_partner and REQUESTER_NAME in to_partner
        assert PARTNER_EMAIL not in to_partner
        action_token(mail.one_to(REQUESTER_EMAIL))

    async def test_meeting_confirmed_carries_an_invite_with_the_attendees(
        self, session: Session, world: ExchangeWorld, mail: Mail
    ) -> None:
        add_candidate(session, world, PARTNER_ID, intro_status="accepted")

        # As the workflow sends it: no e-mail data names the partner, who is the one who accepted.
        await notify(
            mail,
            world,
            kind="meeting_confirmed",
            audiences=["requester", f"partner:{PARTNER_ID}", "home_brokers"],
            invite="REQUEST",
            meeting=meeting(),
        )

        assert len(mail.handler.received) == 4
        assert "Munich Genetic Toxicology" in text_of(mail.one_to(REQUESTER_EMAIL))
        for received in mail.handler.received:
            (part,) = [
                p for p in received.parsed().walk() if p.get_content_type() == "text/calendar"
            ][:1]
            assert part.get_param("method") == "REQUEST"
            calendar = Calendar.from_ical(part.get_content())
            (event,) = calendar.events
            assert calendar.method == "REQUEST"
            attendees = {str(a).lower().removeprefix("mailto:") for a in event.attendees}
            assert attendees == {REQUESTER_EMAIL, PARTNER_EMAIL, *HOME_BROKERS}
            assert event.sequence == 0

    async def test_a_refused_recipient_is_reported_and_the_others_still_get_theirs(
        self, db: Engine, world: ExchangeWorld, mail: Mail
    ) -> None:
        refused = HOME_BROKERS[1]
        mail.handler.refuse[refused] = "550 5.1.1 No such user here"

        result = await notify(
            mail,
            world,
            kind="vetting_needed",
            audiences=["requester", "home_brokers"],
            action="vet",
        )

        assert result == NotifyOutput(sent=2, failed=[refused])
        assert sorted(r.recipients[0] for r in mail.handler.received) == sorted(
            [REQUESTER_EMAIL, HOME_BROKERS[0]]
        )
        with Session(db) as session:
            log = session.exec(
                select(EmailLog).where(EmailLog.idempotency_key == f"{STEP}:{refused}")
            ).one()
        assert log.status == "failed"

    async def test_unknown_exchange_fails_for_good(self, mail: Mail) -> None:
        with pytest.raises(ApplicationError) as failure:
            await ActivityEnvironment().run(
                mail.activities.notify,
                NotifyInput(
                    exchange_id=999_999, kind="request_received", audiences=[], step_key=STEP
                ),
            )

        assert (failure.value.type, failure.value.non_retryable) == ("UnknownExchange", True)

    async def test_data_of_another_kind_fails_for_good(
        self, world: ExchangeWorld, mail: Mail
    ) -> None:
        with pytest.raises(ApplicationError) as failure:
            await notify(
                mail,
                world,
                kind="request_rejected",
                audiences=["requester"],
                email=ChangesRequestedEmail(note="add a budget"),
            )

        assert (failure.value.type, failure.value.non_retryable) == ("EmailContextError", True)
        assert mail.handler.received == []

    async def test_partner_declined_names_the_partner_the_reason_and_the_next_step(
        self, world: ExchangeWorld, mail: Mail
    ) -> None:
        await notify(
            mail,
            world,
            kind="partner_declined",
            audiences=["requester"],
            email=PartnerDeclinedEmail(
                organisation_id=PARTNER_ID, next_step="back_to_matching", reason="fully booked"
            ),
        )

        text = text_of(mail.one_to(REQUESTER_EMAIL))
        assert "Munich Genetic Toxicology" in text and "fully booked" in text


class ReplyLostOnce:
    """Delivers through the real SMTP server, then loses the server's answer once: the e-mail
    went out, but its attempt fails before it is recorded as sent."""

    def __init__(self, settings: Settings) -> None:
        self._smtp = SmtpTransport(settings)
        self.lost = False

    async def send(self, *, message: EmailMessage, sender: str, recipients: Sequence[str]) -> None:
        await self._smtp.send(message=message, sender=sender, recipients=recipients)
        if not self.lost:
            self.lost = True
            raise TemporaryEmailError("connection reset before the server's answer")


def introduction_request(world: ExchangeWorld) -> NotifyInput:
    return NotifyInput(
        exchange_id=world.exchange_id,
        kind="introduction_request",
        audiences=[f"partner:{PARTNER_ID}"],
        step_key=STEP,
        action="introduction",
        email=CandidateEmail(organisation_id=PARTNER_ID, kind="introduction_request"),
    )


class TestNotifyRetried:
    async def test_every_copy_of_a_retried_email_carries_the_same_working_link(
        self, db: Engine, world: ExchangeWorld, mail: Mail
    ) -> None:
        transport = ReplyLostOnce(mail.settings)
        email = EmailActivities(settings=mail.settings, engine=db, transport=transport)
        activities = ExchangeActivities(db, mail.settings, email)
        data = introduction_request(world)

        with pytest.raises(ApplicationError) as first:
            await ActivityEnvironment().run(activities.notify, data)
        retried = await ActivityEnvironment().run(activities.notify, data)

        assert not first.value.non_retryable
        assert retried == NotifyOutput(sent=1)
        copies = [r.parsed() for r in mail.to(PARTNER_EMAIL)]
        assert len(copies) == 2
        # A receiving server may keep either copy (same Message-ID): both links must work.
        assert copies[0]["Message-ID"] == copies[1]["Message-ID"]
        links = [action_token(copy) for copy in copies]
        assert links[0] == links[1]
        (row,) = tokens(db, world)
        assert row.token_hash == hash_token(links[0]) and links[0] not in repr(row)
        with Session(db) as session:
            for link in links:
                opened = open_link(session=session, plain=link, now=utcnow())
                assert (opened.token.id, opened.actor.organisation_id) == (row.id, PARTNER_ID)

    async def test_links_differ_by_email_and_by_secret_key(
        self, db: Engine, world: ExchangeWorld, mail: Mail
    ) -> None:
        await notify(mail, world, kind="vetting_needed", audiences=["home_brokers"], action="vet")
        other_key = make_settings(
            db.url.render_as_string(hide_password=False),
            smtp_host="127.0.0.1",
            smtp_port=mail.settings.smtp_port,
            base_url=BASE_URL,
        )
        # The same e-mails again, from a deployment with another SECRET_KEY.
        with Session(db) as session:
            session.execute(EmailLog.__table__.delete())  # type: ignore[attr-defined]
            session.execute(ActionToken.__table__.delete())  # type: ignore[attr-defined]
            session.commit()
        again = ExchangeActivities(db, other_key, EmailActivities(settings=other_key, engine=db))
        await ActivityEnvironment().run(
            again.notify,
            NotifyInput(
                exchange_id=world.exchange_id,
                kind="vetting_needed",
                audiences=["home_brokers"],
                step_key=STEP,
                action="vet",
            ),
        )

        links = [action_token(r.parsed()) for r in mail.handler.received]
        assert len(links) == 4 and len(set(links)) == 4


def slow_notify(world: ExchangeWorld) -> NotifyInput:
    return NotifyInput(
        exchange_id=world.exchange_id,
        kind="exchange_closed",
        audiences=EVERYONE,
        step_key=f"exchange-{world.exchange_id}:9:exchange_closed:{uuid.uuid4().hex[:8]}",
        email=ExchangeClosedEmail(outcome=Outcome.CANCELLED, reason="programme ended"),
    )


# A heartbeat timeout scaled down from NOTIFY_OPTIONS' so that the test is quick, and an SMTP
# server slow enough that the whole notification lasts well beyond it.
TEST_HEARTBEAT = timedelta(seconds=5)
TEST_DATA_DELAY_SECONDS = 1.2


@workflow.defn(sandboxed=False)
class NotifyWorkflow:
    """Calls notify as the exchange workflow does, with a heartbeat timeout a test can wait out."""

    @workflow.run
    async def run(self, data: NotifyInput) -> NotifyOutput:
        options: ActivityConfig = {**NOTIFY_OPTIONS, "heartbeat_timeout": TEST_HEARTBEAT}
        result: NotifyOutput = await workflow.execute_activity(
            "notify", data, result_type=NotifyOutput, **options
        )
        return result


class TestNotifyHeartbeats:
    def test_options_bound_one_email_by_the_heartbeat_and_many_by_the_whole_run(self) -> None:
        heartbeat = NOTIFY_OPTIONS.get("heartbeat_timeout")
        whole = NOTIFY_OPTIONS.get("start_to_close_timeout")
        assert heartbeat is not None and whole is not None
        assert heartbeat >= timedelta(minutes=1) and whole >= 10 * heartbeat

    async def test_heartbeats_before_each_email_with_how_many_are_done(
        self, world: ExchangeWorld, mail: Mail
    ) -> None:
        mail.handler.data_delay_seconds = 0.2
        environment = ActivityEnvironment()
        beats: list[tuple[Any, ...]] = []
        environment.on_heartbeat = lambda *details: beats.append(details)

        result = await environment.run(mail.activities.notify, slow_notify(world))

        total = len(EVERYONE_ADDRESSES)
        assert result == NotifyOutput(sent=total)
        assert beats == [(done, total) for done in range(total)]

    @pytest.mark.slow
    @pytest.mark.devserver
    async def test_slow_recipients_outlast_the_heartbeat_timeout_in_one_attempt(
        self, world: ExchangeWorld, mail: Mail, dev_server_env: WorkflowEnvironment
    ) -> None:
        mail.handler.data_delay_seconds = TEST_DATA_DELAY_SECONDS
        total = len(EVERYONE_ADDRESSES)
        assert total * TEST_DATA_DELAY_SECONDS > TEST_HEARTBEAT.total_seconds()
        queue = f"notify-{uuid.uuid4()}"
        async with Worker(
            dev_server_env.client,
            task_queue=queue,
            workflows=[NotifyWorkflow],
            activities=[mail.activities.notify],
        ):
            handle = await dev_server_env.client.start_workflow(
                NotifyWorkflow.run, slow_notify(world), id=queue, task_queue=queue
            )
            result = await handle.result()
            history = await handle.fetch_history()

        assert result == NotifyOutput(sent=total)
        assert sorted(r.recipients[0] for r in mail.handler.received) == sorted(EVERYONE_ADDRESSES)
        attempts = [
            e.activity_task_started_event_attributes.attempt
            for e in history.events
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
        ]
        assert attempts == [1]
        assert not [
            e
            for e in history.events
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT
        ]


class TestNotifyLogs:
    async def test_log_records_name_no_address_and_no_token(
        self,
        caplog: pytest.LogCaptureFixture,
        db: Engine,
        world: ExchangeWorld,
        mail: Mail,
    ) -> None:
        # The worker logs at INFO (worker.py); the test's own SMTP server (aiosmtpd's mail.log)
        # is not the worker's.
        caplog.set_level(logging.INFO)
        deferred = HOME_BROKERS[1]
        mail.handler.refuse[deferred] = f"450 4.2.1 <{deferred}>: mailbox busy"

        with pytest.raises(ApplicationError) as failure:
            await notify(
                mail, world, kind="vetting_needed", audiences=["home_brokers"], action="vet"
            )
        del mail.handler.refuse[deferred]
        await notify(mail, world, kind="vetting_needed", audiences=["home_brokers"], action="vet")

        links = {action_token(r.parsed()) for r in mail.handler.received}
        assert len(links) == 2
        records = [r for r in caplog.records if not r.name.startswith("mail.")]
        assert len(records) >= 3, [r.getMessage() for r in records]
        # What a handler would write: the message, and any traceback with its causes.
        logged = "\n".join(
            [logging.Formatter().format(r) for r in records]
            + traceback.format_exception(failure.value)
        )
        assert "mailbox busy" in logged and "<address " in logged
        for secret in (*HOME_BROKERS, *links):
            assert secret not in logged
        assert "@" not in str(failure.value)


class TestRecordSurvey:
    def test_one_row_per_exchange_respondent_and_wave(
        self, db: Engine, world: ExchangeWorld, activities: ExchangeActivities
    ) -> None:
        run = ActivityEnvironment().run
        first = RecordSurveyInput(
            world.exchange_id, "requester", "survey", "informative_no_cooperation", 3, 6
        )
        run(activities.record_survey, first)
        run(
            activities.record_survey,
            RecordSurveyInput(
                world.exchange_id,
                "requester",
                "survey",
                "cooperation_possible",
                satisfaction=5,
                recommend=9,
                comment="very useful",
            ),
        )
        run(
            activities.record_survey, RecordSurveyInput(world.exchange_id, "partner", "survey", "x")
        )
        run(
            activities.record_survey,
            RecordSurveyInput(
                world.exchange_id,
                "requester",
                "outcome",
                "agreement_reached",
                agreement_type="licensing",
            ),
        )

        with Session(db) as session:
            rows = session.exec(
                select(SurveyResponse).order_by(
                    col(SurveyResponse.wave), col(SurveyResponse.respondent)
                )
            ).all()
        assert [
            (r.wave, r.respondent, r.outcome, r.satisfaction, r.recommend, r.comment) for r in rows
        ] == [
            ("outcome", "requester", "agreement_reached", None, None, ""),
            ("survey", "partner", "x", None, None, ""),
            ("survey", "requester", "cooperation_possible", 5, 9, "very useful"),
        ]
        assert rows[0].agreement_type == "licensing"


def recorded_notify_inputs() -> list[tuple[dict[str, Any], NotifyInput]]:
    """Every notify input in the recorded histories, as workflow code before typed e-mail data
    scheduled it: with its data in `extra`."""
    found = []
    for path in sorted((Path(__file__).parents[1] / "workflows" / "histories").glob("*.json")):
        for event in json.loads(path.read_text())["events"]:
            scheduled = event.get("activityTaskScheduledEventAttributes")
            if scheduled and scheduled["activityType"]["name"] == "notify":
                raw = json.loads(base64.b64decode(scheduled["input"]["payloads"][0]["data"]))
                found.append((raw, value_to_type(NotifyInput, raw, [])))
    return found


class TestEmailDataOfOlderNotifies:
    def test_an_attempt_scheduled_with_extra_gets_the_same_data_typed(self) -> None:
        recorded = recorded_notify_inputs()
        assert {"partner_declined", "exchange_closed", "outcome_wave"} <= {
            data.kind for _, data in recorded
        }
        for raw, data in recorded:
            email = email_data(data)
            # `side` never reached an e-mail; a `previous_start` of None is a first confirmation.
            said = {k: v for k, v in raw["extra"].items() if k != "side" and v is not None}
            if email is None:
                assert said == {}, data.kind
                continue
            assert email.kind == data.kind
            typed = {k: v for k, v in asdict(email).items() if k != "kind"}
            assert said.items() <= typed.items(), data.kind

    def test_typed_data_wins_over_extra(self) -> None:
        email = RequestRejectedEmail(reason="typed")
        data = NotifyInput(
            exchange_id=1,
            kind="request_rejected",
            audiences=[],
            step_key=STEP,
            email=email,
            extra={"reason": "untyped"},
        )

        assert email_data(data) is email
