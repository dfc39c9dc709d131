"""What goes in and out of the exchange workflow: frozen dataclasses carrying ids, not rows.

New fields get defaults, so that histories of running exchanges keep decoding.
"""

from dataclasses import dataclass, field
from typing import Any

from ce4big.domain import (
    HostVerdict,
    MeetingMode,
    Outcome,
    Stage,
    SurveyOutcome,
    VettingVerdict,
    WaveOutcome,
)

# Update failures the API maps to HTTP answers (ApplicationError.type).
WRONG_STAGE = "WrongStage"  # 409
WRONG_ACTOR = "WrongActor"  # 403
INVALID_DECISION = "InvalidDecision"  # 422

REQUESTER = "requester"
PARTNER = "partner"


@dataclass(frozen=True)
class Timings:
    """Every wait of the lifecycle in seconds, already divided by the time scale."""

    vetting_reminder: float
    vetting_escalation: float
    changes_reminder: float
    changes_expiry: float
    shortlist_reminder: float
    shortlist_escalation: float
    host_review_consent: float
    partner_reminder: float
    partner_deadline: float
    scheduling_reminder: float
    scheduling_deadline: float
    meeting_reminder_before: float
    survey_delay: float
    survey_reminder: float
    survey_close: float
    outcome_wave: float
    outcome_wave_close: float
    time_scale: float = 1.0


@dataclass(frozen=True)
class ExchangeInput:
    exchange_id: int
    requester_id: int
    requester_organisation_id: str | None
    home_cluster: str
    timings: Timings
    max_shortlist: int = 5
    max_slot_rounds: int = 3
    max_slots: int = 5


@dataclass(frozen=True)
class Actor:
    """Who makes a decision: a signed-in user, or the holder of an e-mail link."""

    email: str
    role: str  # sme | broker | manager | admin | partner
    user_id: int | None = None
    cluster: str | None = None
    organisation_id: str | None = None
    # For e-mail links: the side of the exchange the link was issued to.
    side: str | None = None


@dataclass(frozen=True)
class VettingDecision:
    actor: Actor
    decision: VettingVerdict
    note: str = ""


@dataclass(frozen=True)
class Amendment:
    actor: Actor
    note: str = ""
    # The new text, when the requester changed it: part of the decision, so that only an
    # exact repeat (same note, same text) is acknowledged as one.
    title: str | None = None
    description: str | None = None


@dataclass(frozen=True)
class ShortlistDecision:
    actor: Actor
    organisation_ids: list[str]


@dataclass(frozen=True)
class HostReviewDecision:
    actor: Actor
    organisation_id: str
    decision: HostVerdict
    note: str = ""


@dataclass(frozen=True)
class IntroductionAnswer:
    actor: Actor
    organisation_id: str
    accept: bool
    reason: str = ""


@dataclass(frozen=True)
class SlotData:
    start: str  # ISO 8601 with offset
    end: str


@dataclass(frozen=True)
class SlotProposal:
    actor: Actor
    slots: list[SlotData]
    timezone: str
    mode: MeetingMode = MeetingMode.VIDEO
    location: str = ""


@dataclass(frozen=True)
class SlotPick:
    actor: Actor
    start: str


@dataclass(frozen=True)
class MeetingCancellation:
    actor: Actor
    reason: str = ""


@dataclass(frozen=True)
class NotHeldReport:
    actor: Actor
    note: str = ""


@dataclass(frozen=True)
class SurveyAnswer:
    actor: Actor
    outcome: SurveyOutcome
    satisfaction: int | None = None
    recommend: int | None = None
    comment: str = ""


@dataclass(frozen=True)
class Closure:
    actor: Actor
    reason: str = ""


@dataclass(frozen=True)
class DecisionResult:
    stage: Stage
    accepted: bool = True
    detail: str = ""


@dataclass(frozen=True)
class CandidateInfo:
    organisation_id: str
    name: str
    cluster: str
    score: float
    reasons: list[str] = field(default_factory=list)


@dataclass
class CandidateState:
    organisation_id: str
    name: str
    cluster: str
    score: float
    reasons: list[str] = field(default_factory=list)
    host_decision: str | None = None  # endorsed | vetoed | consented
    intro_status: str | None = None  # asked | accepted | declined | no_answer


@dataclass
class Meeting:
    start: str
    end: str
    timezone: str
    mode: str
    location: str
    sequence: int = 0
    status: str = "confirmed"  # confirmed | cancelled | held | not_held


@dataclass
class Proposal:
    by: str  # requester | partner
    slots: list[SlotData]
    timezone: str
    mode: str
    location: str
    round: int
    # Counts every proposal of the exchange, across reschedules.
    number: int = 0


@dataclass
class ExchangeState:
    """The answer of the `state` query: where the exchange stands and who it waits on."""

    stage: Stage
    waiting_on: list[str]
    since: str
    deadline: str | None
    outcome: Outcome | None = None
    candidates: list[CandidateState] = field(default_factory=list)
    shortlist: list[str] = field(default_factory=list)
    current_candidate: str | None = None
    partner: str | None = None
    proposal: Proposal | None = None
    meeting: Meeting | None = None
    survey: dict[str, Any] = field(default_factory=dict)
    matching_rounds: int = 0


@dataclass(frozen=True)
class OutcomeWaveInput:
    exchange_id: int
    partner_organisation_id: str
    requester_id: int
    timings: Timings


@dataclass(frozen=True)
class OutcomeAnswer:
    actor: Actor
    outcome: WaveOutcome
    agreement_type: str | None = None
    comment: str = ""
