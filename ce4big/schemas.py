"""Request bodies of the JSON API and of the pages behind e-mail links, validated once here."""

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from ce4big.domain import HostVerdict, MeetingMode, SurveyOutcome, VettingVerdict
from ce4big.errors import NotFound
from ce4big.models import DESCRIPTION_MAX, NOTE_MAX, TITLE_MAX, refuse_nul

MAX_SLOTS = 5
MAX_SLOT_HOURS = 8
# PostgreSQL text cannot hold NUL: a string that reaches a query or a column is SqlText.
SqlText = Annotated[str, AfterValidator(refuse_nul)]
Note = Annotated[SqlText, Field(max_length=NOTE_MAX)]


def _known_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {value!r} (use an IANA name like Europe/Paris)"
        ) from None
    return value


TimeZone = Annotated[str, Field(max_length=64), AfterValidator(_known_zone)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ExchangeAmend(Strict):
    title: SqlText | None = Field(default=None, min_length=3, max_length=TITLE_MAX)
    description: SqlText | None = Field(default=None, min_length=10, max_length=DESCRIPTION_MAX)
    note: Note = ""


class VettingBody(Strict):
    decision: VettingVerdict
    note: Note = ""


class ShortlistBody(Strict):
    organisation_ids: list[Annotated[SqlText, Field(max_length=64)]] = Field(
        min_length=1, max_length=5
    )


class HostReviewBody(Strict):
    organisation_id: SqlText = Field(max_length=64)
    decision: HostVerdict
    note: Note = ""


class SlotBody(Strict):
    start: datetime
    end: datetime


class ProposalBody(Strict):
    slots: list[SlotBody] = Field(min_length=1, max_length=MAX_SLOTS)
    timezone: TimeZone
    mode: MeetingMode = MeetingMode.VIDEO
    location: SqlText = Field(default="", max_length=300)


class PickBody(Strict):
    start: datetime


class SurveyBody(Strict):
    outcome: SurveyOutcome
    satisfaction: int | None = Field(default=None, ge=1, le=5)
    recommend: int | None = Field(default=None, ge=0, le=10)
    comment: Note = ""


class ReasonBody(Strict):
    reason: Note = ""


def normalise_slots(
    *, proposal: ProposalBody, now: datetime, horizon_days: int
) -> list[tuple[str, str]]:
    """Slots as ISO 8601 with offsets; a time without an offset is read in the proposal's zone.
    Raises ValueError naming the slot that is not sane."""
    zone = ZoneInfo(proposal.timezone)
    result = []
    for number, slot in enumerate(proposal.slots):
        start, end = (t if t.tzinfo else t.replace(tzinfo=zone) for t in (slot.start, slot.end))
        where = f"slots.{number}"
        if end <= start:
            raise ValueError(f"{where}: the end must come after the start")
        if end - start > timedelta(hours=MAX_SLOT_HOURS):
            raise ValueError(f"{where}: a slot lasts at most {MAX_SLOT_HOURS} hours")
        if start <= now:
            raise ValueError(f"{where}: the start must be in the future")
        if start > now + timedelta(days=horizon_days):
            raise ValueError(f"{where}: the start must be within {horizon_days} days")
        result.append((start.isoformat(), end.isoformat()))
    if len({s for s, _ in result}) != len(result):
        raise ValueError("slots: two slots start at the same time")
    return result


ActionName = Literal[
    "accept",
    "decline",
    "pick_slot",
    "propose_slots",
    "survey",
    "outcome",
    "approve",
    "reject",
    "request_changes",
    "amend",
    "shortlist",
    "endorse",
    "veto",
]


class ActionBody(Strict):
    """`POST /api/v1/actions/{token}`: one body for every kind of link; the fields an action
    needs are checked against the action."""

    action: ActionName
    reason: Note = ""
    note: Note = ""
    start: datetime | None = None
    slots: list[SlotBody] | None = Field(default=None, max_length=MAX_SLOTS)
    timezone: TimeZone | None = None
    mode: MeetingMode = MeetingMode.VIDEO
    location: SqlText = Field(default="", max_length=300)
    outcome: SqlText | None = Field(default=None, max_length=40)
    satisfaction: int | None = Field(default=None, ge=1, le=5)
    recommend: int | None = Field(default=None, ge=0, le=10)
    comment: Note = ""
    agreement_type: SqlText | None = Field(default=None, max_length=40)
    organisation_ids: list[Annotated[SqlText, Field(max_length=64)]] | None = Field(
        default=None, max_length=5
    )
    title: SqlText | None = Field(default=None, min_length=3, max_length=TITLE_MAX)
    description: SqlText | None = Field(default=None, min_length=10, max_length=DESCRIPTION_MAX)

    @field_validator("outcome")
    @classmethod
    def _outcome_word(cls, value: str | None) -> str | None:
        if value is not None and not value.replace("_", "").isalpha():
            raise ValueError("not an outcome")
        return value


# Bounds that both databases keep: ids are PostgreSQL `integer` columns, and a number beyond
# them in a path or a query is an unknown row or page, not a database error.
ID_MAX = 2**31 - 1


def known_id(value: int, what: str) -> int:
    """An id of a page's path, refused as unknown (404) when no row can have it."""
    if not 1 <= value <= ID_MAX:
        raise NotFound(f"no {what} {value}")
    return value


class FieldError(BaseModel):
    field: str
    message: str


class CatalogueRowError(BaseModel):
    line: int
    field: str
    reason: str


class ErrorDetail(BaseModel):
    code: str
    message: str
    # 422 for a request that does not validate: every field at fault.
    fields: list[FieldError] | None = None
    # 422 for a refused catalogue import: every bad row.
    rows: list[CatalogueRowError] | None = None


class ErrorBody(BaseModel):
    """Every error of the JSON API: `{"error": {"code", "message"}}`."""

    error: ErrorDetail


ERROR_DESCRIPTIONS = {
    400: "The body could not be read (not UTF-8, or not the declared format).",
    401: "No valid bearer token or session.",
    403: "The caller may not do this.",
    404: "No such object, or one the caller may not see.",
    409: "The request does not fit the object's current state.",
    413: "The body is over the size limit.",
    422: "A field is invalid; the error names it.",
    429: "Too many requests from this client: wait for `Retry-After` seconds.",
    503: "The database or Temporal did not answer in time: retry.",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI `responses` of a route that may answer these error statuses."""
    return {
        status: {"model": ErrorBody, "description": ERROR_DESCRIPTIONS[status]}
        for status in statuses
    }
