"""The demo's past exchanges have no workflow: their pages and API details render from SQL."""

from datetime import timedelta

from sqlmodel import Session, col, select
from temporalio.testing import WorkflowEnvironment

from ce4big.domain import Stage
from ce4big.models import Exchange, utcnow
from ce4big.security import create_api_token, get_user_by_email
from ce4big.seed import demo_email, seed_demo
from ce4big.settings import Settings
from ce4big.websessions import redeem_sign_in_link, request_sign_in
from tests.api.conftest import ClientFactory


def session_cookie_for(session: Session, settings: Settings, email: str) -> str:
    now = utcnow()
    ticket = request_sign_in(session=session, email=email, client="t", settings=settings, now=now)
    assert ticket is not None
    opened = redeem_sign_in_link(session=session, plain=ticket.token, settings=settings, now=now)
    session.commit()
    return opened.cookie


class TestDemoExchanges:
    async def test_every_page_and_detail_renders_without_a_workflow(
        self,
        api_client: ClientFactory,
        session: Session,
        settings: Settings,
        dev_server_env: WorkflowEnvironment,
    ) -> None:
        seed_demo(session=session, now=utcnow() - timedelta(days=1))
        session.commit()
        manager = get_user_by_email(session=session, email=demo_email("manager.biowin"))
        assert manager is not None
        token = create_api_token(session=session, user=manager, days=1)
        session.commit()
        cookie = session_cookie_for(session, settings, manager.email)
        exchanges = session.exec(select(Exchange).order_by(col(Exchange.id))).all()
        async with api_client(temporal_client=dev_server_env.client) as client:
            client.cookies.set("ce4big_session", cookie)
            for exchange in exchanges:
                page = await client.get(f"/exchanges/{exchange.id}")
                assert page.status_code == 200, (exchange.title, page.text[:500])
                assert exchange.title in page.text
                detail = await client.get(
                    f"/api/v1/exchanges/{exchange.id}", headers={"Authorization": f"Bearer {token}"}
                )
                assert detail.status_code == 200, detail.text
                body = detail.json()
                assert body["state"] is None
                assert body["timeline"][0]["kind"] == "submitted"
                assert (body["status"] == Stage.CLOSED) == (body["outcome"] is not None)

    async def test_the_requester_sees_their_closed_exchange(
        self,
        api_client: ClientFactory,
        session: Session,
        settings: Settings,
        dev_server_env: WorkflowEnvironment,
    ) -> None:
        seed_demo(session=session, now=utcnow() - timedelta(days=1))
        session.commit()
        email = demo_email("sme1.biowin")
        exchange = session.exec(
            select(Exchange).where(Exchange.outcome == "completed").order_by(col(Exchange.id))
        ).first()
        assert exchange is not None
        cookie = session_cookie_for(session, settings, email)
        async with api_client(temporal_client=dev_server_env.client) as client:
            client.cookies.set("ce4big_session", cookie)
            page = await client.get(f"/exchanges/{exchange.id}")
        assert page.status_code == 200
        assert exchange.title in page.text
