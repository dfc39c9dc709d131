"""One exchange from request to recorded outcome through the pages alone, in a real browser
(Debian's Chromium driven by Playwright): every person signs in by the link e-mailed to the
test's SMTP server, or acts through the link in their e-mail; axe checks every page on the way.
Run in English and in French. Selectors name forms and fields, not words, so both runs share
them. With CE4BIG_SCREENSHOTS=<folder>, the English run saves the README's screenshots."""

import asyncio
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from axe_playwright_python.async_playwright import Axe
from playwright.async_api import Browser, Page, async_playwright, expect
from sqlalchemy import Engine, update
from sqlmodel import Session
from temporalio.testing import WorkflowEnvironment

from bench.stack import free_port
from ce4big.models import Exchange, User
from tests.api.browser import CHROMIUM, CHROMIUM_ARGS, NEEDS_CHROMIUM
from tests.api.world import World, running_world
from tests.polling import eventually

pytestmark = [pytest.mark.slow, NEEDS_CHROMIUM]

DAY = 86400
SME, BROKER, HOST = "anna@meuse-kinase.example", "broker@biowin.example", "broker@biom.example"
PARTNER, MANAGER = "bd@isartox.example", "manager@ce4big.example"
SERIOUS = ("serious", "critical")
STICKING_OUT = """[...document.querySelectorAll('body *')]
    .filter(e => e.getBoundingClientRect().right > 321 && !e.closest('.table-wrap'))
    .slice(0, 3).map(e => e.tagName + '.' + e.className)"""
SCREENSHOTS = os.environ.get("CE4BIG_SCREENSHOTS")
# Long enough for a loaded machine; each wait ends as soon as its element is there.
WAIT_MS = 30_000


@dataclass
class Journey:
    world: World
    browser: Browser
    language: str
    axe: Axe = field(default_factory=Axe)
    violations: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)

    @property
    def base(self) -> str:
        return self.world.settings.base_url

    async def new_page(self) -> Page:
        context = await self.browser.new_context(viewport={"width": 1100, "height": 900})
        page = await context.new_page()
        page.set_default_timeout(WAIT_MS)
        return page

    async def check(self, page: Page) -> None:
        """axe on the page as it stands: no serious or critical violation."""
        results = await self.axe.run(page)
        path = page.url.removeprefix(self.base)
        self.checked.append(path)
        for violation in results.response["violations"]:
            if violation["impact"] in SERIOUS:
                targets = [n["target"] for n in violation["nodes"]][:3]
                self.violations.append(f"{path}: {violation['id']} {targets}")

    async def goto(self, page: Page, path: str) -> None:
        await page.goto(self.base + path)
        await self.check(page)

    async def mail_link(self, address: str, kind: str, pattern: str) -> str:
        def link() -> str:
            for received in reversed(self.world.mail.received):
                message = received.parsed()
                if address in received.recipients and message["X-CE4BIG-Kind"] == kind:
                    part = message.get_body(preferencelist=("plain",))
                    assert part is not None
                    found = re.search(pattern, str(part.get_content()))
                    if found:
                        return found.group(0)
            return ""

        return await eventually(link, what=f"{kind} e-mail to {address}")

    async def sign_in(self, address: str) -> Page:
        page = await self.new_page()
        await self.goto(page, "/login")
        await page.fill("#email", address)
        await page.click('form[action="/login"] button[type=submit]')
        await expect(page.locator('[role="status"]')).to_be_visible()
        link = await self.mail_link(address, "sign_in", re.escape(self.base) + r"/login/\S+")
        await page.goto(link)
        await self.check(page)
        await page.click("main form button[type=submit]")
        await page.wait_for_url(re.compile(r"/(exchanges|inbox)$"))
        return page

    async def until_present(self, page: Page, path: str, selector: str) -> None:
        """Reloads `path` until `selector` is on it: the workflow moves in its own time."""

        async def present() -> bool:
            await page.goto(self.base + path)
            return await page.locator(selector).count() > 0

        for _ in range(150):
            if await present():
                await self.check(page)
                return
            await asyncio.sleep(0.2)
        raise AssertionError(f"{selector} never appeared on {path}")

    async def screenshot(self, page: Page, name: str) -> None:
        if SCREENSHOTS and self.language == "en":
            # Playwright makes the folder.
            await page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"), full_page=True)


@pytest.fixture
async def journey_for(
    db: Engine, time_skipping_env: WorkflowEnvironment
) -> AsyncIterator[Callable[[str], Awaitable[Journey]]]:
    async with (
        running_world(db, time_skipping_env, http_port=free_port()) as world,
        async_playwright() as playwright,
    ):
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )

        async def journey(language: str) -> Journey:
            with Session(db) as session:
                session.execute(update(User).values(language=language))
                session.commit()
            return Journey(world, browser, language)

        try:
            yield journey
        finally:
            await browser.close()


def in_twenty_days(now: datetime) -> str:
    start = (now + timedelta(days=20)).astimezone(UTC).replace(hour=9, minute=0)
    return start.strftime("%Y-%m-%dT%H:%M")


@pytest.mark.parametrize("language", ["en", "fr"])
async def test_one_exchange_from_request_to_outcome_through_the_pages(
    journey_for: Callable[[str], Awaitable[Journey]], db: Engine, language: str
) -> None:
    j = await journey_for(language)

    # The SME signs in and sends the request.
    sme = await j.sign_in(SME)
    await j.goto(sme, "/exchanges/new")
    await sme.fill("#new-title", "GLP toxicology package before first-in-human")
    await sme.fill(
        "#new-description",
        "We need a GLP repeated-dose toxicity study and a genotoxicity battery "
        "(Ames, micronucleus) for our small-molecule kinase inhibitor.",
    )
    await sme.select_option("#new-cooperation_type", "service_agreement")
    await sme.check('input[name="partner_kinds"][value="cro"]')
    await sme.check('input[name="required_certifications"][value="GLP"]')
    await sme.click('form[action="/exchanges/new"] button[type=submit]')
    await sme.wait_for_url(re.compile(r"/exchanges/\d+(\?.*)?$"))
    exchange_id = int(re.findall(r"/exchanges/(\d+)", sme.url)[0])
    path = f"/exchanges/{exchange_id}"
    await j.check(sme)

    # The home broker vets and shortlists from the inbox.
    broker = await j.sign_in(BROKER)
    await j.until_present(broker, "/inbox", f'a[href="{path}/vet"]')
    await j.screenshot(broker, "broker-inbox")
    await broker.click(f'a[href="{path}/vet"]')
    await j.check(broker)
    await broker.check('input[name="decision"][value="approve"]')
    await broker.click(f'form[action="{path}/vet"] button[type=submit]')
    await broker.wait_for_url(re.compile(r"/inbox"))
    await j.until_present(broker, f"{path}/shortlist", "#pick-bm-cro")
    await j.screenshot(broker, "broker-candidates")
    await broker.check("#pick-bm-cro")
    await broker.click(f'form[action="{path}/shortlist"] button[type=submit]')
    await broker.wait_for_url(re.compile(r"/inbox"))

    # The partner's cluster endorses.
    host = await j.sign_in(HOST)
    await j.until_present(host, "/inbox", f'a[href="{path}/host-review"]')
    await host.click(f'a[href="{path}/host-review"]')
    await j.check(host)
    await host.check('input[name="decision"][value="endorse"]')
    await host.click(f'form[action="{path}/host-review"] button[type=submit]')

    # Before the partner accepts, the SME's page names no partner; then the partner accepts.
    before = await sme.goto(j.base + path)
    assert before is not None
    html = await sme.content()
    assert "Isar Tox" not in html and PARTNER not in html and "Jonas Weber" not in html
    partner = await j.new_page()
    intro = await j.mail_link(PARTNER, "introduction_request", re.escape(j.base) + r"/t/\S+")
    await partner.goto(intro)
    await j.check(partner)
    await partner.click('form:has(input[name="action"][value="accept"]) button[type=submit]')
    await expect(partner.locator('[role="status"]')).to_be_visible()

    # The SME proposes slots; the partner picks one through the e-mailed link.
    await j.until_present(sme, path, f'form[action="{path}/slots"]')
    assert PARTNER in await sme.content()
    await sme.fill("#propose-slot_start_0", in_twenty_days(datetime.now(UTC)))
    await sme.select_option("#propose-timezone", "UTC")
    await sme.click(f'form[action="{path}/slots"] button[type=submit]')
    await sme.wait_for_url(re.compile(re.escape(path)))
    pick = await j.mail_link(PARTNER, "slots_proposed", re.escape(j.base) + r"/t/\S+")
    await partner.goto(pick)
    await j.check(partner)
    await partner.check('input[name="start"] >> nth=0')
    await partner.click('form:has(input[name="action"][value="pick_slot"]) button[type=submit]')
    await expect(partner.locator('[role="status"]')).to_be_visible()
    await j.until_present(sme, path, "#meeting-title")
    await j.screenshot(sme, "sme-exchange")

    # Past the meeting and the survey delay: both answer the survey.
    await j.world.env.sleep(30 * DAY)
    await j.until_present(sme, path, f'form[action="{path}/survey"]')
    await sme.check('form[action$="/survey"] input[name="outcome"][value="cooperation_possible"]')
    await sme.click(f'form[action="{path}/survey"] button[type=submit]')
    await sme.wait_for_url(re.compile(re.escape(path)))
    survey = await j.mail_link(PARTNER, "survey_invitation", re.escape(j.base) + r"/t/\S+")
    await partner.goto(survey)
    await j.check(partner)
    await partner.check("#survey-cooperation_possible")
    await partner.click('form:has(input[name="action"][value="survey"]) button[type=submit]')

    # The manager sees it closed and completed.
    def closed() -> tuple[str, str | None] | None:
        with Session(db) as session:
            row = session.get(Exchange, exchange_id)
            assert row is not None
            return (row.status, row.outcome) if row.outcome else None

    assert await eventually(closed, what="the exchange closed") == ("closed", "completed")
    manager = await j.sign_in(MANAGER)
    await j.goto(manager, "/exchanges?stage=closed")
    await expect(manager.locator(f'a[href="{path}"]')).to_be_visible()
    await j.goto(manager, path)

    # The reports count it as completed, and lead back to it (as of a day past the skipped
    # time: the workflow's clock ran a month ahead of the wall clock).
    as_of = (datetime.now(UTC) + timedelta(days=365)).date()
    await j.goto(manager, f"/reports?as_of={as_of}")
    completed = manager.locator('#funnel-title ~ div a[href*="figure=step%3Acompleted"]')
    await expect(completed).to_have_text("1")
    await j.screenshot(manager, "manager-reports")
    await completed.click()
    await manager.wait_for_url(re.compile(r"/exchanges\?"))
    await j.check(manager)
    await expect(manager.locator(f'#results a[href="{path}"]')).to_be_visible()
    await j.goto(manager, f"/reports/period?to={as_of}")
    await expect(manager.locator(f'#completed-title ~ div a[href="{path}"]')).to_be_visible()

    assert j.violations == [], j.violations
    assert len(j.checked) >= 23, j.checked


async def test_boundaries_hold_in_the_browser(
    journey_for: Callable[[str], Awaitable[Journey]],
) -> None:
    j = await journey_for("en")
    exchange_id = await j.world.create()
    path = f"/exchanges/{exchange_id}"

    other_sme = await j.sign_in("luc@erdre.example")
    foreign = await other_sme.goto(j.base + path)
    await j.check(other_sme)
    other_broker = await j.sign_in("broker@atlanpole.example")
    vet = await other_broker.goto(j.base + f"{path}/vet")
    await j.check(other_broker)
    inbox = await other_broker.goto(j.base + "/inbox")

    assert foreign is not None and foreign.status == 404
    await expect(other_sme.locator("h1")).to_have_text("Page not found")
    assert vet is not None and vet.status in (403, 404)
    assert inbox is not None and f'href="{path}/vet"' not in await other_broker.content()
    assert j.violations == [], j.violations


async def test_pages_fit_a_320_pixel_screen(
    journey_for: Callable[[str], Awaitable[Journey]],
) -> None:
    j = await journey_for("pl")
    exchange_id = await j.world.create()
    sme = await j.sign_in(SME)
    broker = await j.sign_in(BROKER)
    manager = await j.sign_in(MANAGER)
    wide: list[str] = []
    for page, paths in (
        (sme, ["/exchanges", "/exchanges/new", f"/exchanges/{exchange_id}", "/account"]),
        (broker, ["/inbox", "/catalogue", f"/exchanges/{exchange_id}/vet", "/reports"]),
        (manager, ["/reports", "/reports/period"]),
    ):
        await page.set_viewport_size({"width": 320, "height": 640})
        for path in paths:
            await j.goto(page, path)
            # Wide tables scroll inside their own box; the page itself must not.
            width = await page.evaluate("document.documentElement.scrollWidth")
            if width > 320:
                # What sticks out, outside the boxes that scroll on their own.
                culprits = await page.evaluate(STICKING_OUT)
                wide.append(f"{path}: {width}px {culprits}")
    assert wide == [], wide
    assert j.violations == [], j.violations
