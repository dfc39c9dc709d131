"""The MIME message of one e-mail, and the SMTP transport that delivers it.

User text reaches headers only through `email.headerregistry` objects after CR and LF are
gone, so a name or a title can never add a header. SMTP failures are sorted once here:
a 5xx refusal of the recipient or of the message is permanent; everything else (connection,
timeout, 4xx, authentication, TLS) is temporary, since it may pass once the server or our
configuration recovers.
"""

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime, parseaddr
from typing import Protocol

import aiosmtplib
from email_validator import EmailNotValidError, validate_email

from ce4big.mailerrors import EmailContextError, PermanentEmailError, TemporaryEmailError
from ce4big.settings import Settings
from emails.render import RenderedEmail, one_line


@dataclass(frozen=True, slots=True)
class CalendarPart:
    ics: bytes
    method: str


def parse_address(*, email: str, name: str = "") -> Address:
    try:
        valid = validate_email(email.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise EmailContextError(f"invalid e-mail address {email!r}: {exc}") from exc
    local, _, domain = valid.normalized.rpartition("@")
    return Address(display_name=one_line(name), username=local, domain=domain)


def parse_mailbox(value: str) -> Address:
    """`Name <address>` from the settings."""
    name, email = parseaddr(value)
    return parse_address(email=email, name=name)


def message_id_for(*, idempotency_key: str, domain: str) -> str:
    """The same logical e-mail always gets the same Message-ID, so that a receiving server
    can drop a copy sent again after a crash between delivery and its record."""
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:40]
    return f"<{digest}@{domain}>"


def build_message(
    *,
    rendered: RenderedEmail,
    sender: Address,
    recipient: Address,
    message_id: str,
    language: str,
    kind: str,
    date: datetime,
    reply_to: Address | None = None,
    calendar: CalendarPart | None = None,
) -> EmailMessage:
    message = EmailMessage(policy=SMTP_POLICY)
    message["Subject"] = one_line(rendered.subject)
    message["From"] = sender
    message["To"] = recipient
    if reply_to is not None:
        message["Reply-To"] = reply_to
    message["Date"] = format_datetime(date)
    message["Message-ID"] = message_id
    # RFC 3834: out-of-office robots must not answer.
    message["Auto-Submitted"] = "auto-generated"
    message["X-CE4BIG-Kind"] = kind

    message.set_content(rendered.text)
    message.add_alternative(rendered.html, subtype="html")
    if calendar is not None:
        # Outlook and Gmail show the invitation from the text/calendar alternative; the
        # attachment serves clients that only offer attachments for import.
        message.add_alternative(
            calendar.ics.decode(), subtype="calendar", params={"method": calendar.method}
        )
        message.add_attachment(
            calendar.ics,
            maintype="application",
            subtype="ics",
            filename="invite.ics",
        )
    # Set last: set_content and the multipart conversions move Content-* headers down.
    message["Content-Language"] = language
    return message


class Transport(Protocol):
    async def send(
        self, *, message: EmailMessage, sender: str, recipients: Sequence[str]
    ) -> None: ...


def _is_permanent(exc: aiosmtplib.SMTPResponseException) -> bool:
    refused = isinstance(exc, aiosmtplib.SMTPRecipientRefused | aiosmtplib.SMTPDataError)
    return refused and 500 <= exc.code < 600


class SmtpTransport:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    async def send(self, *, message: EmailMessage, sender: str, recipients: Sequence[str]) -> None:
        settings = self._settings
        host, port = settings.smtp_target
        password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
        try:
            await aiosmtplib.send(
                message,
                sender=sender,
                recipients=list(recipients),
                hostname=host,
                port=port,
                username=settings.smtp_username or None,
                password=password if settings.smtp_username else None,
                # Explicit: left to None, aiosmtplib upgrades whenever the server offers it.
                use_tls=settings.smtp_tls,
                start_tls=settings.smtp_starttls,
                timeout=settings.smtp_timeout_seconds,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            reasons = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
            if any(_is_permanent(r) for r in exc.recipients):
                raise PermanentEmailError(f"recipient refused: {reasons}") from exc
            raise TemporaryEmailError(f"recipient deferred: {reasons}") from exc
        except aiosmtplib.SMTPResponseException as exc:
            text = f"SMTP {exc.code} {exc.message}"
            if _is_permanent(exc):
                raise PermanentEmailError(text) from exc
            raise TemporaryEmailError(text) from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise TemporaryEmailError(f"SMTP unavailable: {exc}") from exc
