"""The reports in the web app: the dashboard and the evidence report, from hand-built
timelines (tests/api/report_data.py); every count links to the exchanges behind it."""

import re
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlmodel import Session, select

from ce4big.models import User, utcnow
from ce4big.settings import Settings
from ce4big.websessions import redeem_sign_in_link, request_sign_in
from tests.api.conftest import ClientFactory

LATE = "as_of=2026-12-31"
EMAILS = {"manager": "m@ce4big.example", "broker": "b@bw.example", "sme": "sme@bw.example"}


@pytest.fixture
async def browser(
    api_client: ClientFactory, followed_up: dict[str, str], settings: Settings, session: Session
) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    """One signed-in client per role, reading English."""
    clients = {}
    async with api_client() as manager, api_client() as broker, api_client() as sme:
        for role, client in (("manager", manager), ("broker", broker), ("sme", sme)):
            user = session.exec(select(User).where(User.email == EMAILS[role])).one()
            user.language = "en"
            session.add(user)
            ticket = request_sign_in(
                session=session, email=EMAILS[role], client=role, settings=settings, now=utcnow()
            )
            assert ticket is not None
            opened = redeem_sign_in_link(
                session=session, plain=ticket.token, settings=settings, now=utcnow()
            )
            session.commit()
            client.cookies.set("ce4big_session", opened.cookie)
            clients[role] = client
        yield clients


def funnel_counts(html: str) -> dict[str, str]:
    """The funnel table: step → count as written."""
    table = html.split('id="funnel-title"', 1)[1].split("</table>", 1)[0]
    return dict(
        re.findall(
            r'<th scope="row">([^<]+)</th>\s*<td class="number">(?:<a href="[^"]+">)?(\d+)', table
        )
    )


class TestDashboard:
    async def test_a_manager_sees_every_cluster_with_charts_and_tables(
        self, browser: dict[str, httpx.AsyncClient]
    ) -> None:
        page = await browser["manager"].get(f"/reports?{LATE}")
        assert page.status_code == 200
        assert funnel_counts(page.text) == {
            "Submitted": "4",
            "Approved by the broker": "3",
            "Shortlisted": "2",
            "Partner accepted": "2",
            "Meeting scheduled": "1",
            "Meeting held": "1",
            "Survey answered": "1",
            "Completed": "1",
        }
        for chart in ("funnel-chart", "weeks-chart", "closed-chart", "wave-chart"):
            assert f'role="img" aria-labelledby="{chart}-title {chart}-desc"' in page.text
        assert "Exchange elsewhere" in page.text  # overdue now
        assert 'id="scope-home"' in page.text

    async def test_each_count_leads_to_the_exchanges_behind_it(
        self, browser: dict[str, httpx.AsyncClient]
    ) -> None:
        manager = browser["manager"]
        page = await manager.get(f"/reports?{LATE}")
        links = set(re.findall(r'href="(/exchanges\?[^"]+)">(\d+)</a>', page.text))
        assert len(links) >= 8
        for href, count in links:
            listed = await manager.get(href.replace("&amp;", "&"))
            assert listed.status_code == 200
            found = re.search(r'<p role="status">(\d+) exchanges?</p>', listed.text)
            assert found and found.group(1) == count, href
            assert "The exchanges behind this figure of the reports." in listed.text

    async def test_a_broker_sees_their_own_cluster_and_an_sme_is_refused(
        self, browser: dict[str, httpx.AsyncClient]
    ) -> None:
        broker = await browser["broker"].get(f"/reports?{LATE}&home=biom")
        assert broker.status_code == 200
        assert funnel_counts(broker.text)["Submitted"] == "3"
        assert 'id="scope-home"' not in broker.text
        assert "Exchange elsewhere" not in broker.text
        sme = await browser["sme"].get("/reports")
        assert sme.status_code == 403
        # Nor can an SME reach a figure's list beyond its own exchanges' filters.
        behind = await browser["sme"].get(f"/exchanges?figure=step:submitted&{LATE}")
        assert "The exchanges behind this figure" not in behind.text

    async def test_a_date_that_is_not_one_is_told_back(
        self, browser: dict[str, httpx.AsyncClient]
    ) -> None:
        page = await browser["manager"].get("/reports?from=2026-02-31&to=soon")
        assert page.status_code == 200
        assert page.text.count("Enter a date like 2026-03-31.") >= 2
        assert 'aria-invalid="true"' in page.text


class TestEvidenceReport:
    async def test_the_period_with_its_completed_exchanges_and_the_method(
        self, browser: dict[str, httpx.AsyncClient]
    ) -> None:
        page = await browser["manager"].get("/reports/period?from=2026-03-01&to=2026-12-31")
        assert page.status_code == 200
        completed = page.text.split('id="completed-title"', 1)[1].split("</table>", 1)[0]
        assert "Exchange completed" in completed
        assert "An agreement was reached (licensing)" in completed
        assert "A cooperation looks possible" in completed
        assert 'id="method-title"' in page.text
        assert page.text.count('class="print-page') >= 6
        empty = await browser["manager"].get("/reports/period?from=2025-01-01&to=2025-12-31")
        assert "No exchange submitted in this period had been completed by its end." in empty.text

    async def test_in_the_readers_language(
        self, browser: dict[str, httpx.AsyncClient], session: Session
    ) -> None:
        manager = session.exec(select(User).where(User.email == EMAILS["manager"])).one()
        manager.language = "fr"
        session.add(manager)
        session.commit()
        page = await browser["manager"].get(f"/reports?{LATE}")
        assert '<h2 id="funnel-title">Entonnoir</h2>' in page.text
        assert "Approuvé par le chargé d\u2019affaires" in page.text
        listed = await browser["manager"].get(f"/exchanges?figure=outcome:completed&{LATE}")
        assert "Clôturé\u00a0: Mené à bien" in listed.text
