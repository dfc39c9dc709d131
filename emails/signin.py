"""The sign-in e-mail of the web app, sent at once (not by a workflow: a link that arrives
after a retry minutes later is of no use; the person simply asks again)."""

import asyncio
import uuid
from datetime import UTC, datetime
from email.message import EmailMessage

from ce4big.settings import Settings
from emails.contexts import SignIn
from emails.render import default_renderer
from emails.sender import SmtpTransport, Transport, build_message, parse_address, parse_mailbox

KIND = "sign_in"


class SignInMailer:
    def __init__(self, settings: Settings, transport: Transport | None = None) -> None:
        self._settings = settings
        self._transport = transport or SmtpTransport(settings)
        self._sender = parse_mailbox(settings.mail_from)

    async def send_sign_in(
        self, *, email: str, name: str, language: str, timezone: str, url: str, minutes: int
    ) -> None:
        # Rendering is CPU work: off the web app's event loop.
        message = await asyncio.to_thread(
            self._build,
            email=email,
            name=name,
            language=language,
            timezone=timezone,
            url=url,
            minutes=minutes,
        )
        await self._transport.send(
            message=message, sender=self._sender.addr_spec, recipients=[email]
        )

    def _build(
        self, *, email: str, name: str, language: str, timezone: str, url: str, minutes: int
    ) -> EmailMessage:
        rendered = default_renderer().render(
            kind=KIND,
            context=SignIn(recipient_name=name, sign_in_url=url, valid_minutes=minutes),
            language=language,
            timezone=timezone,
        )
        return build_message(
            rendered=rendered,
            sender=self._sender,
            recipient=parse_address(email=email, name=name),
            # Each link is its own e-mail: no idempotency key to derive the id from.
            message_id=f"<{uuid.uuid4().hex}@{self._sender.domain}>",
            language=language,
            kind=KIND,
            date=datetime.now(UTC),
        )
