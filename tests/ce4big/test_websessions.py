from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import Session, select

from ce4big.errors import LinkExpired, LinkUsed, NotFound, TooManyRequests
from ce4big.models import SignInLink, SignInRequest, User, WebSession
from ce4big.settings import Settings
from ce4big.users import set_user_active
from ce4big.websessions import (
    OpenedSession,
    check_sign_in_link,
    csrf_matches,
    csrf_token,
    end_session,
    redeem_sign_in_link,
    request_sign_in,
    user_for_session,
)
from tests.factories import add_organisation, user_with_token

NOW = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
EMAIL = "eva@bm-sme.example"


@pytest.fixture
def eva(session: Session) -> User:
    add_organisation(session, "bm-sme", "biom", country="DE")
    user, _ = user_with_token(session, EMAIL, "sme", organisation="bm-sme")
    return user


def ask(
    session: Session,
    settings: Settings,
    *,
    email: str = EMAIL,
    client: str = "10.0.0.1",
    at: datetime = NOW,
) -> str | None:
    ticket = request_sign_in(session=session, email=email, client=client, settings=settings, now=at)
    session.commit()
    return None if ticket is None else ticket.token


def signed_in(session: Session, settings: Settings, at: datetime = NOW) -> OpenedSession:
    token = ask(session, settings, at=at)
    assert token is not None
    opened = redeem_sign_in_link(session=session, plain=token, settings=settings, now=at)
    session.commit()
    return opened


class TestSignInLink:
    def test_a_link_opens_a_session_for_its_user_once(
        self, session: Session, settings: Settings, eva: User
    ) -> None:
        token = ask(session, settings)
        assert token is not None
        assert check_sign_in_link(session=session, plain=token, now=NOW).id == eva.id

        opened = redeem_sign_in_link(session=session, plain=token, settings=settings, now=NOW)
        session.commit()

        user = user_for_session(session=session, cookie=opened.cookie, settings=settings, now=NOW)
        assert user is not None and user.id == eva.id
        with pytest.raises(LinkUsed):
            redeem_sign_in_link(session=session, plain=token, settings=settings, now=NOW)

    def test_only_hashes_are_stored(self, session: Session, settings: Settings, eva: User) -> None:
        token = ask(session, settings)
        opened = signed_in(session, settings)
        stored = [row.token_hash for row in session.exec(select(SignInLink))]
        stored += [row.session_hash for row in session.exec(select(WebSession))]
        assert token not in stored and opened.cookie not in stored

    def test_an_expired_link_is_refused(
        self, session: Session, settings: Settings, eva: User
    ) -> None:
        token = ask(session, settings)
        assert token is not None
        later = NOW + timedelta(minutes=settings.sign_in_link_minutes, seconds=1)
        with pytest.raises(LinkExpired):
            redeem_sign_in_link(session=session, plain=token, settings=settings, now=later)

    def test_a_tampered_link_is_unknown(
        self, session: Session, settings: Settings, eva: User
    ) -> None:
        token = ask(session, settings)
        assert token is not None
        with pytest.raises(NotFound):
            redeem_sign_in_link(session=session, plain=token[:-1] + "x", settings=settings, now=NOW)

    def test_an_unknown_or_deactivated_address_gets_no_link_and_no_error(
        self, session: Session, settings: Settings, eva: User
    ) -> None:
        assert ask(session, settings, email="nobody@example.org") is None
        set_user_active(session=session, email=EMAIL, active=False, now=NOW)
        assert ask(session, settings) is None
        # Both requests still count towards the limits.
        assert len(session.exec(select(SignInRequest)).all()) == 2


class TestLimits:
    def test_too_many_requests_for_one_address_wait_for_the_window(
        self, session: Session, settings: Settings, eva: User
    ) -> None:
        for n in range(settings.sign_in_per_address):
            ask(session, settings, email=EMAIL.upper(), client=f"10.0.0.{n}", at=NOW)
        with pytest.raises(TooManyRequests) as refused:
            ask(session, settings, client="10.9.9.9", at=NOW + timedelta(minutes=1))
        window = settings.sign_in_window_minutes * 60
        assert refused.value.headers() == {"Retry-After": str(window - 60)}
        later = NOW + timedelta(minutes=settings.sign_in_window_minutes, seconds=1)
        assert ask(session, settings, at=later) is not None

    def test_too_many_requests_from_one_client(
        self, session: Session, settings: Settings, eva: User
    ) -> None:
        for n in range(settings.sign_in_per_client):
            ask(session, settings, email=f"someone{n}@example.org", client="10.0.0.1")
        with pytest.raises(TooManyRequests):
            ask(session, settings, client="10.0.0.1")
        assert ask(session, settings, client="10.0.0.2") is not None


class TestSession:
    def test_sign_out_ends_the_session(
        self, session: Session, settings: Settings, eva: User
    ) -> None:
        opened = signed_in(session, settings)
        end_session(session=session, cookie=opened.cookie, now=NOW)
        session.commit()
        assert (
            user_for_session(session=session, cookie=opened.cookie, settings=settings, now=NOW)
            is None
        )

    def test_deactivating_the_user_ends_every_session(
        self, session: Session, settings: Settings, eva: User
    ) -> None:
        first, second = signed_in(session, settings), signed_in(session, settings)
        set_user_active(session=session, email=EMAIL, active=False, now=NOW)
        session.commit()
        set_user_active(session=session, email=EMAIL, active=True, now=NOW)
        session.commit()
        for opened in (first, second):
            assert (
                user_for_session(session=session, cookie=opened.cookie, settings=settings, now=NOW)
                is None
            )

    def test_idle_and_absolute_expiry(
        self, session: Session, settings: Settings, eva: User
    ) -> None:
        opened = signed_in(session, settings)
        idle = timedelta(minutes=settings.session_idle_minutes)
        at = NOW
        # Active use keeps it open up to the absolute limit, never beyond.
        while at + idle / 2 < opened.expires_at:
            at += idle / 2
            assert user_for_session(
                session=session, cookie=opened.cookie, settings=settings, now=at
            )
            session.commit()
        assert (
            user_for_session(
                session=session, cookie=opened.cookie, settings=settings, now=opened.expires_at
            )
            is None
        )

        idle_one = signed_in(session, settings)
        assert (
            user_for_session(
                session=session, cookie=idle_one.cookie, settings=settings, now=NOW + idle
            )
            is None
        )

    def test_csrf_token_is_bound_to_the_session(
        self, session: Session, settings: Settings, eva: User
    ) -> None:
        first, second = signed_in(session, settings), signed_in(session, settings)
        token = csrf_token(cookie=first.cookie, settings=settings)
        assert csrf_matches(cookie=first.cookie, sent=token, settings=settings)
        assert not csrf_matches(cookie=second.cookie, sent=token, settings=settings)
        assert not csrf_matches(cookie=first.cookie, sent=None, settings=settings)
