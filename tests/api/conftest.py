import re
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import httpx
import pytest
from sqlmodel import Session
from temporalio.client import Client

from api.main import create_app
from ce4big.models import utcnow
from ce4big.settings import Settings
from ce4big.websessions import redeem_sign_in_link, request_sign_in
from emails.previews import EmailPreviews
from tests.api.report_data import followed_up, report_tokens  # noqa: F401  (fixtures)

ClientFactory = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]
# The hidden field of every web form.
CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]{64})"')


@pytest.fixture
def api_client(settings: Settings) -> ClientFactory:
    """Opens the app with its lifespan and an httpx client on it."""

    @asynccontextmanager
    async def open_client(
        app_settings: Settings | None = None, temporal_client: Client | None = None
    ) -> AsyncIterator[httpx.AsyncClient]:
        app = create_app(
            app_settings or settings,
            temporal_client=temporal_client,
            mail_previews=EmailPreviews(),
        )
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://testserver"
            ) as client,
        ):
            yield client

    return open_client


def sign_in(client: httpx.AsyncClient, session: Session, settings: Settings, email: str) -> None:
    ticket = request_sign_in(
        session=session, email=email, client="test", settings=settings, now=utcnow()
    )
    assert ticket is not None
    # English pages, whatever the cluster's language.
    ticket.user.language = "en"
    session.add(ticket.user)
    opened = redeem_sign_in_link(
        session=session, plain=ticket.token, settings=settings, now=utcnow()
    )
    session.commit()
    client.cookies.clear()
    client.cookies.set("ce4big_session", opened.cookie)
