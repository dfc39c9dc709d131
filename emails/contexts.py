"""What each kind of e-mail needs to render: one typed context per kind.

The workflow sends `kind` and a JSON-able `context` dict through the `send_email` activity
(datetimes as ISO 8601 strings with an offset, URLs absolute); `parse_context` validates it
into the kind's model. Build a context in workflow code with the model itself and send
`context_dict(model)`, so that a missing field fails where it is written, not at send time.

Contexts refuse unknown fields: a misspelt optional field would otherwise vanish silently.
Add new fields with defaults only, so that workflows already running keep sending valid input.
"""

from collections.abc import Mapping
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from ce4big.domain import MeetingMode, Outcome
from ce4big.mailerrors import EmailContextError

DEFAULT_TIMEZONE = "UTC"


def _absolute_http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an absolute http(s) URL")
    # A link is printed alone on a line of the text part: a line break would split it.
    if any(c.isspace() for c in value):
        raise ValueError("must not contain whitespace")
    return value


def _known_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {value!r}") from exc
    return value


AbsoluteUrl = Annotated[str, AfterValidator(_absolute_http_url)]
TimeZoneName = Annotated[str, AfterValidator(_known_timezone)]


def choose_timezone(preferred: str | None, cluster_timezone: str | None) -> str:
    for candidate in (preferred, cluster_timezone):
        if candidate:
            try:
                return _known_timezone(candidate)
            except ValueError:
                continue
    return DEFAULT_TIMEZONE


class Slot(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    start: AwareDatetime
    end: AwareDatetime

    @model_validator(mode="after")
    def _ends_after_start(self) -> "Slot":
        if self.end <= self.start:
            raise ValueError("a slot must end after it starts")
        return self


class MailContext(BaseModel):
    """Fields every e-mail carries."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    recipient_name: str = ""


class SignIn(MailContext):
    """The sign-in link of the web app: its page asks for a click before signing in."""

    sign_in_url: AbsoluteUrl
    valid_minutes: int = Field(gt=0)


class EmailContext(MailContext):
    """Fields every e-mail about an exchange carries."""

    exchange_id: int
    exchange_title: str
    requester_organisation: str
    home_cluster: str
    # The exchange's page in the web app, for recipients with an account.
    exchange_url: AbsoluteUrl | None = None


class ActionContext(EmailContext):
    """An e-mail that asks its recipient to act through one link (`{BASE_URL}/t/{token}`)."""

    action_url: AbsoluteUrl
    respond_by: AwareDatetime | None = None


class MeetingContext(EmailContext):
    partner_organisation: str
    start: AwareDatetime
    end: AwareDatetime
    # The organiser's zone; the e-mail shows times in the recipient's zone.
    timezone: TimeZoneName
    mode: MeetingMode = MeetingMode.VIDEO
    location: str = ""

    @model_validator(mode="after")
    def _ends_after_start(self) -> "MeetingContext":
        if self.end <= self.start:
            raise ValueError("a meeting must end after it starts")
        return self


# Submission and vetting


class RequestReceived(EmailContext):
    pass


class VettingNeeded(ActionContext):
    requester_name: str
    summary: str
    cooperation_type: str


class VettingReminder(ActionContext):
    waiting_since: AwareDatetime


class VettingEscalation(ActionContext):
    waiting_since: AwareDatetime


class ChangesRequested(ActionContext):
    note: str


class ChangesReminder(ActionContext):
    note: str


class RequestRejected(EmailContext):
    reason: str


class RequestApproved(EmailContext):
    pass


# Matching and host review


class ShortlistNeeded(ActionContext):
    candidate_count: int = Field(ge=0)


class ShortlistReminder(ActionContext):
    waiting_since: AwareDatetime


class ShortlistEscalation(ActionContext):
    waiting_since: AwareDatetime


class HostReviewRequest(ActionContext):
    partner_organisation: str
    host_cluster: str
    summary: str
    cooperation_type: str


class HostReviewReminder(ActionContext):
    partner_organisation: str
    host_cluster: str


# Introduction


class IntroductionRequest(ActionContext):
    """To a partner with no account. Carries no contact details: they are released only once
    the partner accepts (double opt-in)."""

    partner_organisation: str
    summary: str
    cooperation_type: str


class IntroductionReminder(ActionContext):
    partner_organisation: str
    summary: str


class IntroductionMade(EmailContext):
    # Which side the recipient is on decides the next step the e-mail describes.
    recipient_side: Literal["requester", "partner"]
    partner_organisation: str
    counterpart_organisation: str
    counterpart_name: str
    counterpart_email: str
    counterpart_website: str = ""
    # The requester's link to propose meeting slots.
    action_url: AbsoluteUrl | None = None


class PartnerDeclined(EmailContext):
    declined_organisation: str
    next_step: Literal["next_candidate", "back_to_matching"]
    reason: str = ""


# Scheduling


class SlotsProposed(ActionContext):
    proposed_by: str
    slots: list[Slot] = Field(min_length=1)
    timezone: TimeZoneName
    mode: MeetingMode = MeetingMode.VIDEO
    location: str = ""
    counter_proposal: bool = False


class SlotsReminder(ActionContext):
    proposed_by: str
    slots: list[Slot] = Field(min_length=1)
    timezone: TimeZoneName


class SchedulingStuck(ActionContext):
    partner_organisation: str
    waiting_since: AwareDatetime
    rounds: int = Field(default=0, ge=0)


class MeetingConfirmed(MeetingContext):
    pass


class MeetingReminder(MeetingContext):
    pass


class MeetingRescheduled(MeetingContext):
    previous_start: AwareDatetime


class MeetingCancelled(MeetingContext):
    reason: str = ""


# Follow-up and closing


class SurveyInvitation(ActionContext):
    partner_organisation: str
    meeting_start: AwareDatetime | None = None


class SurveyReminder(ActionContext):
    partner_organisation: str


class ExchangeClosed(EmailContext):
    outcome: Outcome
    reason: str = ""


class OutcomeWave(ActionContext):
    partner_organisation: str
    months: int = Field(ge=1)


class Person(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    email: str
    name: str = ""


class Invite(BaseModel):
    """The calendar invite that goes with a meeting e-mail (`SendEmailInput.invite`).

    Keep `uid` unset to use the exchange's meeting UID, and raise `sequence` on every
    reschedule and on the cancel: calendars ignore an update whose SEQUENCE is not higher.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    method: Literal["REQUEST", "CANCEL"] = "REQUEST"
    sequence: int = Field(default=0, ge=0)
    uid: str | None = None
    start: AwareDatetime
    end: AwareDatetime
    # The organiser's zone: start and end are written in it, with its VTIMEZONE.
    timezone: TimeZoneName
    summary: str
    description: str = ""
    location: str = ""
    url: AbsoluteUrl | None = None
    # Unset: the service's own address (MAIL_FROM) organises.
    organizer: Person | None = None
    attendees: list[Person] = Field(min_length=1)

    @model_validator(mode="after")
    def _ends_after_start(self) -> "Invite":
        if self.end <= self.start:
            raise ValueError("a meeting must end after it starts")
        return self


KINDS: dict[str, type[MailContext]] = {
    "sign_in": SignIn,
    "request_received": RequestReceived,
    "vetting_needed": VettingNeeded,
    "vetting_reminder": VettingReminder,
    "vetting_escalation": VettingEscalation,
    "changes_requested": ChangesRequested,
    "changes_reminder": ChangesReminder,
    "request_rejected": RequestRejected,
    "request_approved": RequestApproved,
    "shortlist_needed": ShortlistNeeded,
    "shortlist_reminder": ShortlistReminder,
    "shortlist_escalation": ShortlistEscalation,
    "host_review_request": HostReviewRequest,
    "host_review_reminder": HostReviewReminder,
    "introduction_request": IntroductionRequest,
    "introduction_reminder": IntroductionReminder,
    "introduction_made": IntroductionMade,
    "partner_declined": PartnerDeclined,
    "slots_proposed": SlotsProposed,
    "slots_reminder": SlotsReminder,
    "scheduling_stuck": SchedulingStuck,
    "meeting_confirmed": MeetingConfirmed,
    "meeting_reminder": MeetingReminder,
    "meeting_rescheduled": MeetingRescheduled,
    "meeting_cancelled": MeetingCancelled,
    "survey_invitation": SurveyInvitation,
    "survey_reminder": SurveyReminder,
    "exchange_closed": ExchangeClosed,
    "outcome_wave": OutcomeWave,
}


def parse_context(*, kind: str, data: Mapping[str, Any]) -> MailContext:
    model = KINDS.get(kind)
    if model is None:
        raise EmailContextError(f"unknown e-mail kind {kind!r}")
    try:
        return model.model_validate(dict(data))
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise EmailContextError(f"invalid context for {kind!r}: {exc}") from exc


def parse_invite(data: Mapping[str, Any]) -> Invite:
    try:
        return Invite.model_validate(dict(data))
    except ValueError as exc:
        raise EmailContextError(f"invalid invite: {exc}") from exc


def context_dict(context: MailContext | Invite) -> dict[str, Any]:
    """The JSON-able form the `send_email` activity takes (`context` or `invite`)."""
    return context.model_dump(mode="json")


def action_url_of(context: MailContext) -> str | None:
    url = getattr(context, "action_url", None)
    return url if isinstance(url, str) else None
