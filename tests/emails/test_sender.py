from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import aiosmtplib
import pytest

from bench.stack import free_port
from ce4big.mailerrors import EmailContextError, PermanentEmailError, TemporaryEmailError
from emails.render import RenderedEmail
from emails.sender import (
    CalendarPart,
    SmtpTransport,
    build_message,
    message_id_for,
    parse_address,
    parse_mailbox,
)
from tests.conftest import make_settings
from tests.emails.mailserver import RecordingHandler, smtp_server

RENDERED = RenderedEmail(
    subject="Pick a meeting time: “Tox”",
    html="<p>Hello</p>",
    text="Hello\n\nPick a time:\nhttps://x.example/t/abc\n",
)
ICS = b"BEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\nEND:VCALENDAR\r\n"
SENDER = parse_mailbox("CE4BIG Exchange <exchange@ce4big.example>")


def _message(**changes: Any) -> EmailMessage:
    values: dict[str, Any] = {
        "rendered": RENDERED,
        "sender": SENDER,
        "recipient": parse_address(email="claire@nantesgene.example", name="Claire Moreau"),
        "message_id": message_id_for(idempotency_key="k", domain="ce4big.example"),
        "language": "fr",
        "kind": "slots_proposed",
        "date": datetime(2026, 3, 20, 12, 0, tzinfo=UTC),
        **changes,
    }
    return build_message(**values)


class TestBuildMessage:
    def test_text_and_html_are_alternatives(self) -> None:
        message = _message()

        assert message.get_content_type() == "multipart/alternative"
        assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]

    def test_invite_is_a_calendar_alternative_and_an_attachment(self) -> None:
        message = _message(calendar=CalendarPart(ics=ICS, method="REQUEST"))

        assert message.get_content_type() == "multipart/mixed"
        alternative, attachment = message.iter_parts()
        assert [p.get_content_type() for p in alternative.iter_parts()] == [
            "text/plain",
            "text/html",
            "text/calendar",
        ]
        calendar = list(alternative.iter_parts())[2]
        assert calendar.get_param("method") == "REQUEST"
        assert calendar.get_content().replace("\r\n", "\n") == ICS.decode().replace("\r\n", "\n")
        assert attachment.get_content_type() == "application/ics"
        assert attachment.get_filename() == "invite.ics"

    def test_headers(self) -> None:
        message = _message()

        assert message["From"] == "CE4BIG Exchange <exchange@ce4big.example>"
        assert message["To"] == "Claire Moreau <claire@nantesgene.example>"
        assert message["Subject"] == "Pick a meeting time: “Tox”"
        assert message["Message-ID"] == message_id_for(idempotency_key="k", domain="ce4big.example")
        assert message["Date"] == "Fri, 20 Mar 2026 12:00:00 +0000"
        assert message["Content-Language"] == "fr"
        assert message["Auto-Submitted"] == "auto-generated"

    def test_header_injection_through_name_and_subject_is_neutralised(self) -> None:
        message = _message(
            rendered=RenderedEmail(
                subject="Tox\r\nBcc: victim@evil.example", html="<p>x</p>", text="x\n"
            ),
            recipient=parse_address(
                email="claire@nantesgene.example",
                name="Claire\r\nBcc: victim@evil.example\r\nX-Evil: 1",
            ),
        )
        raw = message.as_bytes()
        header_lines = raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")

        assert not [line for line in header_lines if line.lower().startswith((b"bcc", b"x-evil"))]
        assert message["To"].addresses[0].addr_spec == "claire@nantesgene.example"
        assert len(message["To"].addresses) == 1
        assert message["Subject"] == "Tox Bcc: victim@evil.example"


class TestParseAddress:
    @pytest.mark.parametrize(
        "address",
        ["not-an-address", "claire@", "claire@nantesgene.example\r\nBcc: x@evil.example", ""],
    )
    def test_invalid_address_is_refused(self, address: str) -> None:
        with pytest.raises(EmailContextError):
            parse_address(email=address)


class TestMessageIdFor:
    def test_same_key_same_id_other_key_other_id(self) -> None:
        first = message_id_for(idempotency_key="exchange-1:a", domain="ce4big.example")

        assert first == message_id_for(idempotency_key="exchange-1:a", domain="ce4big.example")
        assert first != message_id_for(idempotency_key="exchange-1:b", domain="ce4big.example")
        assert first.startswith("<") and first.endswith("@ce4big.example>")


class TestSmtpTransport:
    async def test_delivers_to_a_real_server(self) -> None:
        handler = RecordingHandler()
        async with smtp_server(handler) as port:
            transport = SmtpTransport(make_settings(smtp_host="127.0.0.1", smtp_port=port))
            await transport.send(
                message=_message(),
                sender="exchange@ce4big.example",
                recipients=["claire@nantesgene.example"],
            )

        (received,) = handler.received
        assert received.mail_from == "exchange@ce4big.example"
        assert received.recipients == ["claire@nantesgene.example"]
        assert received.parsed()["Message-ID"] == _message()["Message-ID"]

    @pytest.mark.parametrize(
        ("reply", "error"),
        [
            ("550 5.1.1 No such user", PermanentEmailError),
            ("553 5.1.3 Bad recipient address syntax", PermanentEmailError),
            ("450 4.2.1 Mailbox busy", TemporaryEmailError),
            ("452 4.5.3 Too many recipients", TemporaryEmailError),
        ],
    )
    async def test_recipient_refusals_are_sorted_by_code(
        self, reply: str, error: type[Exception]
    ) -> None:
        handler = RecordingHandler(refuse={"claire@nantesgene.example": reply})
        async with smtp_server(handler) as port:
            transport = SmtpTransport(make_settings(smtp_host="127.0.0.1", smtp_port=port))
            with pytest.raises(error, match=reply.split()[0]):
                await transport.send(
                    message=_message(),
                    sender="exchange@ce4big.example",
                    recipients=["claire@nantesgene.example"],
                )

    async def test_deferred_data_is_temporary(self) -> None:
        handler = RecordingHandler(defer_data=1)
        async with smtp_server(handler) as port:
            transport = SmtpTransport(make_settings(smtp_host="127.0.0.1", smtp_port=port))
            with pytest.raises(TemporaryEmailError, match="451"):
                await transport.send(
                    message=_message(),
                    sender="exchange@ce4big.example",
                    recipients=["claire@nantesgene.example"],
                )

    async def test_connection_refused_is_temporary(self) -> None:
        transport = SmtpTransport(make_settings(smtp_host="127.0.0.1", smtp_port=free_port()))

        with pytest.raises(TemporaryEmailError, match="unavailable"):
            await transport.send(
                message=_message(),
                sender="exchange@ce4big.example",
                recipients=["claire@nantesgene.example"],
            )

    @pytest.mark.parametrize(("tls", "starttls"), [(False, False), (False, True), (True, False)])
    async def test_tls_starttls_and_auth_come_from_settings(
        self, monkeypatch: pytest.MonkeyPatch, tls: bool, starttls: bool
    ) -> None:
        calls: list[dict[str, Any]] = []

        async def fake_send(message: EmailMessage, **kwargs: Any) -> Any:
            calls.append(kwargs)
            return {}, "250 OK"

        monkeypatch.setattr(aiosmtplib, "send", fake_send)
        settings = make_settings(
            smtp_host="smtp.ce4big.example",
            smtp_port=587,
            smtp_username="mailer",
            smtp_password="s3cret",
            smtp_tls=tls,
            smtp_starttls=starttls,
            smtp_timeout_seconds=12,
        )

        await SmtpTransport(settings).send(
            message=_message(), sender="exchange@ce4big.example", recipients=["a@b.example"]
        )

        (call,) = calls
        assert (call["use_tls"], call["start_tls"]) == (tls, starttls)
        assert (call["hostname"], call["port"], call["timeout"]) == ("smtp.ce4big.example", 587, 12)
        assert (call["username"], call["password"]) == ("mailer", "s3cret")
