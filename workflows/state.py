"""Everything one exchange workflow knows, in one dataclass, and what can be read off it.

Plain data and pure functions: the update validators and the tests use it without Temporal.
"""

from dataclasses import dataclass, field
from datetime import datetime

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from ce4big.domain import Outcome, Stage
    from ce4big.lifecycle import (
        PARTNER,
        REQUESTER,
        Actor,
        Amendment,
        CandidateInfo,
        CandidateState,
        Closure,
        ExchangeInput,
        ExchangeState,
        IntroductionAnswer,
        Meeting,
        NotHeldReport,
        Proposal,
        SlotPick,
        SurveyAnswer,
        Timings,
        VettingDecision,
    )

HOME_BROKERS = "home_brokers"
MANAGERS = "managers"


def partner_audience(organisation_id: str) -> str:
    return f"partner:{organisation_id}"


def host_audience(cluster: str) -> str:
    return f"host_brokers:{cluster}"


@dataclass
class LifecycleState:
    data: ExchangeInput
    # Where the exchange stands: what the `state` query answers.
    since: datetime
    stage: Stage = Stage.VETTING
    waiting_on: list[str] = field(default_factory=lambda: ["home_broker"])
    deadline: datetime | None = None
    outcome: Outcome | None = None
    # Numbers the event and e-mail keys of the exchange.
    seq: int = 0
    contacted: list[str] = field(default_factory=list)
    closure: tuple[Outcome, Closure] | None = None
    closing: bool = False
    # Decisions, each set by its update handler and consumed by the lifecycle.
    vetting: VettingDecision | None = None
    amendment: Amendment | None = None
    shortlist: list[str] | None = None
    candidates: dict[str, CandidateState] = field(default_factory=dict)
    ranking: list[str] = field(default_factory=list)
    matching_rounds: int = 0
    asked: list[str] = field(default_factory=list)
    current: str | None = None
    answer: IntroductionAnswer | None = None
    partner: str | None = None
    proposal: Proposal | None = None
    pick: SlotPick | None = None
    rounds: int = 0
    proposals: int = 0
    announced: int = 0
    meeting: Meeting | None = None
    # Raised by every change to the meeting or the proposal, so that a wait can tell one came.
    meeting_version: int = 0
    reopened: bool = False
    # Invites of one exchange share a UID: every invite sent raises this, so calendars apply it.
    invite_sequence: int = -1
    previous_start: str | None = None
    survey_open: bool = False
    not_held: NotHeldReport | None = None
    survey: dict[str, SurveyAnswer] = field(default_factory=dict)
    # The last decision of each kind, so that a repeated click is acknowledged, not refused.
    applied: dict[str, object] = field(default_factory=dict)

    @property
    def timings(self) -> Timings:
        return self.data.timings

    # ------------------------------------------------------------------ who may decide

    def is_home_broker(self, actor: Actor) -> bool:
        return actor.role == "broker" and actor.cluster == self.data.home_cluster

    def is_requester(self, actor: Actor) -> bool:
        return actor.user_id is not None and actor.user_id == self.data.requester_id

    def side_of(self, actor: Actor) -> str | None:
        if self.is_requester(actor):
            return REQUESTER
        if actor.role == PARTNER and self.partner and actor.organisation_id == self.partner:
            return PARTNER
        return None

    def repeats(self, kind: str, decision: object) -> bool:
        """True when `decision` is exactly the one of this kind last applied."""
        return kind in self.applied and bool(self.applied[kind] == decision)

    def forget(self, *kinds: str) -> None:
        """Decisions that are spent: the same words now mean a new decision."""
        for kind in kinds:
            self.applied.pop(kind, None)

    # ------------------------------------------------------------------ scheduling

    def waiting_side(self) -> str:
        if self.proposal is None:
            return REQUESTER
        return PARTNER if self.proposal.by == REQUESTER else REQUESTER

    def side_audience(self, side: str) -> str:
        return REQUESTER if side == REQUESTER else partner_audience(self.partner or "")

    def attendees(self) -> list[str]:
        return [REQUESTER, partner_audience(self.partner or ""), HOME_BROKERS]

    def meeting_changed_since(self, version: int) -> bool:
        return self.meeting_version != version

    # ------------------------------------------------------------------ matching

    def store_candidates(self, found: list[CandidateInfo]) -> None:
        self.ranking = [c.organisation_id for c in found]
        for c in found:
            self.candidates.setdefault(
                c.organisation_id,
                CandidateState(
                    organisation_id=c.organisation_id,
                    name=c.name,
                    cluster=c.cluster,
                    score=c.score,
                    reasons=list(c.reasons),
                ),
            )

    # ------------------------------------------------------------------ closing

    def result(self) -> str | None:
        for side in (REQUESTER, PARTNER):
            if side in self.survey:
                return self.survey[side].outcome
        return None

    def next_key(self, kind: str) -> str:
        self.seq += 1
        return f"exchange-{self.data.exchange_id}:{self.seq}:{kind}"

    def snapshot(self) -> ExchangeState:
        return ExchangeState(
            stage=self.stage,
            waiting_on=list(self.waiting_on),
            since=self.since.isoformat(),
            deadline=self.deadline.isoformat() if self.deadline else None,
            outcome=self.outcome,
            candidates=[self.candidates[o] for o in self.ranking if o in self.candidates],
            shortlist=list(self.shortlist or []),
            current_candidate=self.current,
            partner=self.partner,
            proposal=self.proposal,
            meeting=self.meeting,
            survey={side: answer.outcome for side, answer in self.survey.items()},
            matching_rounds=self.matching_rounds,
        )
