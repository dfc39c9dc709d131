from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import httpx
import pytest
from temporalio.client import Client

from api.main import create_app
from ce4big.settings import Settings
from emails.previews import EmailPreviews
from tests.api.report_data import followed_up, report_tokens  # noqa: F401  (fixtures)

ClientFactory = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


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
