"""The page behind an e-mail link in a real browser: Debian's Chromium driven by Playwright,
against the app served by uvicorn on a free port of this machine."""

import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Route, async_playwright, expect
from sqlalchemy import Engine
from sqlmodel import Session
from temporalio.testing import WorkflowEnvironment

from api.main import create_app
from api.routes.pages import DONE_MESSAGES, HEADINGS
from bench.stack import free_port
from ce4big.i18n import translate
from tests.api.browser import CHROMIUM, CHROMIUM_ARGS, NEEDS_CHROMIUM, serving
from tests.api.test_pages import (
    add_exchange,
    drive_to_introduction,
    issue_link,
    start_exchange,
    token_row,
)
from tests.conftest import make_settings
from tests.workflows.conftest import Harness, running_harness, wait_stage

SCREENSHOTS = Path(tempfile.gettempdir())
# --brand of base.html: the header has it only if the CSP let the layout's styles through.
BRAND_BLUE = "rgb(11, 83, 148)"

pytestmark = [
    pytest.mark.slow,
    NEEDS_CHROMIUM,
]


@pytest.fixture
async def harness(time_skipping_env: WorkflowEnvironment) -> AsyncIterator[Harness]:
    async with running_harness(time_skipping_env) as harness:
        yield harness


class TestLinkPageInABrowser:
    async def test_accept_an_introduction_by_clicking(
        self, db: Engine, session: Session, harness: Harness
    ) -> None:
        exchange = add_exchange(session)
        handle = await start_exchange(harness, exchange)
        await drive_to_introduction(handle)
        plain = issue_link(session, exchange, "introduction", language="fr")
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        settings = make_settings(db.url.render_as_string(hide_password=False), base_url=base_url)
        app = create_app(settings, temporal_client=harness.env.client)
        name = db.url.get_backend_name()
        console: list[str] = []

        async with serving(app, port), async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
            )
            try:
                page = await browser.new_page(
                    locale="fr-FR", viewport={"width": 1000, "height": 900}
                )
                page.on("console", lambda message: console.append(message.text))
                await page.goto(f"{base_url}/t/{plain}")
                await expect(page.locator("h1")).to_have_text(
                    translate("fr", HEADINGS["introduction"])
                )
                header = page.locator("header.site-header")
                await expect(header).to_have_css("background-color", BRAND_BLUE)
                await page.screenshot(path=SCREENSHOTS / f"ce4big-link-{name}.png", full_page=True)

                await page.get_by_role(
                    "button", name=translate("fr", "Accept the introduction")
                ).click()
                await expect(page.locator("h1")).to_have_text(translate("fr", "Thank you"))
                await expect(page.get_by_role("status")).to_contain_text(
                    translate("fr", DONE_MESSAGES["accept"])
                )
                await page.screenshot(path=SCREENSHOTS / f"ce4big-link-{name}-done.png")
            finally:
                await browser.close()

        await wait_stage(handle, "scheduling", ["requester"])
        assert token_row(session, plain).used_at is not None
        assert not [m for m in console if "Content Security Policy" in m], console


# A webmail on another site: links in e-mails are opened from there, in new tabs.
WEBMAIL = "http://webmail.example/inbox"


class TestLinksOpenedFromWebmail:
    async def test_the_first_of_two_links_opened_cross_site_still_submits(
        self, db: Engine, session: Session, harness: Harness
    ) -> None:
        exchange = add_exchange(session)
        handle = await start_exchange(harness, exchange)
        await drive_to_introduction(handle)
        first = issue_link(session, exchange, "introduction", language="fr")
        second = issue_link(session, exchange, "view", language="fr")
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        settings = make_settings(db.url.render_as_string(hide_password=False), base_url=base_url)
        app = create_app(settings, temporal_client=harness.env.client)
        inbox = (
            "<!doctype html><title>Inbox</title>"
            f'<p><a href="{base_url}/t/{first}" target="_blank">Introduction</a></p>'
            f'<p><a href="{base_url}/t/{second}" target="_blank">Update</a></p>'
        )

        async def webmail(route: Route) -> None:
            await route.fulfill(status=200, content_type="text/html", body=inbox)

        async with serving(app, port), async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
            )
            try:
                context = await browser.new_context(locale="fr-FR")
                await context.route(WEBMAIL, webmail)
                mailbox = await context.new_page()
                await mailbox.goto(WEBMAIL)
                opened = []
                for name, kind in (("Introduction", "introduction"), ("Update", "view")):
                    async with context.expect_page() as new_tab:
                        await mailbox.get_by_role("link", name=name).click()
                    tab = await new_tab.value
                    await expect(tab.locator("h1")).to_have_text(translate("fr", HEADINGS[kind]))
                    opened.append(tab)

                await (
                    opened[0]
                    .get_by_role("button", name=translate("fr", "Accept the introduction"))
                    .click()
                )
                await expect(opened[0].locator("h1")).to_have_text(translate("fr", "Thank you"))
            finally:
                await browser.close()

        await wait_stage(handle, "scheduling", ["requester"])
        assert token_row(session, first).used_at is not None
