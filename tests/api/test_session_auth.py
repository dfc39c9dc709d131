"""The JSON API accepts a signed-in browser's session cookie as well as bearer tokens; a write
by cookie must carry the session's CSRF token."""

from sqlmodel import Session, select

from ce4big.models import User, utcnow
from ce4big.settings import Settings
from ce4big.users import set_user_active
from ce4big.websessions import csrf_token, redeem_sign_in_link, request_sign_in
from tests.api.conftest import ClientFactory
from tests.factories import user_with_token

ADMIN = "admin@ce4big.example"
NEW_USER = {"email": "new@x.example", "role": "manager"}


def session_cookie_for(session: Session, settings: Settings, email: str) -> str:
    now = utcnow()
    ticket = request_sign_in(session=session, email=email, client="t", settings=settings, now=now)
    assert ticket is not None
    opened = redeem_sign_in_link(session=session, plain=ticket.token, settings=settings, now=now)
    session.commit()
    return opened.cookie


class TestSessionCookie:
    async def test_reads_need_no_csrf_and_writes_need_the_sessions_token(
        self, api_client: ClientFactory, session: Session, settings: Settings
    ) -> None:
        user_with_token(session, ADMIN, "admin")
        cookie = session_cookie_for(session, settings, ADMIN)
        other = session_cookie_for(session, settings, ADMIN)
        async with api_client() as client:
            client.cookies.set("ce4big_session", cookie)
            listed = await client.get("/api/v1/users")
            without = await client.post("/api/v1/users", json=NEW_USER)
            foreign = await client.post(
                "/api/v1/users",
                json=NEW_USER,
                headers={"X-CSRF-Token": csrf_token(cookie=other, settings=settings)},
            )
            created = await client.post(
                "/api/v1/users",
                json=NEW_USER,
                headers={"X-CSRF-Token": csrf_token(cookie=cookie, settings=settings)},
            )
        assert listed.status_code == 200
        assert (without.status_code, foreign.status_code) == (403, 403)
        assert "CSRF" in without.json()["error"]["message"]
        assert created.status_code == 201

    async def test_an_unknown_or_ended_session_is_401(
        self, api_client: ClientFactory, session: Session, settings: Settings
    ) -> None:
        user_with_token(session, ADMIN, "admin")
        cookie = session_cookie_for(session, settings, ADMIN)
        set_user_active(session=session, email=ADMIN, active=False, now=utcnow())
        session.commit()
        async with api_client() as client:
            client.cookies.set("ce4big_session", cookie)
            ended = await client.get("/api/v1/users")
            client.cookies.set("ce4big_session", "made-up")
            unknown = await client.get("/api/v1/users")
        assert (ended.status_code, unknown.status_code) == (401, 401)
        assert session.exec(select(User).where(User.email == NEW_USER["email"])).first() is None
