"""Tokens that are stored only as hashes: random, or derived from a key with SECRET_KEY."""

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, update
from sqlmodel import Session, col, select

from ce4big.models import ApiToken, User, utcnow

API_TOKEN_PREFIX = "c4b_"


@dataclass(frozen=True, slots=True)
class NewToken:
    plain: str
    hash: str


def hash_token(plain: str) -> str:
    # Tokens carry 256 random bits, so a fast unsalted hash is enough to make a leaked
    # table useless without making every request pay for a password hash.
    return hashlib.sha256(plain.encode()).hexdigest()


def new_token(prefix: str = "") -> NewToken:
    plain = prefix + secrets.token_urlsafe(32)
    return NewToken(plain=plain, hash=hash_token(plain))


def derived_token(*, secret: str, purpose: str, key: str) -> NewToken:
    """The same token for the same key, unguessable without the secret (256 bits of HMAC), so
    that every copy of one logical e-mail, retries included, carries the same working link."""
    digest = hmac.new(secret.encode(), f"{purpose}:{key}".encode(), hashlib.sha256).digest()
    plain = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    return NewToken(plain=plain, hash=hash_token(plain))


def create_api_token(*, session: Session, user: User, days: int, name: str = "") -> str:
    assert user.id is not None
    token = new_token(API_TOKEN_PREFIX)
    session.add(
        ApiToken(
            user_id=user.id,
            token_hash=token.hash,
            name=name,
            expires_at=utcnow() + timedelta(days=days),
        )
    )
    return token.plain


def get_user_by_api_token(*, session: Session, plain: str, now: datetime) -> User | None:
    row = session.exec(
        select(ApiToken, User)
        .join(User, User.id == ApiToken.user_id)  # type: ignore[arg-type]
        .where(ApiToken.token_hash == hash_token(plain))
    ).first()
    if row is None:
        return None
    token, user = row
    if token.revoked_at is not None or token.expires_at <= now or not user.is_active:
        return None
    # At most once a minute: a write on every request would serialise readers on SQLite. The
    # caller commits at once (see api.deps), before any await.
    if token.last_used_at is None or now - token.last_used_at > timedelta(minutes=1):
        session.execute(
            update(ApiToken).where(col(ApiToken.id) == token.id).values(last_used_at=now)
        )
    return user


def get_user_by_email(*, session: Session, email: str) -> User | None:
    return session.exec(select(User).where(func.lower(User.email) == email.lower())).first()


def list_api_tokens(*, session: Session, user_id: int) -> list[ApiToken]:
    """A user's tokens, newest first (only their hashes are stored: never the token)."""
    query = (
        select(ApiToken)
        .where(ApiToken.user_id == user_id)
        .order_by(col(ApiToken.created_at).desc(), col(ApiToken.id).desc())
    )
    return list(session.exec(query))


def revoke_api_token(*, session: Session, user_id: int, token_id: int, now: datetime) -> bool:
    """False when the user has no such token (someone else's is as unknown as none)."""
    token = session.get(ApiToken, token_id)
    if token is None or token.user_id != user_id:
        return False
    if token.revoked_at is None:
        token.revoked_at = now
        session.add(token)
    return True


def find_api_token(*, session: Session, reference: str) -> ApiToken | None:
    """A token by its id (as `ce4big token list` and the admin API show it), or by the token
    itself (as found where it leaked)."""
    reference = reference.strip()
    if reference.startswith(API_TOKEN_PREFIX):
        query = select(ApiToken).where(ApiToken.token_hash == hash_token(reference))
        return session.exec(query).first()
    if reference.isdecimal():
        return session.get(ApiToken, int(reference))
    return None


def revoke_user_api_tokens(*, session: Session, user_id: int, now: datetime) -> int:
    """Revokes every token of the user that still works; how many that was."""
    result = session.execute(
        update(ApiToken)
        .where(
            col(ApiToken.user_id) == user_id,
            col(ApiToken.revoked_at).is_(None),
            col(ApiToken.expires_at) > now,
        )
        .values(revoked_at=now)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


_ADDRESS = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)+")


def loggable(text: str, *, secret: str) -> str:
    """`text` for a log line: each e-mail address becomes a short keyed hash of itself (the same
    for the same address, so lines about one recipient can be followed), never the address."""

    def pseudonym(match: re.Match[str]) -> str:
        address = match.group().lower().encode()
        digest = hmac.new(secret.encode(), address, hashlib.sha256).hexdigest()
        return f"<address {digest[:10]}>"

    return _ADDRESS.sub(pseudonym, text)
