import re
from typing import Any

import httpx
from icalendar import Calendar
from markupsafe import escape
from sqlalchemy import Engine

from activities.email import EmailActivities, SendEmailInput
from bench.stack import free_port
from ce4big.settings import Settings
from cli.mailsink import start_sink
from emails.samples import sample_context
from tests.api.conftest import ClientFactory
from tests.conftest import make_settings

CLAIRE = "claire@nantesgene.example"
TOMASZ = "t.wisniewski@krakow-preclinical.example"
HOSTILE_TITLE = "<script>alert('mail')</script> Tox study"


def _dev_settings(db: Engine, **overrides: Any) -> Settings:
    url = db.url.render_as_string(hide_password=False)
    return make_settings(url, ce4big_env="development", **overrides)


async def _deliver_through_the_sink(db: Engine) -> None:
    """Two e-mails through the real dev sink: slots to pick, then a meeting with its invite."""
    port = free_port()
    settings = _dev_settings(db, smtp_port=port)
    sink = await start_sink(db, "127.0.0.1", port)
    try:
        activities = EmailActivities(settings=settings, engine=db)
        slots = sample_context("slots_proposed", base_url="http://testserver")
        await activities.send_email(
            SendEmailInput(
                idempotency_key="exchange-42:slots:claire",
                kind="slots_proposed",
                to_email=CLAIRE,
                to_name="Claire Moreau",
                language="en",
                timezone="Europe/Paris",
                context={**slots, "exchange_title": HOSTILE_TITLE},
                exchange_id=None,
            )
        )
        meeting = sample_context("meeting_confirmed", base_url="http://testserver")
        await activities.send_email(
            SendEmailInput(
                idempotency_key="exchange-42:meeting:tomasz",
                kind="meeting_confirmed",
                to_email=TOMASZ,
                to_name="Tomasz Wiśniewski",
                language="pl",
                timezone="Europe/Warsaw",
                context=meeting,
                exchange_id=None,
                invite={
                    "start": meeting["start"],
                    "end": meeting["end"],
                    "timezone": "Europe/Paris",
                    "summary": "CE4BIG meeting",
                    "attendees": [{"email": CLAIRE}, {"email": TOMASZ}],
                },
            )
        )
    finally:
        sink.close()
        await sink.wait_closed()


def _message_links(page: httpx.Response) -> list[str]:
    return re.findall(r'href="(http://testserver/dev/mailbox/\d+)"', page.text)


class TestDevMailbox:
    async def test_lists_received_messages_newest_first(
        self, db: Engine, api_client: ClientFactory
    ) -> None:
        await _deliver_through_the_sink(db)

        async with api_client(_dev_settings(db)) as client:
            page = await client.get("/dev/mailbox")

        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "<h1>Dev mailbox</h1>" in page.text
        assert page.text.index(TOMASZ) < page.text.index(CLAIRE)
        assert "Spotkanie potwierdzone" in page.text
        assert "&lt;script&gt;" in page.text and "<script>" not in page.text
        assert len(_message_links(page)) == 2

    async def test_filters_by_recipient(self, db: Engine, api_client: ClientFactory) -> None:
        await _deliver_through_the_sink(db)

        async with api_client(_dev_settings(db)) as client:
            page = await client.get("/dev/mailbox", params={"to": "KRAKOW-preclinical"})
            nobody = await client.get("/dev/mailbox", params={"to": "100%_nobody"})

        assert len(_message_links(page)) == 1 and TOMASZ in page.text
        assert _message_links(nobody) == []

    async def test_shows_a_message_safely_with_its_parts_and_links(
        self, db: Engine, api_client: ClientFactory
    ) -> None:
        await _deliver_through_the_sink(db)

        async with api_client(_dev_settings(db)) as client:
            listing = await client.get("/dev/mailbox")
            page = await client.get(_message_links(listing)[1])

        assert page.status_code == 200
        csp = page.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script" not in csp.replace("'none'", "")
        (iframe,) = re.findall(r"<iframe[^>]*>", page.text)
        sandbox = re.search(r'sandbox="([^"]*)"', iframe)
        assert sandbox is not None
        assert "allow-scripts" not in sandbox.group(1)
        assert "allow-same-origin" not in sandbox.group(1)
        assert 'srcdoc="&lt;!DOCTYPE html&gt;' in iframe
        assert "<script" not in page.text
        assert "&amp;lt;script&amp;gt;" in iframe
        assert str(escape(HOSTILE_TITLE)) in page.text
        assert '<a href="http://testserver/t/sample-slots-proposed">' in page.text
        assert "Message-ID" in page.text and "@ce4big.example&gt;" in page.text
        assert "invite.ics" not in page.text

    async def test_offers_the_invite_as_a_download(
        self, db: Engine, api_client: ClientFactory
    ) -> None:
        await _deliver_through_the_sink(db)

        async with api_client(_dev_settings(db)) as client:
            listing = await client.get("/dev/mailbox")
            detail_url = _message_links(listing)[0]
            page = await client.get(detail_url)
            invite = await client.get(f"{detail_url}/invite.ics")
            raw = await client.get(f"{detail_url}/raw")

        assert f'href="{detail_url}/invite.ics" download' in page.text
        assert invite.status_code == 200
        assert invite.headers["content-type"].startswith("text/calendar")
        assert invite.headers["content-disposition"].startswith("attachment;")
        calendar = Calendar.from_ical(invite.content)
        assert calendar.method == "REQUEST"
        assert raw.headers["content-type"].startswith("text/plain")
        assert "Content-Type: multipart/mixed" in raw.text

    async def test_unknown_message_is_not_found(
        self, db: Engine, api_client: ClientFactory
    ) -> None:
        async with api_client(_dev_settings(db)) as client:
            missing = await client.get("/dev/mailbox/123456")

        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "not_found"

    async def test_previews_every_kind_in_every_language(
        self, db: Engine, api_client: ClientFactory
    ) -> None:
        async with api_client(_dev_settings(db)) as client:
            index = await client.get("/dev/mailbox/previews")
            preview = await client.get("/dev/mailbox/previews/introduction_request/de")
            unknown = await client.get("/dev/mailbox/previews/newsletter/de")

        assert index.status_code == 200
        assert index.text.count("/dev/mailbox/previews/") == 29 * 4
        assert preview.status_code == 200
        assert "Ein Unternehmen aus Atlanpole Biotherapies" in preview.text
        assert unknown.status_code == 404

    async def test_absent_outside_development(
        self, settings: Settings, api_client: ClientFactory
    ) -> None:
        async with api_client(settings) as client:
            mailbox = await client.get("/dev/mailbox")
            previews = await client.get("/dev/mailbox/previews")

        assert (mailbox.status_code, previews.status_code) == (404, 404)
