"""The e-mail log: one row per logical e-mail (idempotency key), the record that makes a
retried send a no-op once the e-mail went out. Synchronous: call through asyncio.to_thread."""

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from ce4big.db import session_scope
from ce4big.mailerrors import EmailContextError
from ce4big.models import EmailLog

ERROR_MAX_CHARS = 2000


class EmailStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class EmailClaim:
    status: EmailStatus
    message_id: str
    attempts: int
    error: str | None


def _find(session: Session, key: str) -> EmailLog | None:
    return session.exec(select(EmailLog).where(EmailLog.idempotency_key == key)).first()


def _claim(row: EmailLog) -> EmailClaim:
    return EmailClaim(
        status=EmailStatus(row.status),
        message_id=row.message_id,
        attempts=row.attempts,
        error=row.error,
    )


def claim_email(
    *,
    engine: Engine,
    idempotency_key: str,
    exchange_id: int | None,
    recipient: str,
    kind: str,
    language: str,
    message_id: str,
) -> EmailClaim:
    """The key's row, created on first use; an attempt is counted unless it is settled."""
    try:
        with session_scope(engine) as session:
            row = _find(session, idempotency_key)
            if row is None:
                row = EmailLog(
                    idempotency_key=idempotency_key,
                    exchange_id=exchange_id,
                    recipient=recipient[:254],
                    kind=kind,
                    language=language,
                    message_id=message_id,
                )
            if row.status == EmailStatus.PENDING:
                row.attempts += 1
            session.add(row)
            session.flush()
            return _claim(row)
    except IntegrityError as exc:
        # Either a concurrent attempt inserted the key first, or the exchange does not exist.
        with session_scope(engine) as session:
            row = _find(session, idempotency_key)
            if row is None:
                raise EmailContextError(
                    f"cannot log e-mail {idempotency_key!r}: {exc.orig}"
                ) from exc
            return _claim(row)


def record_sent(*, engine: Engine, idempotency_key: str, subject: str, at: datetime) -> None:
    with session_scope(engine) as session:
        row = _find(session, idempotency_key)
        if row is None:
            return
        row.status = EmailStatus.SENT
        row.subject = subject[:300]
        row.sent_at = at
        row.error = None
        session.add(row)


def record_failure(
    *, engine: Engine, idempotency_key: str, subject: str, error: str, permanent: bool
) -> None:
    with session_scope(engine) as session:
        row = _find(session, idempotency_key)
        if row is None or row.status == EmailStatus.SENT:
            return
        if permanent:
            row.status = EmailStatus.FAILED
        if subject:
            row.subject = subject[:300]
        row.error = error[:ERROR_MAX_CHARS]
        session.add(row)
