"""The exchange lifecycle (DESIGN section 2) as one durable workflow per exchange.

Deterministic code only: side effects are activities, time is `workflow.now()`, waits are
timers. Human decisions arrive as Updates whose validators (workflows/validators.py) refuse a
decision that does not fit the stage (WrongStage, HTTP 409) or the actor (WrongActor, 403)
before it reaches history; workflows/decisions.py applies the accepted ones to the state, and
the stage modules pick them up.
"""

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from ce4big.domain import Outcome
    from ce4big.lifecycle import (
        REQUESTER,
        Amendment,
        Closure,
        DecisionResult,
        ExchangeInput,
        ExchangeState,
        HostReviewDecision,
        IntroductionAnswer,
        MeetingCancellation,
        NotHeldReport,
        ShortlistDecision,
        SlotPick,
        SlotProposal,
        SurveyAnswer,
        VettingDecision,
    )

from workflows import decisions, validators
from workflows.closing import close
from workflows.effects import ClosedError, Effects
from workflows.introduction import run_introductions
from workflows.matching import run_matching
from workflows.meeting import run_meeting_and_follow_up
from workflows.scheduling import run_scheduling
from workflows.state import LifecycleState
from workflows.vetting import run_vetting


async def run_lifecycle(fx: Effects) -> None:
    await fx.record("submitted")
    await fx.notify("request_received", [REQUESTER])
    await run_vetting(fx)
    for matching_round in (1, 2):
        if await run_matching(fx, matching_round) and await run_introductions(fx):
            break
        if matching_round == 2:
            raise ClosedError(Outcome.NO_PARTNER)
    while True:
        await run_scheduling(fx)
        if await run_meeting_and_follow_up(fx):
            return


@workflow.defn
class ExchangeWorkflow:
    @workflow.init
    def __init__(self, data: ExchangeInput) -> None:
        self._state = LifecycleState(data=data, since=workflow.now())
        self._fx = Effects(self._state)

    @workflow.run
    async def run(self, data: ExchangeInput) -> str:
        try:
            await run_lifecycle(self._fx)
            outcome, reason, tell = Outcome.COMPLETED, "", False
        except ClosedError as closed:
            outcome, reason, tell = closed.outcome, closed.reason, closed.tell_contacted
        await close(self._fx, outcome, reason, tell_contacted=tell)
        return outcome.value

    @workflow.query
    def state(self) -> ExchangeState:
        return self._state.snapshot()

    @workflow.update
    def vet(self, decision: VettingDecision) -> DecisionResult:
        return decisions.vet(self._state, decision)

    @vet.validator
    def _validate_vet(self, decision: VettingDecision) -> None:
        validators.validate_vet(self._state, decision)

    @workflow.update
    def amend(self, amendment: Amendment) -> DecisionResult:
        return decisions.amend(self._state, amendment)

    @amend.validator
    def _validate_amend(self, amendment: Amendment) -> None:
        validators.validate_amend(self._state, amendment)

    @workflow.update
    def set_shortlist(self, decision: ShortlistDecision) -> DecisionResult:
        return decisions.set_shortlist(self._state, decision)

    @set_shortlist.validator
    def _validate_shortlist(self, decision: ShortlistDecision) -> None:
        validators.validate_shortlist(self._state, decision)

    @workflow.update
    def host_review(self, decision: HostReviewDecision) -> DecisionResult:
        return decisions.host_review(self._state, decision)

    @host_review.validator
    def _validate_host_review(self, decision: HostReviewDecision) -> None:
        validators.validate_host_review(self._state, decision)

    @workflow.update
    def answer_introduction(self, answer: IntroductionAnswer) -> DecisionResult:
        return decisions.answer_introduction(self._state, answer)

    @answer_introduction.validator
    def _validate_introduction(self, answer: IntroductionAnswer) -> None:
        validators.validate_introduction(self._state, answer)

    @workflow.update
    def propose_slots(self, proposal: SlotProposal) -> DecisionResult:
        return decisions.propose_slots(self._state, proposal)

    @propose_slots.validator
    def _validate_propose(self, proposal: SlotProposal) -> None:
        validators.validate_propose(self._state, proposal)

    @workflow.update
    def pick_slot(self, pick: SlotPick) -> DecisionResult:
        return decisions.pick_slot(self._state, pick)

    @pick_slot.validator
    def _validate_pick(self, pick: SlotPick) -> None:
        validators.validate_pick(self._state, pick)

    @workflow.update
    def cancel_meeting(self, cancellation: MeetingCancellation) -> DecisionResult:
        return decisions.cancel_meeting(self._state, cancellation)

    @cancel_meeting.validator
    def _validate_cancel_meeting(self, cancellation: MeetingCancellation) -> None:
        validators.validate_cancel_meeting(self._state, cancellation)

    @workflow.update
    def report_not_held(self, report: NotHeldReport) -> DecisionResult:
        return decisions.report_not_held(self._state, report)

    @report_not_held.validator
    def _validate_not_held(self, report: NotHeldReport) -> None:
        validators.validate_not_held(self._state, report)

    @workflow.update
    def answer_survey(self, answer: SurveyAnswer) -> DecisionResult:
        return decisions.answer_survey(self._state, answer)

    @answer_survey.validator
    def _validate_survey(self, answer: SurveyAnswer) -> None:
        validators.validate_survey(self._state, answer)

    @workflow.update
    def withdraw(self, closure: Closure) -> DecisionResult:
        return decisions.close(self._state, Outcome.WITHDRAWN, closure)

    @withdraw.validator
    def _validate_withdraw(self, closure: Closure) -> None:
        validators.validate_withdraw(self._state, closure)

    @workflow.update
    def cancel(self, closure: Closure) -> DecisionResult:
        return decisions.close(self._state, Outcome.CANCELLED, closure)

    @cancel.validator
    def _validate_cancel(self, closure: Closure) -> None:
        validators.validate_cancel(self._state, closure)
