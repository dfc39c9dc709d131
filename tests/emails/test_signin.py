from email.message import EmailMessage

import pytest

from emails.signin import SignInMailer
from tests.conftest import make_settings
from tests.emails.mailserver import RecordingHandler, smtp_server

URL = "http://testserver/login/abc123"


def text_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


class TestSignInMailer:
    @pytest.mark.parametrize(
        ("language", "subject", "minutes"),
        [
            ("en", "Your sign-in link for CE4BIG Exchange", "for 15 minutes"),
            ("fr", "Votre lien de connexion à CE4BIG Exchange", "pendant 15 minutes"),
            ("pl", "Twój link do logowania w CE4BIG Exchange", "przez 15 minut"),
        ],
    )
    async def test_the_link_reaches_the_smtp_server_in_the_users_language(
        self, language: str, subject: str, minutes: str
    ) -> None:
        handler = RecordingHandler()
        async with smtp_server(handler) as port:
            mailer = SignInMailer(make_settings(smtp_host="127.0.0.1", smtp_port=port))
            await mailer.send_sign_in(
                email="eva@bm-sme.example",
                name="Eva Roth",
                language=language,
                timezone="Europe/Berlin",
                url=URL,
                minutes=15,
            )
        (received,) = handler.received
        message = received.parsed()
        assert received.recipients == ["eva@bm-sme.example"]
        assert message["Subject"] == subject
        assert message["Content-Language"] == language
        assert message["X-CE4BIG-Kind"] == "sign_in"
        text = text_of(message)
        assert URL in text and minutes in text
        assert "exchange #" not in text
