"""The development SMTP sink: stores every message it receives in the dev mailbox table."""

import asyncio
import email
import email.policy
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import Engine

from ce4big.db import session_scope
from ce4big.models import DevMessage


def store_message(engine: Engine, mail_from: str, recipients: list[str], raw: bytes) -> int:
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    with session_scope(engine) as session:
        message = DevMessage(
            mail_from=mail_from[:300],
            recipients=recipients,
            subject=str(parsed.get("Subject", ""))[:300],
            message_id=str(parsed.get("Message-ID", ""))[:300],
            raw=raw.decode("utf-8", errors="replace"),
        )
        session.add(message)
        session.flush()
        assert message.id is not None
        return message.id


class MailboxHandler:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    async def handle_DATA(self, _server: SMTP, _session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):
            raw = raw.encode()
        await asyncio.to_thread(
            store_message,
            self._engine,
            str(envelope.mail_from or ""),
            [str(r) for r in envelope.rcpt_tos],
            raw,
        )
        return "250 Message accepted for delivery"


async def start_sink(engine: Engine, host: str, port: int) -> asyncio.Server:
    """Serve SMTP on the running loop; close the returned server to stop it."""
    handler: Any = MailboxHandler(engine)
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: SMTP(handler, hostname="ce4big-dev-mailbox", loop=loop), host=host, port=port
    )
