from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from ce4big.mailerrors import EmailContextError
from ce4big.maillog import EmailClaim, EmailStatus, claim_email, record_failure, record_sent
from ce4big.models import EmailLog

KEY = "exchange-7:vetting:broker@biom.example"


def _claim(db: Engine, key: str = KEY, exchange_id: int | None = None) -> EmailClaim:
    return claim_email(
        engine=db,
        idempotency_key=key,
        exchange_id=exchange_id,
        recipient="broker@biom.example",
        kind="vetting_needed",
        language="de",
        message_id="<abc@ce4big.example>",
    )


def _row(db: Engine) -> EmailLog:
    with Session(db) as session:
        row = session.exec(select(EmailLog).where(EmailLog.idempotency_key == KEY)).one()
        return row


class TestClaimEmail:
    def test_first_claim_creates_the_row_and_counts_an_attempt(self, db: Engine) -> None:
        claim = _claim(db)

        row = _row(db)
        assert claim == _claim_of(EmailStatus.PENDING, attempts=1)
        assert (row.recipient, row.kind, row.language, row.status, row.attempts) == (
            "broker@biom.example",
            "vetting_needed",
            "de",
            "pending",
            1,
        )

    def test_each_unsettled_claim_counts_an_attempt(self, db: Engine) -> None:
        _claim(db)
        _claim(db)

        assert _row(db).attempts == 2

    def test_sent_key_stays_sent(self, db: Engine) -> None:
        _claim(db)
        record_sent(engine=db, idempotency_key=KEY, subject="Neue Anfrage", at=datetime.now(UTC))

        assert _claim(db) == _claim_of(EmailStatus.SENT, attempts=1)
        row = _row(db)
        assert (row.subject, row.sent_at is not None) == ("Neue Anfrage", True)

    def test_unknown_exchange_is_a_context_error(self, db: Engine) -> None:
        with pytest.raises(EmailContextError, match="cannot log"):
            _claim(db, exchange_id=999_999)


class TestRecordFailure:
    def test_temporary_failure_keeps_the_key_pending(self, db: Engine) -> None:
        _claim(db)
        record_failure(
            engine=db, idempotency_key=KEY, subject="", error="SMTP 451", permanent=False
        )

        row = _row(db)
        assert (row.status, row.error) == ("pending", "SMTP 451")

    def test_permanent_failure_settles_the_key(self, db: Engine) -> None:
        _claim(db)
        record_failure(engine=db, idempotency_key=KEY, subject="S", error="550", permanent=True)

        assert _claim(db) == _claim_of(EmailStatus.FAILED, attempts=1, error="550")

    def test_a_sent_key_is_never_marked_failed(self, db: Engine) -> None:
        _claim(db)
        record_sent(engine=db, idempotency_key=KEY, subject="S", at=datetime.now(UTC))
        record_failure(engine=db, idempotency_key=KEY, subject="S", error="late", permanent=True)

        assert _row(db).status == "sent"


def _claim_of(status: EmailStatus, *, attempts: int, error: str | None = None) -> EmailClaim:
    return EmailClaim(
        status=status, message_id="<abc@ce4big.example>", attempts=attempts, error=error
    )
