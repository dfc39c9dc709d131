"""Database tables and their public shapes. Imports no FastAPI: the worker uses it too.

Table models (``table=True``) never travel in Temporal payloads; workflows carry ids.
"""

from collections.abc import Iterable
from datetime import UTC, date, datetime
from typing import Annotated, Any, overload

from pydantic import AfterValidator, field_validator
from sqlalchemy import JSON, Column, Index, LargeBinary, String, Text, UniqueConstraint
from sqlmodel import Field, SQLModel
from sqlmodel._compat import SQLModelConfig

from ce4big.domain import (
    CERTIFICATIONS,
    CLUSTER_IDS,
    LANGUAGES,
    CooperationType,
    Language,
    MeetingFormat,
    OrganisationKind,
    Outcome,
    Role,
    Stage,
)


def utcnow() -> datetime:
    return datetime.now(UTC)


@overload
def as_utc(value: datetime) -> datetime: ...
@overload
def as_utc(value: None) -> None: ...
def as_utc(value: datetime | None) -> datetime | None:
    """A stored time with its zone: every stored time is UTC, and SQLite hands them back
    without it."""
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def _json_list() -> Any:
    return Field(default_factory=list, sa_column=Column(JSON, nullable=False))


class Cluster(SQLModel, table=True):
    id: str = Field(primary_key=True, max_length=32)
    name: str = Field(max_length=120)
    city: str = Field(max_length=120)
    country: str = Field(max_length=2)
    timezone: str = Field(max_length=64)
    language: str = Field(max_length=5)


class ClusterPublic(SQLModel):
    id: str
    name: str
    city: str
    country: str
    timezone: str
    language: str


class OrganisationBase(SQLModel):
    name: str = Field(max_length=200, index=True)
    cluster_id: str = Field(foreign_key="cluster.id", index=True, max_length=32)
    kind: str = Field(max_length=32, index=True)
    country: str = Field(max_length=2)
    city: str = Field(default="", max_length=120)
    website: str = Field(default="", max_length=300)
    description: str = Field(default="", sa_column=Column(Text, nullable=False))
    accepting_new_projects: bool = True


class Organisation(OrganisationBase, table=True):
    id: str = Field(primary_key=True, max_length=64)
    services: list[str] = _json_list()
    technologies: list[str] = _json_list()
    therapeutic_areas: list[str] = _json_list()
    modalities: list[str] = _json_list()
    stages: list[str] = _json_list()
    certifications: list[str] = _json_list()
    languages: list[str] = _json_list()
    contact_name: str = Field(default="", max_length=200)
    contact_email: str = Field(default="", max_length=254)
    # Bumped by every UPDATE so that the matcher's index notices any change to the row.
    updated_at: datetime = Field(default_factory=utcnow, sa_column_kwargs={"onupdate": utcnow})


class OrganisationPublic(OrganisationBase):
    id: str
    services: list[str]
    technologies: list[str]
    therapeutic_areas: list[str]
    modalities: list[str]
    stages: list[str]
    certifications: list[str]
    languages: list[str]
    # Only staff (brokers, managers, admins) see contact details; SMEs get an introduction.
    contact_name: str | None = None
    contact_email: str | None = None
    updated_at: datetime


class OrganisationsPublic(SQLModel):
    data: list[OrganisationPublic]
    count: int


class CatalogueImportResult(SQLModel):
    rows: int
    created: int
    updated: int
    unchanged: int


class OrganisationProfile(SQLModel, table=True):
    """The matcher's reading of one organisation (vocabulary concepts and text terms, packed),
    written with it at import; stale when the row or the vocabulary changed since."""

    organisation_id: str = Field(primary_key=True, foreign_key="organisation.id", max_length=64)
    vocabulary_version: str = Field(max_length=32)
    source_updated_at: datetime
    terms: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class User(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(max_length=254, unique=True, index=True)
    name: str = Field(default="", max_length=200)
    role: Role = Field(sa_type=String(16))
    cluster_id: str | None = Field(default=None, foreign_key="cluster.id", max_length=32)
    organisation_id: str | None = Field(
        default=None, foreign_key="organisation.id", max_length=64, index=True
    )
    language: str | None = Field(default=None, max_length=5)
    timezone: str | None = Field(default=None, max_length=64)
    is_active: bool = True
    created_at: datetime = Field(default_factory=utcnow)


class UserPublic(SQLModel):
    id: int
    email: str
    name: str
    role: Role
    cluster_id: str | None
    organisation_id: str | None
    language: str | None
    timezone: str | None


class ApiToken(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id", index=True)
    token_hash: str = Field(max_length=64, unique=True, index=True)
    name: str = Field(default="", max_length=100)
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None


class SignInLink(SQLModel, table=True):
    """An e-mailed sign-in link: random, stored hashed, single use, short-lived."""

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(max_length=64, unique=True, index=True)
    user_id: int = Field(foreign_key="user.id", index=True)
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    used_at: datetime | None = None


class SignInRequest(SQLModel, table=True):
    """One asked-for sign-in link, kept for the rate limits (every web process sees them)."""

    id: int | None = Field(default=None, primary_key=True)
    # Hashes: the table never holds who asked, only enough to count.
    address_hash: str = Field(max_length=64, index=True)
    client_hash: str = Field(max_length=64, index=True)
    at: datetime = Field(default_factory=utcnow, index=True)


class WebSession(SQLModel, table=True):
    """A signed-in browser. The cookie holds a random id; the table holds its hash."""

    id: int | None = Field(default=None, primary_key=True)
    session_hash: str = Field(max_length=64, unique=True, index=True)
    user_id: int = Field(foreign_key="user.id", index=True)
    created_at: datetime = Field(default_factory=utcnow)
    last_seen_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    ended_at: datetime | None = None


class ExchangeEvent(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    exchange_id: int = Field(foreign_key="exchange.id", index=True)
    # Set by the workflow so that a retried activity records the event once.
    event_key: str = Field(max_length=200, unique=True)
    at: datetime = Field(default_factory=utcnow)
    kind: str = Field(max_length=64)
    actor: str = Field(default="system", max_length=254)
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))

    # The reports count exchanges by the steps they reached (a kind, before a day): this one
    # answers them from the index alone, without reading the timeline's other events.
    __table_args__ = (Index("ix_exchangeevent_kind_exchange_id_at", "kind", "exchange_id", "at"),)


class ExchangeStage(SQLModel, table=True):
    """One spell of an exchange in a stage, waiting on the same parties: when it began and
    ended, and the deadline it had. Written by the record activity with the transition, so the
    inbox and the reports read stages from SQL (a stage entered again is a new row)."""

    id: int | None = Field(default=None, primary_key=True)
    exchange_id: int = Field(foreign_key="exchange.id", index=True)
    stage: Stage = Field(sa_type=String(32), index=True)
    waiting_on: list[str] = Field(default_factory=list, sa_type=JSON, nullable=False)
    entered_at: datetime = Field(index=True)
    left_at: datetime | None = None
    deadline_at: datetime | None = Field(default=None, index=True)
    # Once it ended: how long it took, and its bucket of the stage-time histogram
    # (ce4big/rollup.py), so that a report adds up recent spells in SQL.
    hours: float | None = None
    bucket: int | None = None
    parties: str | None = Field(default=None, max_length=200)

    __table_args__ = (
        # Open spells past their deadline (left_at null, deadline_at before now), oldest first.
        Index("ix_exchangestage_left_at_deadline_at", "left_at", "deadline_at"),
        # The spells that ended in a report's last days, added up from the index alone.
        Index(
            "ix_exchangestage_left_at_stage_bucket",
            "left_at", "stage", "bucket", "parties", "hours",
        ),
    )  # fmt: skip


class StageRollup(SQLModel, table=True):
    """The spells that ended, added up by stage, home cluster, month the exchange was submitted
    and month the spell ended (the first day of each, UTC): a histogram of their durations and
    the hours waited on each party. Written with each transition by the record activity."""

    stage: str = Field(sa_type=String(32), primary_key=True)
    home_cluster: str = Field(max_length=32, primary_key=True)
    submitted_month: date = Field(primary_key=True)
    left_month: date = Field(primary_key=True)
    # The histogram of their durations, packed (ce4big/rollup.py).
    durations: bytes = Field(default=b"", sa_column=Column(LargeBinary, nullable=False))
    # Party -> hours.
    waited: dict[str, float] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class ReportFact(SQLModel, table=True):
    """One thing the programme figures count (ce4big/tallies.py), with the exchange's home
    cluster, its partner's cluster when one had accepted ("" before) and its submission time:
    an exchange's first arrival at a step of the funnel, its closing, a survey answer, the outcome
    wave's result. Written with what it counts; `source` names it (the event key, the survey
    answer) so that an answer given again replaces its facts."""

    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=200, index=True)
    exchange_id: int = Field(foreign_key="exchange.id", index=True)
    fact: str = Field(max_length=80)
    # What a fact adds up besides its count (a satisfaction score); 0 otherwise.
    value: float = 0.0
    at: datetime
    home_cluster: str = Field(max_length=32)
    partner_cluster: str = Field(default="", max_length=32)
    submitted_at: datetime

    # The facts of a report's last days, and of exchanges submitted in a month its period covers
    # in part, each added up from an index alone.
    __table_args__ = (
        Index(
            "ix_reportfact_at_fact",
            "at", "fact", "home_cluster", "partner_cluster", "submitted_at", "value",
        ),
        Index(
            "ix_reportfact_submitted_at_at",
            "submitted_at", "at", "fact", "home_cluster", "partner_cluster", "value",
        ),
    )  # fmt: skip


class ReportTally(SQLModel, table=True):
    """The facts added up by fact, home cluster, partner cluster, month of submission and month
    they happened (the first day of each, UTC): what the reports read for whole months."""

    fact: str = Field(max_length=80, primary_key=True)
    home_cluster: str = Field(max_length=32, primary_key=True)
    partner_cluster: str = Field(max_length=32, primary_key=True)
    submitted_month: date = Field(primary_key=True)
    month: date = Field(primary_key=True)
    count: int = 0
    total: float = 0.0


class ActionToken(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(max_length=64, unique=True, index=True)
    # The workflow's key for this token, so a retried issue activity reuses the row.
    issue_key: str = Field(max_length=200, unique=True)
    exchange_id: int = Field(foreign_key="exchange.id", index=True)
    recipient: str = Field(max_length=254)
    action: str = Field(max_length=40)
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    used_at: datetime | None = None
    revoked_at: datetime | None = None


class EmailLog(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    idempotency_key: str = Field(max_length=200, unique=True, index=True)
    exchange_id: int | None = Field(default=None, foreign_key="exchange.id", index=True)
    recipient: str = Field(max_length=254)
    kind: str = Field(max_length=64)
    language: str = Field(default="en", max_length=5)
    subject: str = Field(default="", max_length=300)
    message_id: str = Field(default="", max_length=300)
    status: str = Field(default="pending", max_length=16)
    attempts: int = 0
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = Field(default_factory=utcnow)
    sent_at: datetime | None = None


class DevMessage(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    received_at: datetime = Field(default_factory=utcnow)
    mail_from: str = Field(default="", max_length=300)
    recipients: list[str] = _json_list()
    subject: str = Field(default="", max_length=300)
    message_id: str = Field(default="", max_length=300)
    raw: str = Field(sa_column=Column(Text, nullable=False))


class ExchangeCandidate(SQLModel, table=True):
    """One proposed partner of an exchange, from ranking through shortlist, host review and
    introduction. Open introductions and recent declines here drive the matcher's fairness."""

    id: int | None = Field(default=None, primary_key=True)
    exchange_id: int = Field(foreign_key="exchange.id", index=True)
    organisation_id: str = Field(foreign_key="organisation.id", max_length=64, index=True)
    rank: int
    score: float
    reasons: list[str] = _json_list()
    shortlist_position: int | None = None
    # host review: pending | endorsed | vetoed | consented (silence until the deadline)
    host_decision: str | None = Field(default=None, max_length=16)
    # introduction: asked | accepted | declined | no_answer | withdrawn
    intro_status: str | None = Field(default=None, max_length=16)
    intro_reason: str | None = Field(default=None, max_length=1000)
    updated_at: datetime = Field(default_factory=utcnow)

    __table_args__ = (
        UniqueConstraint("exchange_id", "organisation_id"),
        # Each exchange's accepted partner, for the reports, read from the index alone.
        Index(
            "ix_exchangecandidate_intro_status_exchange_id_organisation_id",
            "intro_status",
            "exchange_id",
            "organisation_id",
        ),
    )


class SurveyResponse(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    exchange_id: int = Field(foreign_key="exchange.id", index=True)
    # requester | partner; one answer per side and wave
    respondent: str = Field(max_length=16)
    wave: str = Field(default="survey", max_length=16)
    outcome: str = Field(max_length=40)
    satisfaction: int | None = None
    recommend: int | None = None
    agreement_type: str | None = Field(default=None, max_length=40)
    comment: str = Field(default="", max_length=2000)
    at: datetime = Field(default_factory=utcnow)

    __table_args__ = (UniqueConstraint("exchange_id", "respondent", "wave"),)


# ---------------------------------------------------------------- exchanges: one ladder

TITLE_MAX = 200
DESCRIPTION_MAX = 5000
NOTE_MAX = 2000


def refuse_nul(value: str) -> str:
    # PostgreSQL text cannot hold NUL: refused here, it names the field instead of failing the
    # query (SQLite would store it).
    if "\x00" in value:
        raise ValueError("must not contain the NUL character")
    return value


def _one_of(allowed: Iterable[str], what: str) -> AfterValidator:
    known = frozenset(allowed)

    def check(values: list[str]) -> list[str]:
        unknown = [v for v in values if v not in known]
        if unknown:
            raise ValueError(
                f"unknown {what}: {', '.join(unknown)} (known: {', '.join(sorted(known))})"
            )
        if len(set(values)) != len(values):
            raise ValueError(f"a {what} appears twice")
        return values

    return AfterValidator(check)


def _json_list_field(*, max_length: int, default: list[str] | None = None) -> Any:
    return Field(
        default_factory=lambda: list(default or []),
        max_length=max_length,
        sa_type=JSON,
        nullable=False,
    )


class ExchangeBase(SQLModel):
    """The request as the SME writes it: the table, the create body and the public shape."""

    title: str = Field(min_length=3, max_length=TITLE_MAX)
    description: str = Field(min_length=10, max_length=DESCRIPTION_MAX, sa_type=Text)
    target_clusters: Annotated[list[str], _one_of(CLUSTER_IDS, "cluster")] = _json_list_field(
        max_length=4
    )
    partner_kinds: Annotated[list[OrganisationKind], _one_of(OrganisationKind, "kind")] = (
        _json_list_field(max_length=8)
    )
    required_certifications: Annotated[list[str], _one_of(CERTIFICATIONS, "certification")] = (
        _json_list_field(max_length=10)
    )
    cooperation_type: CooperationType = Field(sa_type=String(40))
    meeting_format: MeetingFormat = Field(default=MeetingFormat.ANY, sa_type=String(20))
    languages: Annotated[list[Language], _one_of(LANGUAGES, "language")] = _json_list_field(
        max_length=4, default=[Language.EN]
    )


class Exchange(ExchangeBase, table=True):
    id: int | None = Field(default=None, primary_key=True)
    requester_id: int = Field(foreign_key="user.id", index=True)
    organisation_id: str | None = Field(default=None, foreign_key="organisation.id", max_length=64)
    home_cluster: str = Field(foreign_key="cluster.id", max_length=32)
    status: Stage = Field(default=Stage.VETTING, sa_type=String(32), index=True)
    outcome: Outcome | None = Field(default=None, sa_type=String(32))
    workflow_id: str | None = Field(default=None, max_length=100)
    idempotency_key: str | None = Field(default=None, max_length=200)
    created_at: datetime = Field(default_factory=utcnow, index=True)
    updated_at: datetime = Field(default_factory=utcnow)
    closed_at: datetime | None = None
    # The recorded result of the follow-up: the survey's answer, then the outcome wave's.
    result: str | None = Field(default=None, max_length=40)
    agreement_type: str | None = Field(default=None, max_length=40)

    # An exchange id names its workflow for ever: SQLite must never hand it out again.
    __table_args__ = (
        UniqueConstraint("requester_id", "idempotency_key"),
        # A cluster's exchanges submitted in a period (brokers' lists and reports).
        Index("ix_exchange_home_cluster_created_at", "home_cluster", "created_at"),
        {"sqlite_autoincrement": True},
    )


class ExchangeCreate(ExchangeBase):
    """`POST /api/v1/exchanges`: the request; who, where and when come from the caller."""

    model_config = SQLModelConfig(extra="forbid", str_strip_whitespace=True)

    languages: Annotated[list[Language], _one_of(LANGUAGES, "language")] = Field(
        default_factory=lambda: [Language.EN], min_length=1, max_length=4
    )

    @field_validator("title", "description")
    @classmethod
    def _no_nul(cls, value: str) -> str:
        return refuse_nul(value)


class ExchangePublic(ExchangeBase):
    id: int
    status: Stage
    outcome: Outcome | None
    result: str | None
    agreement_type: str | None
    home_cluster: str
    organisation_id: str | None
    requester_id: int
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None


class ExchangesPublic(SQLModel):
    data: list[ExchangePublic]
    count: int


class TimelineEntry(SQLModel):
    at: datetime
    kind: str
    actor: str
    detail: dict[str, Any]


class ExchangeDetail(ExchangePublic):
    # The workflow's live answer; null while Temporal does not answer.
    state: dict[str, Any] | None
    timeline: list[TimelineEntry]


class CandidatePublic(SQLModel):
    organisation_id: str
    score: float
    reasons: list[str]
    name: str = ""
    cluster: str = ""
    shortlist_position: int | None = None
    host_decision: str | None = None
    intro_status: str | None = None


class DecisionPublic(SQLModel):
    exchange_id: int
    stage: str
    detail: str = ""
