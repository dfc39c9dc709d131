import threading
import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta
from email.message import EmailMessage
from typing import Any

import pytest
from icalendar import Calendar
from sqlalchemy import Engine
from sqlmodel import Session, select
from temporalio import workflow
from temporalio.client import WorkflowFailureError
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment
from temporalio.worker import Worker

from activities.email import EmailActivities, SendEmailInput, SendEmailOutput
from bench.stack import free_port
from ce4big.models import EmailLog
from ce4big.settings import Settings
from emails.contexts import MailContext
from emails.render import EmailRenderer, RenderedEmail
from emails.samples import sample_context
from emails.sender import message_id_for
from tests.conftest import make_settings
from tests.emails.mailserver import RecordingHandler, smtp_server

CLAIRE = "claire@nantesgene.example"


@workflow.defn(sandboxed=False)
class SendEmailWorkflow:
    """Calls the activity the way the exchange workflow does: retried with back-off."""

    @workflow.run
    async def run(self, data: SendEmailInput) -> SendEmailOutput:
        result: SendEmailOutput = await workflow.execute_activity(
            "send_email",
            data,
            result_type=SendEmailOutput,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(
                initial_interval=timedelta(milliseconds=100),
                backoff_coefficient=1.0,
                maximum_attempts=5,
            ),
        )
        return result


class FakeTransport:
    def __init__(self) -> None:
        self.sent: list[EmailMessage] = []

    async def send(self, *, message: EmailMessage, sender: str, recipients: Sequence[str]) -> None:
        self.sent.append(message)


class ThreadRecordingRenderer(EmailRenderer):
    """The real renderer, noting the thread each render runs on."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: list[int] = []

    def render(
        self, *, kind: str, context: MailContext, language: str, timezone: str
    ) -> RenderedEmail:
        self.threads.append(threading.get_ident())
        return super().render(kind=kind, context=context, language=language, timezone=timezone)


def _settings(db: Engine, port: int) -> Settings:
    return make_settings(
        db.url.render_as_string(hide_password=False), smtp_host="127.0.0.1", smtp_port=port
    )


def _input(kind: str = "request_approved", **changes: Any) -> SendEmailInput:
    values: dict[str, Any] = {
        "idempotency_key": f"exchange-42:{kind}:{CLAIRE}",
        "kind": kind,
        "to_email": CLAIRE,
        "to_name": "Claire Moreau",
        "language": "fr",
        "timezone": "Europe/Paris",
        "context": sample_context(kind, base_url="http://testserver"),
        "exchange_id": None,
        **changes,
    }
    return SendEmailInput(**values)


def _meeting_input() -> SendEmailInput:
    context = sample_context("meeting_confirmed", base_url="http://testserver")
    invite = {
        "start": context["start"],
        "end": context["end"],
        "timezone": "Europe/Paris",
        "summary": "CE4BIG: NantesGene Therapeutics and Kraków Preclinical Services",
        "location": context["location"],
        "attendees": [
            {"email": CLAIRE, "name": "Claire Moreau"},
            {"email": "t.wisniewski@krakow-preclinical.example", "name": "Tomasz Wiśniewski"},
            {"email": "broker@atlanpole.example", "name": "Luc Garnier"},
        ],
    }
    return _input("meeting_confirmed", context=context, invite=invite)


def _log(db: Engine, key: str) -> EmailLog:
    with Session(db) as session:
        return session.exec(select(EmailLog).where(EmailLog.idempotency_key == key)).one()


async def _run(activities: EmailActivities, data: SendEmailInput) -> SendEmailOutput:
    result: SendEmailOutput = await ActivityEnvironment().run(activities.send_email, data)
    return result


class TestSendEmail:
    async def test_real_server_receives_alternative_parts_and_the_invite(self, db: Engine) -> None:
        handler = RecordingHandler()
        data = _meeting_input()
        async with smtp_server(handler) as port:
            activities = EmailActivities(settings=_settings(db, port), engine=db)
            result = await _run(activities, data)

        (received,) = handler.received
        message = received.parsed()
        assert result == SendEmailOutput(
            sent=True,
            message_id=message_id_for(
                idempotency_key=data.idempotency_key, domain="ce4big.example"
            ),
        )
        assert received.recipients == [CLAIRE]
        assert message["Message-ID"] == result.message_id
        assert message["From"] == "CE4BIG Exchange <exchange@ce4big.example>"
        assert message["To"] == "Claire Moreau <claire@nantesgene.example>"
        assert message["Subject"].startswith("Réunion confirmée")
        assert message["Content-Language"] == "fr"
        assert message.get_content_type() == "multipart/mixed"
        alternative, attachment = message.iter_parts()
        assert alternative.get_content_type() == "multipart/alternative"
        text, html, calendar_part = alternative.iter_parts()
        assert (text.get_content_type(), html.get_content_type()) == ("text/plain", "text/html")
        assert calendar_part.get_content_type() == "text/calendar"
        assert calendar_part.get_param("method") == "REQUEST"
        assert attachment.get_filename() == "invite.ics"
        calendar = Calendar.from_ical(calendar_part.get_content())
        (event,) = calendar.events
        assert calendar.method == "REQUEST"
        assert event.uid == "ce4big-exchange-42-meeting@ce4big.example"
        assert len(event.attendees) == 3
        row = _log(db, data.idempotency_key)
        assert (row.status, row.attempts, row.message_id) == ("sent", 1, result.message_id)
        assert row.subject == message["Subject"]

    async def test_smtp_down_then_up_delivers_exactly_once(self, db: Engine) -> None:
        handler = RecordingHandler()
        port = free_port()
        activities = EmailActivities(settings=_settings(db, port), engine=db)
        data = _input()

        with pytest.raises(ApplicationError) as down:
            await _run(activities, data)
        assert (down.value.type, down.value.non_retryable) == ("TemporaryEmailError", False)
        assert _log(db, data.idempotency_key).status == "pending"

        async with smtp_server(handler, port):
            first = await _run(activities, data)
            again = await _run(activities, data)

        assert (first.sent, again.sent) == (True, False)
        assert first.message_id == again.message_id
        assert len(handler.received) == 1
        row = _log(db, data.idempotency_key)
        assert (row.status, row.attempts, row.error) == ("sent", 2, None)

    async def test_temporal_retries_a_deferred_message_until_it_is_delivered(
        self, db: Engine, time_skipping_env: WorkflowEnvironment
    ) -> None:
        handler = RecordingHandler(defer_data=2)
        data = _input()
        async with smtp_server(handler) as port:
            result = await _execute(time_skipping_env, _settings(db, port), db, data)

        assert result.sent is True
        assert len(handler.received) == 1
        assert _log(db, data.idempotency_key).attempts == 3

    async def test_permanent_refusal_is_recorded_and_not_retried(
        self, db: Engine, time_skipping_env: WorkflowEnvironment
    ) -> None:
        handler = RecordingHandler(refuse={CLAIRE: "550 5.1.1 No such user here"})
        data = _input()
        async with smtp_server(handler) as port:
            with pytest.raises(WorkflowFailureError) as failure:
                await _execute(time_skipping_env, _settings(db, port), db, data)
            activities = EmailActivities(settings=_settings(db, port), engine=db)
            with pytest.raises(ApplicationError) as again:
                await _run(activities, data)

        activity_error = failure.value.cause
        assert isinstance(activity_error, ActivityError)
        cause = activity_error.cause
        assert isinstance(cause, ApplicationError)
        assert (cause.type, cause.non_retryable) == ("PermanentEmailError", True)
        assert (again.value.type, again.value.non_retryable) == ("PermanentEmailError", True)
        assert handler.rcpt_attempts == [CLAIRE]
        assert handler.received == []
        row = _log(db, data.idempotency_key)
        assert (row.status, row.attempts) == ("failed", 1)
        assert row.error is not None and "550" in row.error

    async def test_retried_activity_whose_email_was_sent_sends_nothing(self, db: Engine) -> None:
        transport = FakeTransport()
        activities = EmailActivities(settings=_settings(db, 1), engine=db, transport=transport)
        data = _input()

        first = await _run(activities, data)
        retried = await _run(activities, data)

        assert (first.sent, retried.sent) == (True, False)
        assert len(transport.sent) == 1

    async def test_header_injection_through_the_name_is_neutralised(self, db: Engine) -> None:
        handler = RecordingHandler()
        data = _input(to_name="Claire\r\nBcc: victim@evil.example\r\nX-Injected: yes")
        async with smtp_server(handler) as port:
            await _run(EmailActivities(settings=_settings(db, port), engine=db), data)

        (received,) = handler.received
        headers = received.raw.split(b"\r\n\r\n", 1)[0].lower()
        assert received.recipients == [CLAIRE]
        assert b"\r\nbcc:" not in headers and b"\r\nx-injected:" not in headers
        assert handler.rcpt_attempts == [CLAIRE]

    @pytest.mark.parametrize(
        ("changes", "error_type"),
        [
            ({"kind": "newsletter"}, "EmailContextError"),
            ({"context": {"exchange_id": 42}}, "EmailContextError"),
            ({"to_email": "claire(at)nantesgene"}, "EmailContextError"),
            ({"invite": {"start": "tomorrow"}}, "EmailContextError"),
        ],
    )
    async def test_an_email_that_cannot_be_built_fails_for_good(
        self, db: Engine, changes: dict[str, Any], error_type: str
    ) -> None:
        transport = FakeTransport()
        activities = EmailActivities(settings=_settings(db, 1), engine=db, transport=transport)
        data = replace(_input(), **changes)

        with pytest.raises(ApplicationError) as failure:
            await _run(activities, data)

        assert (failure.value.type, failure.value.non_retryable) == (error_type, True)
        assert transport.sent == []
        assert _log(db, data.idempotency_key).status == "failed"

    async def test_unknown_exchange_fails_for_good(self, db: Engine) -> None:
        activities = EmailActivities(
            settings=_settings(db, 1), engine=db, transport=FakeTransport()
        )

        with pytest.raises(ApplicationError) as failure:
            await _run(activities, _input(exchange_id=999_999))

        assert (failure.value.type, failure.value.non_retryable) == ("EmailContextError", True)

    async def test_rendering_runs_off_the_event_loop(self, db: Engine) -> None:
        renderer = ThreadRecordingRenderer()
        transport = FakeTransport()
        activities = EmailActivities(
            settings=_settings(db, 1), engine=db, transport=transport, renderer=renderer
        )

        await _run(activities, _meeting_input())

        (thread,) = renderer.threads
        assert thread != threading.get_ident()
        assert len(transport.sent) == 1

    async def test_language_without_templates_falls_back_to_english(self, db: Engine) -> None:
        transport = FakeTransport()
        activities = EmailActivities(settings=_settings(db, 1), engine=db, transport=transport)

        await _run(activities, _input(language="es"))

        (message,) = transport.sent
        assert message["Content-Language"] == "en"
        assert message["Subject"].startswith("Your request")


async def _execute(
    env: WorkflowEnvironment, settings: Settings, db: Engine, data: SendEmailInput
) -> SendEmailOutput:
    activities = EmailActivities(settings=settings, engine=db)
    task_queue = f"test-email-{uuid.uuid4()}"
    async with Worker(
        env.client,
        task_queue=task_queue,
        workflows=[SendEmailWorkflow],
        activities=[activities.send_email],
    ):
        return await env.client.execute_workflow(
            SendEmailWorkflow.run, data, id=f"send-{uuid.uuid4()}", task_queue=task_queue
        )
