"""What the exchange activities take and return: frozen dataclasses of ids and plain values.

Kept apart from the activities themselves so that workflow code imports no database or SMTP
library. New fields get defaults, so that running workflows keep decoding.
"""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

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
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class NotifyOutput:
    sent: int
    failed: list[str] = field(default_factory=list)
