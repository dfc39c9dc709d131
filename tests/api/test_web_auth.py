"""Signing in to the web app by e-mailed link, through HTTP and a real SMTP server."""

import logging
import re
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlmodel import Session

from api.main import create_app
from ce4big.models import utcnow
from ce4big.security import get_user_by_email
from ce4big.settings import Settings
from ce4big.users import set_user_active
from ce4big.websessions import request_sign_in
from emails.signin import SignInMailer
from tests.api.conftest import CSRF
from tests.conftest import make_settings
from tests.emails.mailserver import RecordingHandler, smtp_server
from tests.factories import add_organisation, user_with_token
from tests.polling import eventually

EVA = "eva@bm-sme.example"
LINK = re.compile(r"http://testserver/login/([A-Za-z0-9_-]+)")


@dataclass
class Browser:
    client: httpx.AsyncClient
    mail: RecordingHandler

    async def csrf(self, path: str = "/login") -> str:
        page = await self.client.get(path)
        found = CSRF.search(page.text)
        assert found, page.text
        return found.group(1)

    async def ask_for_link(self, email: str = EVA) -> httpx.Response:
        return await self.client.post(
            "/login", data={"email": email, "next": "/account", "csrf_token": await self.csrf()}
        )

    async def link(self, email: str = EVA, count: int = 1) -> str:
        def links() -> list[str]:
            found = [
                LINK.findall(r.raw.decode())[0]
                for r in self.mail.received
                if r.recipients == [email]
            ]
            return found if len(found) >= count else []

        return (await eventually(links, what="sign-in link"))[-1]

    async def sign_in(self, token: str) -> httpx.Response:
        csrf = await self.csrf(f"/login/{token}")
        return await self.client.post(
            f"/login/{token}", data={"csrf_token": csrf, "next": "/account"}
        )


BrowserFactory = Callable[..., AbstractAsyncContextManager[Browser]]


@pytest.fixture
def eva(session: Session) -> None:
    add_organisation(session, "bm-sme", "biom", country="DE")
    user_with_token(session, EVA, "sme", organisation="bm-sme")


@pytest.fixture
def browser(settings: Settings) -> BrowserFactory:
    @asynccontextmanager
    async def open_browser(
        handler: RecordingHandler | None = None, **overrides: Any
    ) -> AsyncIterator[Browser]:
        handler = handler or RecordingHandler()
        async with smtp_server(handler) as port:
            app_settings = make_settings(
                settings.database_url, smtp_host="127.0.0.1", smtp_port=port, **overrides
            )
            app = create_app(app_settings, sign_in_mailer=SignInMailer(app_settings))
            async with (
                app.router.lifespan_context(app),
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app), base_url="http://testserver"
                ) as client,
            ):
                yield Browser(client, handler)

    return open_browser


@pytest.mark.usefixtures("eva")
class TestSignIn:
    async def test_the_emailed_link_signs_in_only_when_its_button_is_pressed(
        self, browser: BrowserFactory
    ) -> None:
        async with browser() as b:
            asked = await b.ask_for_link()
            token = await b.link()
            confirm = await b.client.get(f"/login/{token}")
            # Opening the link (as a mail scanner does) signs nobody in.
            assert (await b.client.get("/account")).status_code == 303
            signed_in = await b.sign_in(token)
            account = await b.client.get("/account")
        assert asked.status_code == 200 and "Check your e-mail" in asked.text
        assert confirm.status_code == 200 and EVA in confirm.text
        assert signed_in.status_code == 303 and signed_in.headers["location"] == "/account"
        cookie = signed_in.headers["set-cookie"]
        assert "ce4big_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
        assert account.status_code == 200 and EVA in account.text

    async def test_a_sign_in_e_mail_that_fails_is_logged_without_the_address(
        self, browser: BrowserFactory, caplog: pytest.LogCaptureFixture
    ) -> None:
        refusing = RecordingHandler(refuse={EVA: "550 5.1.1 No such user here"})
        with caplog.at_level(logging.INFO):
            async with browser(refusing) as b:
                asked = await b.ask_for_link()
        assert asked.status_code == 200 and refusing.rcpt_attempts == [EVA]
        logged = [r for r in caplog.records if "sign-in e-mail" in r.getMessage()]
        assert logged and "No such user" in logged[0].getMessage()
        # The app's own records (the test's SMTP server logs its dialogue under mail.log).
        app = [r for r in caplog.records if r.name.split(".")[0] in ("api", "ce4big")]
        assert [r.getMessage() for r in app if EVA in r.getMessage() or r.exc_info] == []

    async def test_an_unknown_address_gets_the_same_answer_and_no_mail(
        self, browser: BrowserFactory
    ) -> None:
        async with browser() as b:
            known = await b.ask_for_link()
            await b.link()
            unknown = await b.ask_for_link("nobody@example.org")
        assert unknown.status_code == known.status_code == 200
        strip = re.compile(r"[^\s@]+@[^\s<]+|[0-9a-f]{64}")
        assert strip.sub("", unknown.text) == strip.sub("", known.text)
        assert [r.recipients for r in b.mail.received] == [[EVA]]

    async def test_a_link_works_once(self, browser: BrowserFactory) -> None:
        async with browser() as b:
            await b.ask_for_link()
            token = await b.link()
            first = await b.sign_in(token)
            b.client.cookies.clear()
            again = await b.client.get(f"/login/{token}")
        assert first.status_code == 303
        assert again.status_code == 409 and "has been used" in again.text

    async def test_an_expired_or_tampered_link_signs_nobody_in(
        self, browser: BrowserFactory, session: Session, settings: Settings
    ) -> None:
        long_ago = utcnow() - timedelta(minutes=settings.sign_in_link_minutes + 1)
        ticket = request_sign_in(
            session=session, email=EVA, client="t", settings=settings, now=long_ago
        )
        session.commit()
        assert ticket is not None
        async with browser() as b:
            expired = await b.client.get(f"/login/{ticket.token}")
            tampered = await b.client.get(f"/login/{ticket.token[:-2]}xx")
        assert expired.status_code == 409 and "expired" in expired.text
        assert tampered.status_code == 404

    async def test_sign_out_ends_the_session(self, browser: BrowserFactory) -> None:
        async with browser() as b:
            await b.ask_for_link()
            await b.sign_in(await b.link())
            csrf = await b.csrf("/account")
            cookie = b.client.cookies["ce4big_session"]
            out = await b.client.post("/logout", data={"csrf_token": csrf})
            b.client.cookies.set("ce4big_session", cookie)  # a copy kept elsewhere
            after = await b.client.get("/account")
        assert out.status_code == 303
        assert after.status_code == 303 and after.headers["location"] == "/login?next=/account"

    async def test_a_deactivated_user_is_signed_out(
        self, browser: BrowserFactory, session: Session
    ) -> None:
        async with browser() as b:
            await b.ask_for_link()
            await b.sign_in(await b.link())
            set_user_active(session=session, email=EVA, active=False, now=utcnow())
            session.commit()
            after = await b.client.get("/account")
        assert after.status_code == 303

    async def test_too_many_requests_get_429_with_retry_after(
        self, browser: BrowserFactory
    ) -> None:
        async with browser(sign_in_per_address=2) as b:
            answers = [(await b.ask_for_link()).status_code for _ in range(3)]
            refused = await b.ask_for_link()
        assert answers == [200, 200, 429]
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0

    async def test_a_post_without_the_csrf_token_is_refused(self, browser: BrowserFactory) -> None:
        async with browser() as b:
            await b.ask_for_link()
            token = await b.link()
            refused = await b.client.post(f"/login/{token}", data={"next": "/"})
            forged = await b.client.post("/login", data={"email": EVA, "csrf_token": "0" * 64})
        assert refused.status_code == 403 and "ce4big_session" not in refused.headers.get(
            "set-cookie", ""
        )
        assert forged.status_code == 403
        assert len(b.mail.received) == 1


@pytest.mark.usefixtures("eva")
class TestLanguage:
    async def test_a_signed_out_visitor_chooses_the_language_of_the_pages(
        self, browser: BrowserFactory
    ) -> None:
        async with browser() as b:
            csrf = await b.csrf("/")
            switched = await b.client.post(
                "/language", data={"language": "fr", "next": "/login", "csrf_token": csrf}
            )
            login = await b.client.get("/login")
        assert switched.status_code == 303 and switched.headers["location"] == "/login"
        assert 'lang="fr"' in login.text and "Se connecter" in login.text

    async def test_a_signed_in_users_choice_is_saved_on_the_user(
        self, browser: BrowserFactory, session: Session
    ) -> None:
        async with browser() as b:
            await b.ask_for_link()
            await b.sign_in(await b.link())
            csrf = await b.csrf("/account")
            await b.client.post(
                "/language", data={"language": "pl", "next": "/account", "csrf_token": csrf}
            )
            account = await b.client.get("/account")
        assert 'lang="pl"' in account.text
        user = get_user_by_email(session=session, email=EVA)
        assert user is not None
        session.refresh(user)
        assert user.language == "pl"


@pytest.mark.usefixtures("eva")
class TestAccount:
    async def signed_in(self, b: Browser) -> str:
        await b.ask_for_link()
        await b.sign_in(await b.link())
        return await b.csrf("/account")

    async def test_language_and_time_zone_are_saved(self, browser: BrowserFactory) -> None:
        async with browser() as b:
            csrf = await self.signed_in(b)
            saved = await b.client.post(
                "/account",
                data={"language": "de", "timezone": "America/New_York", "csrf_token": csrf},
            )
            bad = await b.client.post(
                "/account", data={"language": "xx", "timezone": "Mars/Base", "csrf_token": csrf}
            )
            account = await b.client.get("/account")
        assert saved.status_code == 303 and bad.status_code == 422
        assert 'lang="de"' in account.text
        assert '<option value="America/New_York" selected>' in account.text

    async def test_a_personal_token_is_shown_once_works_and_can_be_revoked(
        self, browser: BrowserFactory
    ) -> None:
        async with browser() as b:
            csrf = await self.signed_in(b)
            created = await b.client.post(
                "/account/tokens", data={"name": "CRM sync", "days": "30", "csrf_token": csrf}
            )
            token = re.search(r"c4b_[A-Za-z0-9_-]{43}", created.text)
            assert token is not None
            bearer = {"Authorization": f"Bearer {token.group(0)}"}
            b.client.cookies.clear()
            before = await b.client.get("/api/v1/me", headers=bearer)
            csrf = await self.signed_in(b)
            listed = await b.client.get("/account")
            token_id = re.search(r'action="/account/tokens/(\d+)/revoke"', listed.text)
            assert token_id is not None
            await b.client.post(
                f"/account/tokens/{token_id.group(1)}/revoke", data={"csrf_token": csrf}
            )
            b.client.cookies.clear()
            after = await b.client.get("/api/v1/me", headers=bearer)
        assert before.status_code == 200 and before.json()["email"] == EVA
        assert token.group(0) not in listed.text, "a token is shown only when it is created"
        assert after.status_code == 401

    async def test_revoking_a_token_id_beyond_the_integer_column_is_not_found(
        self, browser: BrowserFactory
    ) -> None:
        async with browser() as b:
            csrf = await self.signed_in(b)
            revoked = await b.client.post(
                f"/account/tokens/{2**31}/revoke", data={"csrf_token": csrf}
            )
        assert revoked.status_code == 404
