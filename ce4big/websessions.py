"""Sign-in without passwords, and the server-side sessions it opens.

An address asks for a link; an active user with that address gets one by e-mail (random,
stored hashed, single use, short-lived), and every address gets the same answer. Opening the
link shows a confirmation page; only its POST redeems the link, because mail scanners open
links before people do. A session is a row; the browser's cookie holds a random id whose hash
is the row's key. It ends on sign-out, when the user is deactivated, after an idle spell and
at an absolute limit. Every form POST of a session carries a CSRF token derived from the
session id with the secret key.
"""

import hashlib
import hmac
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import CursorResult, update
from sqlmodel import Session, col, select

from ce4big.errors import LinkExpired, LinkUsed, NotFound, TooManyRequests
from ce4big.models import SignInLink, SignInRequest, User, WebSession
from ce4big.security import get_user_by_email, hash_token, new_token
from ce4big.settings import Settings

# A session's last-seen time is written at most this often: a write per page would
# serialise readers on SQLite.
TOUCH_EVERY = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class SignInTicket:
    """What the sign-in e-mail needs: whom to write to and the link's token."""

    user: User
    token: str


@dataclass(frozen=True, slots=True)
class OpenedSession:
    """A new session: the cookie's value and when it ends at the latest."""

    cookie: str
    expires_at: datetime


def request_sign_in(
    *, session: Session, email: str, client: str, settings: Settings, now: datetime
) -> SignInTicket | None:
    """Counts the request against the limits for the address and for the client (raising
    TooManyRequests with the wait), then makes a link when the address belongs to an active
    user. None otherwise: the caller answers the same either way."""
    address_hash = hash_token(email.strip().lower())
    client_hash = hash_token(client)
    window = timedelta(minutes=settings.sign_in_window_minutes)
    for column, value, limit in (
        (SignInRequest.address_hash, address_hash, settings.sign_in_per_address),
        (SignInRequest.client_hash, client_hash, settings.sign_in_per_client),
    ):
        recent = session.exec(
            select(SignInRequest.at)
            .where(column == value, col(SignInRequest.at) > now - window)
            .order_by(col(SignInRequest.at))
        ).all()
        if len(recent) >= limit:
            wait = (recent[0] + window - now).total_seconds()
            raise TooManyRequests(
                "too many sign-in requests: wait a few minutes, then ask again",
                retry_after_seconds=max(1, math.ceil(wait)),
            )
    session.add(SignInRequest(address_hash=address_hash, client_hash=client_hash, at=now))
    user = get_user_by_email(session=session, email=email.strip())
    if user is None or user.id is None or not user.is_active:
        return None
    token = new_token()
    session.add(
        SignInLink(
            token_hash=token.hash,
            user_id=user.id,
            created_at=now,
            expires_at=now + timedelta(minutes=settings.sign_in_link_minutes),
        )
    )
    return SignInTicket(user=user, token=token.plain)


def _link(session: Session, plain: str) -> SignInLink:
    link = session.exec(
        select(SignInLink).where(SignInLink.token_hash == hash_token(plain))
    ).first()
    if link is None:
        raise NotFound("this sign-in link is not valid: ask for a new one")
    return link


def check_sign_in_link(*, session: Session, plain: str, now: datetime) -> User:
    """The user a link would sign in, without using it (the confirmation page)."""
    link = _link(session, plain)
    if link.used_at is not None:
        raise LinkUsed("this sign-in link has been used: ask for a new one")
    if link.expires_at <= now:
        raise LinkExpired("this sign-in link has expired: ask for a new one")
    user = session.get(User, link.user_id)
    if user is None or not user.is_active:
        raise NotFound("this sign-in link is not valid: ask for a new one")
    return user


def redeem_sign_in_link(
    *, session: Session, plain: str, settings: Settings, now: datetime
) -> OpenedSession:
    """Uses the link (once: a second redeemer finds it used) and opens a session."""
    user = check_sign_in_link(session=session, plain=plain, now=now)
    used: CursorResult[Any] = session.execute(  # type: ignore[assignment]
        update(SignInLink)
        .where(
            col(SignInLink.token_hash) == hash_token(plain),
            col(SignInLink.used_at).is_(None),
            col(SignInLink.expires_at) > now,
        )
        .values(used_at=now)
    )
    if used.rowcount != 1:
        raise LinkUsed("this sign-in link has been used: ask for a new one")
    assert user.id is not None
    cookie = new_token()
    expires_at = now + timedelta(hours=settings.session_absolute_hours)
    session.add(
        WebSession(
            session_hash=cookie.hash,
            user_id=user.id,
            created_at=now,
            last_seen_at=now,
            expires_at=expires_at,
        )
    )
    return OpenedSession(cookie=cookie.plain, expires_at=expires_at)


def user_for_session(
    *, session: Session, cookie: str, settings: Settings, now: datetime
) -> User | None:
    """The signed-in user behind a cookie, or None when the session is unknown, ended, idle
    too long, past its absolute limit, or its user is deactivated."""
    row = session.exec(
        select(WebSession, User)
        .join(User, col(User.id) == WebSession.user_id)
        .where(WebSession.session_hash == hash_token(cookie))
    ).first()
    if row is None:
        return None
    web_session, user = row
    idle = timedelta(minutes=settings.session_idle_minutes)
    if (
        web_session.ended_at is not None
        or web_session.expires_at <= now
        or web_session.last_seen_at + idle <= now
        or not user.is_active
    ):
        return None
    if now - web_session.last_seen_at > TOUCH_EVERY:
        web_session.last_seen_at = now
        session.add(web_session)
    return user


def end_session(*, session: Session, cookie: str, now: datetime) -> None:
    session.execute(
        update(WebSession)
        .where(
            col(WebSession.session_hash) == hash_token(cookie), col(WebSession.ended_at).is_(None)
        )
        .values(ended_at=now)
    )


def end_user_sessions(*, session: Session, user_id: int, now: datetime) -> None:
    """Signs the user out everywhere (deactivation)."""
    session.execute(
        update(WebSession)
        .where(col(WebSession.user_id) == user_id, col(WebSession.ended_at).is_(None))
        .values(ended_at=now)
    )


def csrf_token(*, cookie: str, settings: Settings) -> str:
    """The session's CSRF token: bound to it, unguessable without the secret key."""
    key = settings.secret_key.get_secret_value().encode()
    return hmac.new(key, b"csrf:" + cookie.encode(), hashlib.sha256).hexdigest()


def csrf_matches(*, cookie: str, sent: str | None, settings: Settings) -> bool:
    return sent is not None and hmac.compare_digest(
        csrf_token(cookie=cookie, settings=settings), sent
    )
