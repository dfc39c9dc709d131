"""Personal data: the export holds one person's data and no one else's; erasure leaves the
address nowhere in SQL, keeps every report's figures, and is harmless to repeat."""

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select as sql_select
from sqlmodel import Session, SQLModel, col, select

from ce4big.domain import Outcome
from ce4big.errors import NotFound
from ce4big.gdpr import erase_person, export_person, pseudonym_for
from ce4big.models import (
    ActionToken,
    ApiToken,
    DevMessage,
    EmailLog,
    Exchange,
    ExchangeCandidate,
    ExchangeEvent,
    Organisation,
    SignInLink,
    SignInRequest,
    SurveyResponse,
    User,
    WebSession,
)
from ce4big.reports import (
    ReportScope,
    cluster_matrix,
    completed_exchanges,
    export_rows,
    funnel,
    outcomes,
    stage_times,
    weekly_submissions,
)
from ce4big.security import create_api_token, get_user_by_email, hash_token
from ce4big.seed import demo_email, seed_demo
from ce4big.users import add_user

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
SECRET = "gdpr-test-secret"
SME = demo_email("sme1.biowin")
# An address that ends with the SME's: erasing the SME must leave it whole.
LOOKALIKE = f"x{SME}"
SME_COMMENT = "Amélie found the CRO very responsive"
PARTNER_COMMENT = "A well-prepared request from a motivated team"
DECLINE_REASON = "Fully booked until spring, says Marie"


@dataclass(frozen=True)
class World:
    """The demo data, with everything an SME user and a partner contact can leave behind."""

    sme: User
    exchange_id: int  # completed, asked for by the SME, with the partner's organisation
    partner: str  # the partner organisation's contact address
    partner_organisation: str
    declined_exchange_id: int  # where the partner's contact declined an introduction


def _add_sme_traces(session: Session, sme: User, exchange_id: int) -> None:
    assert sme.id is not None
    create_api_token(session=session, user=sme, days=30, name="Amélie's laptop")
    session.add(
        WebSession(
            session_hash=hash_token("session"),
            user_id=sme.id,
            created_at=NOW,
            last_seen_at=NOW,
            expires_at=NOW + timedelta(hours=12),
        )
    )
    session.add(
        SignInLink(
            token_hash=hash_token("sign-in"),
            user_id=sme.id,
            created_at=NOW,
            expires_at=NOW + timedelta(minutes=15),
        )
    )
    session.add(
        SignInRequest(address_hash=hash_token(SME), client_hash=hash_token("10.0.0.1"), at=NOW)
    )
    key = f"exchange-{exchange_id}:survey_reminder:{SME}"
    session.add(
        EmailLog(
            idempotency_key=key,
            exchange_id=exchange_id,
            recipient=SME,
            kind="survey_reminder",
            subject="Reminder: two minutes about your exchange",
            status="failed",
            error=f"550 5.1.1 <{SME.upper()}>: mailbox unavailable",
            created_at=NOW,
        )
    )
    session.add(
        ActionToken(
            token_hash=hash_token("survey-link"),
            issue_key=key,
            exchange_id=exchange_id,
            recipient=SME,
            action="survey",
            payload={"side": "requester", "user_id": sme.id, "role": "sme"},
            created_at=NOW,
            expires_at=NOW + timedelta(days=30),
        )
    )
    session.add(
        ExchangeEvent(
            exchange_id=exchange_id,
            event_key=f"exchange-{exchange_id}:gdpr:amended",
            at=NOW - timedelta(days=300),
            kind="amended",
            actor=SME.upper(),
            detail={"note": "Assay named, as Amélie promised"},
        )
    )
    session.add(DevMessage(recipients=[SME], subject="Hello", raw=f"To: Amélie <{SME}>\r\n\r\nHi"))
    exchange = session.get(Exchange, exchange_id)
    assert exchange is not None
    exchange.description += f" Questions to {SME.upper()}."
    answer = session.exec(
        select(SurveyResponse).where(
            SurveyResponse.exchange_id == exchange_id,
            SurveyResponse.respondent == "requester",
            SurveyResponse.wave == "survey",
        )
    ).one()
    answer.comment = SME_COMMENT
    session.add_all([exchange, answer])


def _add_partner_traces(
    session: Session, partner: str, organisation_id: str, exchange_id: int, declined_id: int
) -> None:
    session.add(
        ActionToken(
            token_hash=hash_token("partner-survey-link"),
            issue_key=f"exchange-{exchange_id}:survey:{partner}",
            exchange_id=exchange_id,
            recipient=partner,
            action="survey",
            payload={"side": "partner", "role": "partner", "organisation_id": organisation_id},
            created_at=NOW - timedelta(days=280),
            expires_at=NOW - timedelta(days=250),
            used_at=NOW - timedelta(days=279),
        )
    )
    session.add(
        EmailLog(
            idempotency_key=f"exchange-{exchange_id}:survey:{partner}",
            exchange_id=exchange_id,
            recipient=partner,
            kind="survey_invitation",
            subject="How did it go?",
            status="sent",
            created_at=NOW - timedelta(days=280),
            sent_at=NOW - timedelta(days=280),
        )
    )
    answer = session.exec(
        select(SurveyResponse).where(
            SurveyResponse.exchange_id == exchange_id,
            SurveyResponse.respondent == "partner",
            SurveyResponse.wave == "survey",
        )
    ).one()
    answer.comment = PARTNER_COMMENT
    session.add(answer)
    session.add(
        ExchangeCandidate(
            exchange_id=declined_id,
            organisation_id=organisation_id,
            rank=9,
            score=0.5,
            intro_status="declined",
            intro_reason=DECLINE_REASON,
        )
    )
    session.add(
        ExchangeEvent(
            exchange_id=declined_id,
            event_key=f"exchange-{declined_id}:gdpr:declined",
            at=NOW - timedelta(days=10),
            kind="introduction_declined",
            actor=partner,
            detail={"organisation_id": organisation_id, "reason": DECLINE_REASON},
        )
    )


@pytest.fixture
def world(session: Session) -> World:
    seed_demo(session=session, now=NOW)
    sme = get_user_by_email(session=session, email=SME)
    assert sme is not None and sme.id is not None
    exchange = session.exec(
        select(Exchange).where(
            Exchange.requester_id == sme.id, Exchange.outcome == Outcome.COMPLETED
        )
    ).first()
    assert exchange is not None and exchange.id is not None
    candidate = session.exec(
        select(ExchangeCandidate).where(
            ExchangeCandidate.exchange_id == exchange.id,
            ExchangeCandidate.intro_status == "accepted",
        )
    ).one()
    organisation = session.get(Organisation, candidate.organisation_id)
    assert organisation is not None and organisation.contact_email
    candidates_of_partner = select(ExchangeCandidate.exchange_id).where(
        ExchangeCandidate.organisation_id == organisation.id
    )
    declined = session.exec(
        select(Exchange.id).where(col(Exchange.id).not_in(candidates_of_partner))
    ).first()
    assert declined is not None
    _add_sme_traces(session, sme, exchange.id)
    _add_partner_traces(session, organisation.contact_email, organisation.id, exchange.id, declined)
    add_user(session=session, email=LOOKALIKE, role="manager", name="Someone Else")
    session.add(
        EmailLog(
            idempotency_key=f"sign-up:{LOOKALIKE}",
            recipient=LOOKALIKE,
            kind="welcome",
            created_at=NOW,
        )
    )
    session.commit()
    return World(
        sme=sme,
        exchange_id=exchange.id,
        partner=organisation.contact_email,
        partner_organisation=organisation.id,
        declined_exchange_id=declined,
    )


def export(session: Session, address: str) -> dict[str, Any]:
    exported = export_person(
        session=session, address=address, secret=SECRET, now=NOW, retention_days=30
    )
    result: dict[str, Any] = json.loads(exported.model_dump_json())
    return result


def erase(session: Session, address: str) -> Any:
    erasure = erase_person(session=session, address=address, secret=SECRET, now=NOW)
    session.commit()
    return erasure


def snapshot(session: Session) -> dict[str, list[str]]:
    """Every row of every table, as text."""
    session.expire_all()
    return {
        table.name: sorted(repr(tuple(row)) for row in session.execute(sql_select(table)))
        for table in SQLModel.metadata.sorted_tables
    }


def stored_text(session: Session) -> list[tuple[str, str, str]]:
    """Every stored value of every column of every table, as lower-case text."""
    found = []
    for table in SQLModel.metadata.sorted_tables:
        for row in session.execute(sql_select(table)).mappings():
            for column, value in row.items():
                text = json.dumps(value, ensure_ascii=False, default=str)
                found.append((table.name, column, text.lower()))
    return found


def manager(session: Session) -> User:
    user = get_user_by_email(session=session, email=demo_email("manager.biowin"))
    assert user is not None
    return user


def figures(session: Session) -> dict[str, Any]:
    """What every report says, as a manager reads it."""
    session.expire_all()
    user, scope = manager(session), ReportScope(as_of=NOW.date())
    return {
        "funnel": funnel(session=session, user=user, scope=scope),
        "stages": stage_times(session=session, user=user, scope=scope),
        "clusters": cluster_matrix(session=session, user=user, scope=scope),
        "outcomes": outcomes(session=session, user=user, scope=scope),
        "weeks": weekly_submissions(session=session, user=user, scope=scope),
        "completed": completed_exchanges(session=session, user=user, scope=scope),
        "csv": list(export_rows(session=session, user=user)),
    }


class TestPseudonym:
    def test_is_the_same_for_any_case_and_differs_with_the_key(self) -> None:
        one = pseudonym_for(address=SME, secret=SECRET)
        assert one == pseudonym_for(address=f" {SME.upper()} ", secret=SECRET)
        assert one != pseudonym_for(address=SME, secret="another key")
        assert one.startswith("erased-") and one.endswith("@erased.invalid")
        assert len(one.split("@")[0]) == len("erased-") + 12


class TestExport:
    def test_holds_the_account_its_requests_timeline_emails_links_and_answers(
        self, session: Session, world: World
    ) -> None:
        data = export(session, SME.upper())

        assert data["address"] == SME
        assert data["user"]["email"] == SME and data["user"]["name"] == "Amélie Dubois"
        assert [t["name"] for t in data["api_tokens"]] == ["Amélie's laptop"]
        assert len(data["web_sessions"]) == len(data["sign_in_links"]) == 1
        assert data["sign_in_requests"] == ["2026-12-01T12:00:00Z"]
        assert world.exchange_id in {e["id"] for e in data["exchanges_requested"]}
        assert {"kind": "amended", "note": "Assay named, as Amélie promised"} in [
            {"kind": t["kind"], **t["detail"]} for t in data["timeline"]
        ]
        assert [(m["kind"], m["status"]) for m in data["emails"]] == [("survey_reminder", "failed")]
        assert [(a["action"], a["state"]) for a in data["action_links"]] == [("survey", "open")]
        assert SME_COMMENT in [a["comment"] for a in data["survey_answers"]]
        assert {a["side"] for a in data["survey_answers"]} == {"requester"}
        assert {"table": "exchange", "column": "description", "row": str(world.exchange_id)} in (
            data["mentions"]
        )
        assert f"exchange-{world.exchange_id}" in data["temporal"]["workflows"]
        assert data["contact_of"] == []

    def test_holds_nothing_of_another_person_and_no_secret(
        self, session: Session, world: World
    ) -> None:
        text = json.dumps(export(session, SME), ensure_ascii=False).lower()

        for other in (
            world.partner,
            LOOKALIKE,
            demo_email("sme2.biowin"),
            demo_email("broker.biowin"),
            PARTNER_COMMENT,
            DECLINE_REASON,
        ):
            assert other.lower() not in text.replace(f'"{SME}"', ""), other
        for secret in ("session", "sign-in", "survey-link", "10.0.0.1", SME):
            assert hash_token(secret) not in text

    def test_a_partner_contact_has_its_organisation_links_answers_and_decisions(
        self, session: Session, world: World
    ) -> None:
        data = export(session, world.partner)

        assert data["user"] is None
        assert [o["id"] for o in data["contact_of"]] == [world.partner_organisation]
        assert [(a["action"], a["state"]) for a in data["action_links"]] == [("survey", "used")]
        assert [(a["side"], a["comment"]) for a in data["survey_answers"]] == [
            ("partner", PARTNER_COMMENT)
        ]
        assert [(t["kind"], t["detail"]["reason"]) for t in data["timeline"]] == [
            ("introduction_declined", DECLINE_REASON)
        ]
        assert SME_COMMENT not in json.dumps(data, ensure_ascii=False)

    def test_an_unknown_or_erased_address_is_not_found(
        self, session: Session, world: World
    ) -> None:
        with pytest.raises(NotFound, match=r"no personal data is held for nobody@x\.example"):
            export(session, "nobody@x.example")
        erase(session, SME)
        with pytest.raises(NotFound, match="has been erased"):
            export(session, SME)


class TestErase:
    def test_leaves_the_address_in_no_column_of_any_table(
        self, session: Session, world: World
    ) -> None:
        def columns_with(address: str) -> set[str]:
            return {
                f"{table}.{column}"
                for table, column, text in stored_text(session)
                if address in text.replace(LOOKALIKE, "")
            }

        assert {
            "user.email",
            "emaillog.error",
            "exchange.description",
            "devmessage.raw",
        } <= columns_with(SME)
        assert "organisation.contact_email" in columns_with(world.partner)

        erase(session, SME)
        erase(session, world.partner)

        assert columns_with(SME) == set()
        assert columns_with(world.partner) == set()
        for text in (SME_COMMENT, PARTNER_COMMENT, DECLINE_REASON, "amélie"):
            found = [(t, c) for t, c, value in stored_text(session) if text.lower() in value]
            # The SME's organisation is in the catalogue under its contact's own address.
            assert found in ([], [("organisation", "contact_name")]), text

    def test_ends_the_account_sessions_and_links_and_keeps_ids_and_times(
        self, session: Session, world: World
    ) -> None:
        pseudonym = pseudonym_for(address=SME, secret=SECRET)
        partner = pseudonym_for(address=world.partner, secret=SECRET)

        erasure = erase(session, SME)
        erase(session, world.partner)

        user = session.get(User, world.sme.id)
        assert user is not None
        assert (user.email, user.name, user.is_active) == (pseudonym, "", False)
        assert user.organisation_id == world.sme.organisation_id
        assert all(s.ended_at is not None for s in session.exec(select(WebSession)))
        assert all(t.revoked_at is not None for t in session.exec(select(ApiToken)))
        assert session.exec(select(SignInRequest)).all() == []
        assert session.exec(select(DevMessage)).all() == []
        tokens = {t.recipient: t for t in session.exec(select(ActionToken))}
        assert tokens[pseudonym].revoked_at is not None
        assert tokens[partner].used_at is not None and tokens[partner].revoked_at is None
        organisation = session.get(Organisation, world.partner_organisation)
        assert organisation is not None
        assert (organisation.contact_email, organisation.contact_name) == (partner, "")
        answers = session.exec(
            select(SurveyResponse).where(SurveyResponse.exchange_id == world.exchange_id)
        ).all()
        assert {a.comment for a in answers} == {""}
        assert all(a.satisfaction is not None for a in answers if a.wave == "survey")
        candidate = session.exec(
            select(ExchangeCandidate).where(
                ExchangeCandidate.exchange_id == world.declined_exchange_id,
                ExchangeCandidate.organisation_id == world.partner_organisation,
            )
        ).one()
        assert (candidate.intro_status, candidate.intro_reason) == ("declined", None)
        lookalike = get_user_by_email(session=session, email=LOOKALIKE)
        assert lookalike is not None and lookalike.is_active
        assert session.exec(select(EmailLog).where(EmailLog.recipient == LOOKALIKE)).one()
        assert f"exchange-{world.exchange_id}" in erasure.workflows
        assert any("Amélie Dubois is also the name of" in n for n in erasure.notes)

    def test_every_report_counts_the_same_before_and_after(
        self, session: Session, world: World
    ) -> None:
        before = figures(session)

        erase(session, SME)
        erase(session, world.partner)

        assert figures(session) == before

    def test_erasing_again_changes_nothing(self, session: Session, world: World) -> None:
        first = erase(session, SME)
        after_first = snapshot(session)

        second = erase(session, SME.upper())

        assert not first.already_erased and first.changes
        assert second.already_erased and second.changes == []
        assert second.pseudonym == first.pseudonym
        assert snapshot(session) == after_first

    def test_a_rolled_back_erasure_says_what_it_would_change_and_changes_nothing(
        self, session: Session, world: World
    ) -> None:
        before = snapshot(session)

        erasure = erase_person(session=session, address=world.partner, secret=SECRET, now=NOW)
        session.rollback()

        assert ("organisation contact names cleared", 1) in erasure.changes
        assert ("address replaced in organisation.contact_email", 1) in erasure.changes
        assert ("survey comments cleared", 1) in erasure.changes
        assert snapshot(session) == before

    def test_an_unknown_address_is_refused(self, session: Session, world: World) -> None:
        with pytest.raises(NotFound, match=r"no personal data is held for nobody@x\.example"):
            erase_person(session=session, address="nobody@x.example", secret=SECRET, now=NOW)

    def test_an_account_made_again_after_erasure_gets_a_pseudonym_of_its_own(
        self, session: Session, world: World
    ) -> None:
        erase(session, SME)
        again = add_user(session=session, email=SME, role="manager", name="Amélie Dubois")
        session.commit()

        erasure = erase(session, SME)

        assert not erasure.already_erased
        user = session.get(User, again.id)
        assert user is not None and not user.is_active
        assert user.email == erasure.pseudonym.replace("@", f".{again.id}@")
