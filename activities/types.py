"""What the exchange activities take and return: frozen dataclasses of ids and plain values.

Kept apart from the activities themselves so that workflow code imports no database or SMTP
library. New fields get defaults, so that running workflows keep decoding.
"""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from ce4big.domain import Outcome
from ce4big.lifecycle import CandidateInfo, Meeting, Proposal


@dataclass(frozen=True)
class FindCandidatesInput:
    exchange_id: int
    exclude: list[str] = field(default_factory=list)
    matching_round: int = 1


@dataclass(frozen=True)
class FindCandidatesOutput:
    candidates: list[CandidateInfo]


@dataclass(frozen=True)
class UpdateCandidateInput:
    exchange_id: int
    organisation_id: str
    shortlist_position: int | None = None
    host_decision: str | None = None
    intro_status: str | None = None
    intro_reason: str | None = None


@dataclass(frozen=True)
class RevokeTokensInput:
    exchange_id: int
    # None revokes every open token of the exchange.
    action: str | None = None


@dataclass(frozen=True)
class RecordSurveyInput:
    exchange_id: int
    respondent: str
    wave: str
    outcome: str
    satisfaction: int | None = None
    recommend: int | None = None
    agreement_type: str | None = None
    comment: str = ""


# What an e-mail kind says beyond the exchange, its meeting and its proposal: one dataclass per
# shape, tagged with the kinds it serves (the tag tells the union members apart on decoding).


@dataclass(frozen=True)
class RequestRejectedEmail:
    reason: str
    kind: Literal["request_rejected"] = "request_rejected"


@dataclass(frozen=True)
class ChangesRequestedEmail:
    note: str
    kind: Literal["changes_requested", "changes_reminder"] = "changes_requested"


@dataclass(frozen=True)
class ShortlistNeededEmail:
    candidate_count: int
    kind: Literal["shortlist_needed"] = "shortlist_needed"


@dataclass(frozen=True)
class CandidateEmail:
    """An e-mail about one candidate organisation: its links act on that candidate only."""

    organisation_id: str
    kind: Literal[
        "host_review_request",
        "host_review_reminder",
        "introduction_request",
        "introduction_reminder",
        "introduction_made",
    ]


@dataclass(frozen=True)
class PartnerDeclinedEmail:
    organisation_id: str
    next_step: Literal["next_candidate", "back_to_matching"]
    reason: str = ""
    kind: Literal["partner_declined"] = "partner_declined"


@dataclass(frozen=True)
class SchedulingStuckEmail:
    rounds: int
    kind: Literal["scheduling_stuck"] = "scheduling_stuck"


@dataclass(frozen=True)
class MeetingRescheduledEmail:
    previous_start: str  # ISO 8601 with offset
    kind: Literal["meeting_rescheduled"] = "meeting_rescheduled"


@dataclass(frozen=True)
class MeetingCancelledEmail:
    reason: str = ""
    kind: Literal["meeting_cancelled"] = "meeting_cancelled"


@dataclass(frozen=True)
class ExchangeClosedEmail:
    outcome: Outcome
    reason: str = ""
    kind: Literal["exchange_closed"] = "exchange_closed"


@dataclass(frozen=True)
class OutcomeWaveEmail:
    organisation_id: str
    months: int
    kind: Literal["outcome_wave"] = "outcome_wave"


EmailData = (
    RequestRejectedEmail
    | ChangesRequestedEmail
    | ShortlistNeededEmail
    | CandidateEmail
    | PartnerDeclinedEmail
    | SchedulingStuckEmail
    | MeetingRescheduledEmail
    | MeetingCancelledEmail
    | ExchangeClosedEmail
    | OutcomeWaveEmail
)


@dataclass(frozen=True)
class NotifyInput:
    exchange_id: int
    kind: str
    # requester | home_brokers | managers | host_brokers:<cluster> | partner:<organisation id>
    audiences: list[str]
    step_key: str
    # The action the e-mail's link allows (a token per recipient), or None.
    action: str | None = None
    invite: str | None = None  # REQUEST | CANCEL
    meeting: Meeting | None = None
    proposal: Proposal | None = None
    deadline: datetime | None = None
    since: datetime | None = None
    # Kinds that say more than the fields above carry it here; its `kind` equals this `kind`.
    email: EmailData | None = None
    # Read only, never written: the untyped data of a notify that workflow code older than
    # `email` scheduled, so that an attempt retried after the upgrade still says the same.
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class NotifyOutput:
    sent: int
    failed: list[str] = field(default_factory=list)
