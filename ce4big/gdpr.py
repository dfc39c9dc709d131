"""Personal data of one person: everything SQL holds about an e-mail address, and its erasure.

A person is an address: a user account's, an organisation's contact (partners have no account),
an e-mail's recipient, a link's holder, a timeline's actor. Erasure pseudonymises in the
caller's transaction: wherever the address is stored it becomes
`erased-<12 hex of HMAC(SECRET_KEY, address)>@erased.invalid`, names and the free text the
person wrote are cleared, their account, sessions and links end; ids, stages, timestamps,
outcomes and scores stay, so every report counts the same before and after. The pseudonym is
stable, so erasing again finds what is left (nothing, or what arrived since) instead of refusing.

Temporal histories are out of reach here: a workflow keeps its inputs (actors' addresses, notes)
until the namespace's retention after it closes.
"""

import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, overload

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import (
    JSON,
    Column,
    ColumnElement,
    String,
    Table,
    Text,
    TypeDecorator,
    cast,
    delete,
    func,
    or_,
)
from sqlalchemy import select as sql_select
from sqlalchemy import update as sql_update
from sqlmodel import Session, SQLModel, col, select

from ce4big.domain import Outcome, Stage
from ce4big.errors import Invalid, NotFound
from ce4big.exchanges import workflow_id_for
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
from ce4big.security import hash_token

ERASED_DOMAIN = "erased.invalid"
# Timeline detail keys that hold what a person typed (a vetting note, a decline or closing
# reason, a comment); the other keys are vocabulary, ids and times.
FREE_TEXT_KEYS = ("note", "reason", "comment")
# The e-mailed link actions whose use records a survey answer, and the wave it answers.
ANSWER_WAVES = {"survey": "survey", "outcome": "outcome"}
CREDENTIALS_NOTE = (
    "API tokens, sign-in links and browser sessions are stored only as SHA-256 hashes of their "
    "random values, which are not exported; each is listed with when it was made and when it "
    "ends."
)


def pseudonym_for(*, address: str, secret: str) -> str:
    """The same pseudonym for the same address (any case) while SECRET_KEY stays the same; only
    a holder of the key can tell which address it stands for, and only by guessing it."""
    digest = hmac.new(secret.encode(), normalise(address).encode(), hashlib.sha256).hexdigest()
    return f"erased-{digest[:12]}@{ERASED_DOMAIN}"


def normalise(address: str) -> str:
    return address.strip().lower()


def _check_address(address: str) -> str:
    value = normalise(address)
    local, _, domain = value.partition("@")
    if not local or not domain or " " in value:
        raise Invalid(f"--user: {address!r} is not an e-mail address")
    return value


@overload
def _utc(value: datetime) -> datetime: ...
@overload
def _utc(value: None) -> None: ...
@overload
def _utc(value: datetime | None) -> datetime | None: ...
def _utc(value: datetime | None) -> datetime | None:
    # SQLite gives stored UTC times back without their zone.
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def _is(column: Any, addresses: Iterable[str]) -> ColumnElement[bool]:
    return func.lower(column).in_(list(addresses))


# ---------------------------------------------------------------- where an address is written


def _text_columns() -> Iterator[tuple[Table, Column[Any]]]:
    """Every column of every table that can hold an address: strings, texts and JSON. Keys
    are ids, never addresses, and rewriting one would break its references."""
    for table in SQLModel.metadata.sorted_tables:
        for column in table.columns:
            if column.primary_key or column.foreign_keys:
                continue
            kind = column.type
            # SQLModel's str columns are AutoString, a decorator around String.
            if isinstance(kind, TypeDecorator):
                kind = kind.impl_instance
            if isinstance(kind, String | JSON):
                yield table, column


def _contains(column: Column[Any], address: str) -> ColumnElement[bool]:
    if isinstance(column.type, JSON):
        # JSON is stored with non-ASCII characters escaped: look for both spellings.
        text = func.lower(cast(column, Text))
        spellings = {address, json.dumps(address)[1:-1]}
        return or_(*(text.contains(s, autoescape=True) for s in spellings))
    return func.lower(column).contains(address, autoescape=True)


@dataclass(frozen=True, slots=True)
class Occurrence:
    table: str
    column: str
    key: tuple[Any, ...]
    value: Any


def address_pattern(address: str) -> re.Pattern[str]:
    """The address, in any case, and not as the tail or head of a longer one (`ann@x.example`
    is not in `joann@x.example`, nor in `ann@x.example.org`; a full stop may end a sentence)."""
    return re.compile(
        rf"(?<![\w.!#$%&'*+/=?^`{{|}}~-]){re.escape(address)}(?![\w-]|\.[\w-])", re.IGNORECASE
    )


def _mentions(value: Any, pattern: re.Pattern[str]) -> bool:
    if isinstance(value, str):
        return pattern.search(value) is not None
    if isinstance(value, list):
        return any(_mentions(v, pattern) for v in value)
    if isinstance(value, dict):
        return any(_mentions(k, pattern) or _mentions(v, pattern) for k, v in value.items())
    return False


def find_occurrences(*, session: Session, address: str) -> list[Occurrence]:
    """Each stored value, in any table, that contains the address."""
    pattern = address_pattern(address)
    found = []
    for table, column in _text_columns():
        keys = list(table.primary_key.columns)
        rows = session.execute(sql_select(*keys, column).where(_contains(column, address))).all()
        for row in rows:
            if _mentions(row[-1], pattern):
                found.append(Occurrence(table.name, column.name, tuple(row[:-1]), row[-1]))
    return found


def _replaced(value: Any, pattern: re.Pattern[str], by: str) -> Any:
    if isinstance(value, str):
        return pattern.sub(by, value)
    if isinstance(value, list):
        return [_replaced(v, pattern, by) for v in value]
    if isinstance(value, dict):
        return {_replaced(k, pattern, by): _replaced(v, pattern, by) for k, v in value.items()}
    return value


def _replace_everywhere(session: Session, address: str, pseudonym: str) -> dict[str, int]:
    """Rewrites the address as the pseudonym in every stored value; rows changed per column."""
    pattern = address_pattern(address)
    tables = {t.name: t for t in SQLModel.metadata.sorted_tables}
    changed: dict[str, int] = {}
    for found in find_occurrences(session=session, address=address):
        table = tables[found.table]
        column = table.columns[found.column]
        value = _replaced(found.value, pattern, pseudonym)
        length = getattr(column.type, "length", None)
        if isinstance(value, str) and length:
            value = value[:length]
        if value == found.value:
            continue
        keys = list(table.primary_key.columns)
        session.execute(
            sql_update(table)
            .where(*(k == v for k, v in zip(keys, found.key, strict=True)))
            .values({column.name: value})
        )
        name = f"{found.table}.{found.column}"
        changed[name] = changed.get(name, 0) + 1
    return changed


# ---------------------------------------------------------------- who the person is


@dataclass(frozen=True, slots=True)
class Person:
    """The rows keyed by an address (and, when erasing, by its pseudonym)."""

    addresses: tuple[str, ...]
    users: list[User]
    organisations: list[Organisation]

    @property
    def user_ids(self) -> list[int]:
        return [u.id for u in self.users if u.id is not None]


def _find_person(session: Session, addresses: tuple[str, ...]) -> Person:
    users = session.exec(select(User).where(_is(User.email, addresses)).order_by(col(User.id)))
    organisations = session.exec(
        select(Organisation)
        .where(_is(Organisation.contact_email, addresses))
        .order_by(col(Organisation.id))
    )
    return Person(addresses=addresses, users=list(users), organisations=list(organisations))


def _sign_in_hashes(addresses: Iterable[str]) -> list[str]:
    # As the sign-in rate limit counts them (ce4big.websessions).
    return [hash_token(a) for a in addresses]


def _is_held(session: Session, person: Person) -> bool:
    if person.users or person.organisations:
        return True
    for column in (EmailLog.recipient, ActionToken.recipient, ExchangeEvent.actor):
        if session.exec(select(func.count()).where(_is(column, person.addresses))).one():
            return True
    hashes = _sign_in_hashes(person.addresses)
    requests = select(func.count()).where(col(SignInRequest.address_hash).in_(hashes))
    return bool(session.exec(requests).one())


def _answered(session: Session, person: Person) -> list[SurveyResponse]:
    """The survey answers the person gave: the requester's side of the exchanges they asked
    for, and each side and wave they answered through a link e-mailed to them."""
    sides: set[tuple[int, str, str]] = set()
    if person.user_ids:
        requested = select(Exchange.id).where(col(Exchange.requester_id).in_(person.user_ids))
        for exchange_id in session.exec(requested):
            assert exchange_id is not None
            sides |= {(exchange_id, "requester", wave) for wave in ANSWER_WAVES.values()}
    used_links = session.exec(
        select(ActionToken).where(
            _is(ActionToken.recipient, person.addresses),
            col(ActionToken.action).in_(ANSWER_WAVES),
            col(ActionToken.used_at).is_not(None),
        )
    )
    for token in used_links:
        side = token.payload.get("side")
        if isinstance(side, str):
            sides.add((token.exchange_id, side, ANSWER_WAVES[token.action]))
    answered_events = session.exec(
        select(ExchangeEvent).where(
            ExchangeEvent.kind == "survey_answered", _is(ExchangeEvent.actor, person.addresses)
        )
    )
    for event in answered_events:
        side = event.detail.get("side")
        if isinstance(side, str):
            sides.add((event.exchange_id, side, "survey"))
    if not sides:
        return []
    exchange_ids = {exchange_id for exchange_id, _, _ in sides}
    rows = session.exec(
        select(SurveyResponse)
        .where(col(SurveyResponse.exchange_id).in_(exchange_ids))
        .order_by(col(SurveyResponse.exchange_id), col(SurveyResponse.id))
    )
    return [r for r in rows if (r.exchange_id, r.respondent, r.wave) in sides]


def _events(session: Session, person: Person) -> list[ExchangeEvent]:
    return list(
        session.exec(
            select(ExchangeEvent)
            .where(_is(ExchangeEvent.actor, person.addresses))
            .order_by(col(ExchangeEvent.exchange_id), col(ExchangeEvent.at), col(ExchangeEvent.id))
        )
    )


def _exchange_ids(session: Session, person: Person) -> set[int]:
    """The exchanges the person took part in: asked for, acted in, was e-mailed or linked about,
    or whose partner they are the contact of."""
    ids: set[int] = set()
    if person.user_ids:
        ids |= {
            i
            for i in session.exec(
                select(Exchange.id).where(col(Exchange.requester_id).in_(person.user_ids))
            )
            if i is not None
        }
    for column, exchange in (
        (ExchangeEvent.actor, ExchangeEvent.exchange_id),
        (ActionToken.recipient, ActionToken.exchange_id),
        (EmailLog.recipient, EmailLog.exchange_id),
    ):
        ids |= {i for i in session.exec(select(exchange).where(_is(column, person.addresses))) if i}
    if person.organisations:
        ids |= set(
            session.exec(
                select(ExchangeCandidate.exchange_id).where(
                    col(ExchangeCandidate.organisation_id).in_(
                        [o.id for o in person.organisations]
                    ),
                    col(ExchangeCandidate.intro_status).is_not(None),
                )
            )
        )
    return ids


def _workflows(session: Session, exchange_ids: set[int]) -> list[str]:
    """The Temporal workflows whose histories can hold the person's address: each exchange's,
    and the outcome wave of a completed one."""
    names = []
    rows = session.exec(
        select(Exchange.id, Exchange.outcome)
        .where(col(Exchange.id).in_(exchange_ids))
        .order_by(col(Exchange.id))
    )
    for exchange_id, outcome in rows:
        assert exchange_id is not None
        names.append(workflow_id_for(exchange_id))
        if outcome == Outcome.COMPLETED:
            names.append(f"{workflow_id_for(exchange_id)}-outcome")
    return names


# ---------------------------------------------------------------- export


class Record(BaseModel):
    """A row as the export shows it: read from the table model's attributes, times in UTC."""

    model_config = ConfigDict(from_attributes=True)

    @field_validator("*")
    @classmethod
    def _in_utc(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [_utc(v) if isinstance(v, datetime) else v for v in value]
        return _utc(value) if isinstance(value, datetime) else value


class UserRecord(Record):
    id: int
    email: str
    name: str
    role: str
    cluster_id: str | None
    organisation_id: str | None
    language: str | None
    timezone: str | None
    is_active: bool
    created_at: datetime


class ApiTokenRecord(Record):
    name: str
    created_at: datetime
    expires_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class SessionRecord(Record):
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    ended_at: datetime | None


class SignInLinkRecord(Record):
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None


class OrganisationContactRecord(Record):
    id: str
    name: str
    cluster_id: str
    contact_name: str
    contact_email: str


class RequestedExchangeRecord(Record):
    id: int
    title: str
    description: str
    cooperation_type: str
    home_cluster: str
    organisation_id: str | None
    status: str
    outcome: str | None
    created_at: datetime
    closed_at: datetime | None


class TimelineRecord(Record):
    exchange_id: int
    at: datetime
    kind: str
    detail: dict[str, Any]


class EmailRecord(Record):
    exchange_id: int | None
    kind: str
    language: str
    subject: str
    status: str
    created_at: datetime
    sent_at: datetime | None


class ActionLinkRecord(Record):
    exchange_id: int
    action: str
    state: str  # open | used | revoked | expired
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None
    revoked_at: datetime | None


class SurveyAnswerRecord(Record):
    exchange_id: int
    side: str = Field(validation_alias="respondent")
    wave: str
    outcome: str
    satisfaction: int | None
    recommend: int | None
    agreement_type: str | None
    comment: str
    at: datetime


class MentionRecord(Record):
    """Another place the address is written (for example in a request's description)."""

    table: str
    column: str
    row: str


class TemporalRecord(Record):
    workflows: list[str]
    retention_days: int
    note: str


class PersonExport(Record):
    address: str
    exported_at: datetime
    user: UserRecord | None
    api_tokens: list[ApiTokenRecord]
    web_sessions: list[SessionRecord]
    sign_in_links: list[SignInLinkRecord]
    sign_in_requests: list[datetime]
    credentials_note: str
    contact_of: list[OrganisationContactRecord]
    exchanges_requested: list[RequestedExchangeRecord]
    timeline: list[TimelineRecord]
    emails: list[EmailRecord]
    action_links: list[ActionLinkRecord]
    survey_answers: list[SurveyAnswerRecord]
    mentions: list[MentionRecord]
    temporal: TemporalRecord


# Columns the export's sections already cover; an address found elsewhere is a mention.
_COVERED = frozenset(
    {
        "user.email",
        "organisation.contact_email",
        "emaillog.recipient",
        "emaillog.idempotency_key",
        "actiontoken.recipient",
        "actiontoken.issue_key",
        "exchangeevent.actor",
    }
)


def _link_state(token: ActionToken, now: datetime) -> str:
    if token.used_at is not None:
        return "used"
    if token.revoked_at is not None:
        return "revoked"
    return "expired" if _utc(token.expires_at) <= now else "open"


def _unknown(address: str) -> NotFound:
    return NotFound(
        f"no personal data is held for {address}: it is no user's, no organisation contact's "
        "and no e-mail's address"
    )


def export_person(
    *, session: Session, address: str, secret: str, now: datetime, retention_days: int
) -> PersonExport:
    """Everything SQL holds about the address, without secrets (hashes) and without what
    belongs to others (only the timeline entries the person made, only their answers)."""
    address = _check_address(address)
    person = _find_person(session, (address,))
    if not _is_held(session, person):
        pseudonym = pseudonym_for(address=address, secret=secret)
        if _is_held(session, _find_person(session, (pseudonym,))):
            raise NotFound(f"{address} has been erased: only its pseudonym {pseudonym} is held")
        raise _unknown(address)
    ids = person.user_ids

    def of_user(model: Any) -> list[Any]:
        return list(session.exec(select(model).where(model.user_id.in_(ids)).order_by(model.id)))

    def to(address_column: Any, order: Any) -> list[Any]:
        return list(
            session.exec(
                select(address_column.class_)
                .where(_is(address_column, person.addresses))
                .order_by(order, address_column.class_.id)
            )
        )

    requests = session.exec(
        select(SignInRequest.at)
        .where(col(SignInRequest.address_hash).in_(_sign_in_hashes(person.addresses)))
        .order_by(col(SignInRequest.at))
    )
    requested = session.exec(
        select(Exchange).where(col(Exchange.requester_id).in_(ids)).order_by(col(Exchange.id))
    )
    return PersonExport(
        address=address,
        exported_at=now,
        user=UserRecord.model_validate(person.users[0]) if person.users else None,
        api_tokens=[ApiTokenRecord.model_validate(t) for t in of_user(ApiToken)],
        web_sessions=[SessionRecord.model_validate(s) for s in of_user(WebSession)],
        sign_in_links=[SignInLinkRecord.model_validate(s) for s in of_user(SignInLink)],
        sign_in_requests=list(requests),
        credentials_note=CREDENTIALS_NOTE,
        contact_of=[OrganisationContactRecord.model_validate(o) for o in person.organisations],
        exchanges_requested=[RequestedExchangeRecord.model_validate(e) for e in requested],
        timeline=[TimelineRecord.model_validate(e) for e in _events(session, person)],
        emails=[EmailRecord.model_validate(m) for m in to(EmailLog.recipient, EmailLog.created_at)],
        action_links=[
            ActionLinkRecord.model_validate({**t.model_dump(), "state": _link_state(t, now)})
            for t in to(ActionToken.recipient, ActionToken.created_at)
        ],
        survey_answers=[SurveyAnswerRecord.model_validate(s) for s in _answered(session, person)],
        mentions=[
            MentionRecord(table=o.table, column=o.column, row=",".join(map(str, o.key)))
            for o in find_occurrences(session=session, address=address)
            if f"{o.table}.{o.column}" not in _COVERED
        ],
        temporal=TemporalRecord(
            workflows=_workflows(session, _exchange_ids(session, person)),
            retention_days=retention_days,
            note=temporal_note(retention_days),
        ),
    )


def temporal_note(retention_days: int) -> str:
    return (
        "These workflows' histories hold the address and what the person decided or wrote "
        "(their inputs), until the Temporal namespace's retention "
        f"({retention_days} days) after each workflow closes; erasure cannot rewrite them."
    )


# ---------------------------------------------------------------- erasure


@dataclass(frozen=True, slots=True)
class Erasure:
    """What an erasure changed (or, in a rolled-back transaction, would change)."""

    address: str
    pseudonym: str
    already_erased: bool
    changes: list[tuple[str, int]]
    workflows: list[str]
    notes: list[str] = field(default_factory=list)


def _updated(session: Session, statement: Any) -> int:
    return int(session.execute(statement).rowcount or 0)  # type: ignore[attr-defined]


def _erase_users(session: Session, person: Person, pseudonym: str) -> int:
    changed = 0
    for user in person.users:
        email = user.email
        if normalise(email) != pseudonym:
            taken = session.exec(select(User.id).where(_is(User.email, [pseudonym]))).first()
            # A second account of the same address, made after the first was erased.
            email = pseudonym if taken is None else pseudonym.replace("@", f".{user.id}@", 1)
        values = {
            "email": email,
            "name": "",
            "language": None,
            "timezone": None,
            "is_active": False,
        }
        if any(getattr(user, k) != v for k, v in values.items()):
            changed += _updated(
                session, sql_update(User).where(col(User.id) == user.id).values(values)
            )
    return changed


def _erase_contact_names(session: Session, person: Person) -> int:
    if not person.organisations:
        return 0
    return _updated(
        session,
        sql_update(Organisation)
        .where(
            col(Organisation.id).in_([o.id for o in person.organisations]),
            col(Organisation.contact_name) != "",
        )
        .values(contact_name=""),
    )


def _erase_free_text(session: Session, person: Person) -> list[tuple[str, int]]:
    """Clears what the person wrote: timeline notes and reasons, introduction decline reasons,
    survey comments."""
    notes = 0
    declined: set[tuple[int, str]] = set()
    for event in _events(session, person):
        organisation_id = event.detail.get("organisation_id")
        if event.kind == "introduction_declined" and isinstance(organisation_id, str):
            declined.add((event.exchange_id, organisation_id))
        if any(k in event.detail for k in FREE_TEXT_KEYS):
            kept = {k: v for k, v in event.detail.items() if k not in FREE_TEXT_KEYS}
            notes += _updated(
                session,
                sql_update(ExchangeEvent)
                .where(col(ExchangeEvent.id) == event.id)
                .values(detail=kept),
            )
    reasons = 0
    for exchange_id, organisation_id in sorted(declined):
        reasons += _updated(
            session,
            sql_update(ExchangeCandidate)
            .where(
                col(ExchangeCandidate.exchange_id) == exchange_id,
                col(ExchangeCandidate.organisation_id) == organisation_id,
                col(ExchangeCandidate.intro_reason).is_not(None),
                col(ExchangeCandidate.intro_reason) != "",
            )
            .values(intro_reason=None),
        )
    answered = [s.id for s in _answered(session, person) if s.comment]
    comments = 0
    if answered:
        comments = _updated(
            session,
            sql_update(SurveyResponse)
            .where(col(SurveyResponse.id).in_(answered))
            .values(comment=""),
        )
    return [
        ("timeline notes and reasons cleared", notes),
        ("introduction decline reasons cleared", reasons),
        ("survey comments cleared", comments),
    ]


def _end_access(session: Session, person: Person, now: datetime) -> list[tuple[str, int]]:
    ids = person.user_ids
    done = []
    if ids:
        done += [
            (
                "browser sessions ended",
                _updated(
                    session,
                    sql_update(WebSession)
                    .where(col(WebSession.user_id).in_(ids), col(WebSession.ended_at).is_(None))
                    .values(ended_at=now),
                ),
            ),
            (
                "API tokens revoked",
                _updated(
                    session,
                    sql_update(ApiToken)
                    .where(
                        col(ApiToken.user_id).in_(ids),
                        col(ApiToken.revoked_at).is_(None),
                        col(ApiToken.expires_at) > now,
                    )
                    .values(revoked_at=now),
                ),
            ),
            (
                "API token labels cleared",
                _updated(
                    session,
                    sql_update(ApiToken)
                    .where(col(ApiToken.user_id).in_(ids), col(ApiToken.name) != "")
                    .values(name=""),
                ),
            ),
            (
                "sign-in links ended",
                _updated(
                    session,
                    sql_update(SignInLink)
                    .where(
                        col(SignInLink.user_id).in_(ids),
                        col(SignInLink.used_at).is_(None),
                        col(SignInLink.expires_at) > now,
                    )
                    .values(expires_at=now),
                ),
            ),
        ]
    done += [
        (
            "e-mailed links revoked",
            _updated(
                session,
                sql_update(ActionToken)
                .where(
                    _is(ActionToken.recipient, person.addresses),
                    col(ActionToken.used_at).is_(None),
                    col(ActionToken.revoked_at).is_(None),
                    col(ActionToken.expires_at) > now,
                )
                .values(revoked_at=now),
            ),
        ),
        (
            "sign-in requests deleted",
            _updated(
                session,
                delete(SignInRequest).where(
                    col(SignInRequest.address_hash).in_(_sign_in_hashes(person.addresses))
                ),
            ),
        ),
    ]
    return done


def _erase_dev_mailbox(session: Session, address: str) -> int:
    """The dev mailbox keeps whole messages (names, links, invites, possibly encoded): a
    message that names the address goes."""
    table = DevMessage.__table__  # type: ignore[attr-defined]
    mentioned = or_(_contains(table.c.recipients, address), _contains(table.c.raw, address))
    return _updated(session, delete(DevMessage).where(mentioned))


def _notes(session: Session, person: Person) -> list[str]:
    notes = []
    if person.user_ids:
        open_ids = session.exec(
            select(Exchange.id)
            .where(
                col(Exchange.requester_id).in_(person.user_ids),
                col(Exchange.status) != Stage.CLOSED,
            )
            .order_by(col(Exchange.id))
        ).all()
        if open_ids:
            notes.append(
                f"exchanges still open that they asked for: {', '.join(map(str, open_ids))}; "
                "they go on without them (their account is deactivated): cancel them if they "
                "should stop"
            )
    for organisation in person.organisations:
        notes.append(
            f"organisation {organisation.id} ({organisation.name}) has no contact now: set a "
            "new one in the catalogue before it is introduced again"
        )
    return notes + _namesakes(session, person)


def _namesakes(session: Session, person: Person) -> list[str]:
    """Other addresses under the person's name: maybe theirs, maybe someone else's, which only
    the operator can tell (so the hint goes to them, never into an export)."""
    names = {u.name.strip() for u in person.users} | {
        o.contact_name.strip() for o in person.organisations
    }
    hints = []
    for name in sorted(n for n in names if n):
        contacts = session.exec(
            select(Organisation).where(
                func.lower(Organisation.contact_name) == name.lower(),
                ~_is(Organisation.contact_email, person.addresses),
            )
        )
        users = session.exec(
            select(User).where(
                func.lower(User.name) == name.lower(), ~_is(User.email, person.addresses)
            )
        )
        others = [f"organisation {o.id}'s contact {o.contact_email}" for o in contacts]
        others += [f"user {u.email}" for u in users]
        if others:
            hints.append(
                f"{name} is also the name of {', '.join(others)}: erase that address too if it "
                "is the same person's"
            )
    return hints


def erase_person(*, session: Session, address: str, secret: str, now: datetime) -> Erasure:
    """Pseudonymises the address in the session's transaction (the caller commits, or rolls
    back for a dry run). Erasing again changes only what arrived since; an address that is not
    held, nor its pseudonym, is NotFound."""
    address = _check_address(address)
    pseudonym = pseudonym_for(address=address, secret=secret)
    if address == pseudonym:
        raise Invalid(f"--user: {address} is a pseudonym: erase the address it stands for")
    person = _find_person(session, (address, pseudonym))
    held_plainly = _is_held(session, _find_person(session, (address,))) or bool(
        find_occurrences(session=session, address=address)
    )
    if not held_plainly and not _is_held(session, person):
        raise _unknown(address)
    # Taken first: erasing rewrites the addresses these are found by.
    workflows = _workflows(session, _exchange_ids(session, person))
    notes = _notes(session, person)
    changes = [
        (
            "user accounts deactivated; names, languages and time zones cleared",
            _erase_users(session, person, pseudonym),
        ),
        *_end_access(session, person, now),
        ("organisation contact names cleared", _erase_contact_names(session, person)),
        *_erase_free_text(session, person),
        ("dev mailbox messages deleted", _erase_dev_mailbox(session, address)),
    ]
    replaced = _replace_everywhere(session, address, pseudonym)
    changes += [(f"address replaced in {name}", count) for name, count in sorted(replaced.items())]
    session.expire_all()
    return Erasure(
        address=address,
        pseudonym=pseudonym,
        already_erased=not held_plainly,
        changes=[(what, count) for what, count in changes if count],
        workflows=workflows,
        notes=notes,
    )
