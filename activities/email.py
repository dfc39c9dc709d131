"""The one activity that sends e-mail: render, log, deliver, at most once per idempotency key."""

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

from sqlalchemy import Engine
from temporalio import activity
from temporalio.exceptions import ApplicationError

from ce4big.i18n import negotiate_language
from ce4big.mailerrors import (
    EmailContextError,
    EmailError,
    PermanentEmailError,
    TemporaryEmailError,
)
from ce4big.maillog import EmailStatus, claim_email, record_failure, record_sent
from ce4big.security import loggable
from ce4big.settings import Settings
from emails.contexts import (
    EmailContext,
    Person,
    choose_timezone,
    parse_context,
    parse_invite,
)
from emails.invites import build_invite, meeting_uid
from emails.render import EmailRenderer, default_renderer
from emails.sender import (
    CalendarPart,
    SmtpTransport,
    Transport,
    build_message,
    message_id_for,
    parse_address,
    parse_mailbox,
)


@dataclass(frozen=True, kw_only=True)
class SendEmailInput:
    # One logical e-mail, e.g. "exchange-42:vetting:broker@biom.example"; sent at most once.
    idempotency_key: str
    kind: str
    to_email: str
    to_name: str
    language: str
    timezone: str
    # `emails.contexts.context_dict(...)` of the kind's context.
    context: dict[str, Any]
    exchange_id: int | None
    # `emails.contexts.Invite` as a dict, for meeting e-mails.
    invite: dict[str, Any] | None = None
    reply_to: str | None = None


@dataclass(frozen=True)
class SendEmailOutput:
    # False when the key had already been sent: nothing went out this time.
    sent: bool
    message_id: str


@dataclass(frozen=True, slots=True)
class _Prepared:
    message: EmailMessage
    sender: str
    recipient: str
    subject: str


class EmailActivities:
    def __init__(
        self,
        *,
        settings: Settings,
        engine: Engine,
        transport: Transport | None = None,
        renderer: EmailRenderer | None = None,
    ) -> None:
        self._engine = engine
        self._transport = transport or SmtpTransport(settings)
        self._renderer = renderer or default_renderer()
        self._sender = parse_mailbox(settings.mail_from)
        self._secret = settings.secret_key.get_secret_value()

    def _loggable(self, text: str) -> str:
        return loggable(text, secret=self._secret)

    def _failure(self, exc: EmailError) -> ApplicationError:
        # The worker logs a failed attempt with its message: no address in it. The e-mail log
        # keeps the whole error.
        return ApplicationError(
            self._loggable(str(exc)),
            type=type(exc).__name__,
            non_retryable=not isinstance(exc, TemporaryEmailError),
        )

    @activity.defn(name="send_email")
    async def send_email(self, data: SendEmailInput) -> SendEmailOutput:
        """Send one e-mail unless its key was already sent. Temporary SMTP failures raise a
        retryable error; refusals and unbuildable e-mails are logged as failed and raise a
        non-retryable one."""
        message_id = message_id_for(
            idempotency_key=data.idempotency_key, domain=self._sender.domain
        )
        language = negotiate_language(data.language)
        try:
            claim = await asyncio.to_thread(
                claim_email,
                engine=self._engine,
                idempotency_key=data.idempotency_key,
                exchange_id=data.exchange_id,
                recipient=data.to_email,
                kind=data.kind,
                language=language,
                message_id=message_id,
            )
        except EmailError as exc:
            raise self._failure(exc) from None
        key = self._loggable(data.idempotency_key)
        if claim.status == EmailStatus.SENT:
            activity.logger.info("e-mail %s already sent: not sending again", key)
            return SendEmailOutput(sent=False, message_id=claim.message_id)
        if claim.status == EmailStatus.FAILED:
            raise self._failure(PermanentEmailError(f"refused earlier: {claim.error}"))

        subject = ""
        try:
            # Rendering and building the message is CPU work: off the loop that polls Temporal
            # and runs every other activity of this worker.
            prepared = await asyncio.to_thread(
                self._prepare, data=data, language=language, message_id=message_id
            )
            subject = prepared.subject
            await self._transport.send(
                message=prepared.message, sender=prepared.sender, recipients=[prepared.recipient]
            )
        except EmailError as exc:
            permanent = not isinstance(exc, TemporaryEmailError)
            activity.logger.warning(
                "e-mail %s not sent (%s): %s", key, type(exc).__name__, self._loggable(str(exc))
            )
            await asyncio.to_thread(
                record_failure,
                engine=self._engine,
                idempotency_key=data.idempotency_key,
                subject=subject,
                error=f"{type(exc).__name__}: {exc}",
                permanent=permanent,
            )
            # Not chained: the worker would log the cause's text, addresses and all.
            raise self._failure(exc) from None
        # A crash between delivery and this record sends the e-mail again on retry; the
        # unchanged Message-ID lets the receiving side recognise the copy.
        await asyncio.to_thread(
            record_sent,
            engine=self._engine,
            idempotency_key=data.idempotency_key,
            subject=subject,
            at=datetime.now(UTC),
        )
        activity.logger.info("e-mail %s sent as %s", key, message_id)
        return SendEmailOutput(sent=True, message_id=message_id)

    def _prepare(self, *, data: SendEmailInput, language: str, message_id: str) -> _Prepared:
        context = parse_context(kind=data.kind, data=data.context)
        recipient = parse_address(email=data.to_email, name=data.to_name)
        reply_to = parse_address(email=data.reply_to) if data.reply_to else None
        rendered = self._renderer.render(
            kind=data.kind,
            context=context,
            language=language,
            timezone=choose_timezone(data.timezone, None),
        )
        now = datetime.now(UTC)
        calendar = None
        if data.invite is not None:
            if not isinstance(context, EmailContext):
                raise EmailContextError(f"{data.kind}: an invite needs an exchange")
            invite = parse_invite(data.invite)
            organizer = invite.organizer or Person(
                email=self._sender.addr_spec, name=self._sender.display_name
            )
            uid = invite.uid or meeting_uid(
                exchange_id=context.exchange_id, domain=self._sender.domain
            )
            ics = build_invite(invite=invite, uid=uid, organizer=organizer, stamp=now)
            calendar = CalendarPart(ics=ics, method=invite.method)
        message = build_message(
            rendered=rendered,
            sender=self._sender,
            recipient=recipient,
            reply_to=reply_to,
            message_id=message_id,
            language=language,
            kind=data.kind,
            date=now,
            calendar=calendar,
        )
        return _Prepared(
            message=message,
            sender=self._sender.addr_spec,
            recipient=recipient.addr_spec,
            subject=rendered.subject,
        )
