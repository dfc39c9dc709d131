"""Request bodies of the JSON API and of the pages behind e-mail links, validated once here."""

from datetime import datetime, timedelta
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from ce4big.domain import HostVerdict, MeetingMode, SurveyOutcome, VettingVerdict
from ce4big.models import DESCRIPTION_MAX, NOTE_MAX, TITLE_MAX

MAX_SLOTS = 5
MAX_SLOT_HOURS = 8
Note = Annotated[str, Field(max_length=NOTE_MAX)]


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
    title: str | None = Field(default=None, min_length=3, max_length=TITLE_MAX)
    description: str | None = Field(default=None, min_length=10, max_length=DESCRIPTION_MAX)
    note: Note = ""


class VettingBody(Strict):
    decision: VettingVerdict
    note: Note = ""


class ShortlistBody(Strict):
    organisation_ids: list[Annotated[str, Field(max_length=64)]] = Field(min_length=1, max_length=5)


class HostReviewBody(Strict):
    organisation_id: str = Field(max_length=64)
    decision: HostVerdict
    note: Note = ""


class SlotBody(Strict):
    start: datetime
    end: datetime


class ProposalBody(Strict):
    slots: list[SlotBody] = Field(min_length=1, max_length=MAX_SLOTS)
    timezone: TimeZone
    mode: MeetingMode = MeetingMode.VIDEO
    location: str = Field(default="", max_length=300)


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
    location: str = Field(default="", max_length=300)
    outcome: str | None = Field(default=None, max_length=40)
    satisfaction: int | None = Field(default=None, ge=1, le=5)
    recommend: int | None = Field(default=None, ge=0, le=10)
    comment: Note = ""
    agreement_type: str | None = Field(default=None, max_length=40)
    organisation_ids: list[Annotated[str, Field(max_length=64)]] | None = Field(
        default=None, max_length=5
    )
    title: str | None = Field(default=None, min_length=3, max_length=TITLE_MAX)
    description: str | None = Field(default=None, min_length=10, max_length=DESCRIPTION_MAX)

    @field_validator("outcome")
    @classmethod
    def _outcome_word(cls, value: str | None) -> str | None:
        if value is not None and not value.replace("_", "").isalpha():
            raise ValueError("not an outcome")
        return value
