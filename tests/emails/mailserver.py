"""A real SMTP server (aiosmtpd) on a free port of the test's event loop, recording what it
receives and answering with scripted refusals."""

import asyncio
import email
import email.policy
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.smtp import SMTP


@dataclass
class Received:
    mail_from: str
    recipients: list[str]
    raw: bytes

    def parsed(self) -> EmailMessage:
        message = email.message_from_bytes(self.raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        return message


@dataclass
class RecordingHandler:
    # address -> SMTP reply refusing it, e.g. "550 5.1.1 No such user"
    refuse: dict[str, str] = field(default_factory=dict)
    # how many DATA commands to answer with a temporary failure before accepting
    defer_data: int = 0
    # a slow server: how long each DATA command waits before its answer
    data_delay_seconds: float = 0.0
    received: list[Received] = field(default_factory=list)
    rcpt_attempts: list[str] = field(default_factory=list)

    async def handle_RCPT(
        self, _server: Any, _session: Any, envelope: Any, address: str, _options: Any
    ) -> str:
        self.rcpt_attempts.append(address)
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
        if self.data_delay_seconds:
            await asyncio.sleep(self.data_delay_seconds)
        if self.defer_data > 0:
            self.defer_data -= 1
            return "451 4.3.0 Try again later"
        raw = envelope.original_content or envelope.content or b""
        self.received.append(Received(str(envelope.mail_from), list(envelope.rcpt_tos), raw))
        return "250 2.0.0 Accepted"


@asynccontextmanager
async def smtp_server(handler: object, port: int = 0) -> AsyncIterator[int]:
    """Serve SMTP on 127.0.0.1 and yield the port."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="test-mx", loop=loop), host="127.0.0.1", port=port
    )
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()
