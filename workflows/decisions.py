"""What each accepted update does to the workflow state; the lifecycle picks it up from there.

Each runs after its validator (workflows/validators.py) let the decision through.
"""

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from ce4big.domain import Outcome, Stage, SurveyOutcome
    from ce4big.lifecycle import (
        Amendment,
        Closure,
        DecisionResult,
        HostReviewDecision,
        IntroductionAnswer,
        Meeting,
        MeetingCancellation,
        NotHeldReport,
        Proposal,
        ShortlistDecision,
        SlotPick,
        SlotProposal,
        SurveyAnswer,
        VettingDecision,
    )
from workflows.state import LifecycleState
from workflows.validators import host_decision_for, same_instant


def accepted(state: LifecycleState) -> DecisionResult:
    return DecisionResult(stage=state.stage)


def already(state: LifecycleState) -> DecisionResult:
    return DecisionResult(stage=state.stage, detail="already decided")


def vet(state: LifecycleState, decision: VettingDecision) -> DecisionResult:
    if state.repeats("vet", decision):
        return already(state)
    state.vetting = decision
    state.applied["vet"] = decision
    return accepted(state)


def amend(state: LifecycleState, amendment: Amendment) -> DecisionResult:
    if state.repeats("amend", amendment):
        return already(state)
    state.amendment = amendment
    state.applied["amend"] = amendment
    return accepted(state)


def set_shortlist(state: LifecycleState, decision: ShortlistDecision) -> DecisionResult:
    if state.repeats("shortlist", decision):
        return already(state)
    state.shortlist = list(decision.organisation_ids)
    state.applied["shortlist"] = decision
    return accepted(state)


def host_review(state: LifecycleState, decision: HostReviewDecision) -> DecisionResult:
    candidate = state.candidates[decision.organisation_id]
    wanted = host_decision_for(decision.decision)
    if candidate.host_decision == wanted:
        return already(state)
    candidate.host_decision = wanted
    return accepted(state)


def answer_introduction(state: LifecycleState, answer: IntroductionAnswer) -> DecisionResult:
    if state.repeats("introduction", answer):
        return already(state)
    state.answer = answer
    state.applied["introduction"] = answer
    return accepted(state)


def propose_slots(state: LifecycleState, proposal: SlotProposal) -> DecisionResult:
    if state.repeats("propose", proposal):
        return already(state)
    side = state.side_of(proposal.actor)
    assert side is not None
    if state.stage == Stage.MEETING_SCHEDULED and state.meeting is not None:
        # A new proposal while a meeting stands is a reschedule request.
        state.meeting.status = "rescheduling"
        state.previous_start = state.meeting.start
        state.forget("pick")
        state.pick = None
        state.rounds = 0
    state.rounds += 1
    state.proposals += 1
    state.proposal = Proposal(
        by=side,
        slots=list(proposal.slots),
        timezone=proposal.timezone,
        mode=proposal.mode,
        location=proposal.location,
        round=state.rounds,
        number=state.proposals,
    )
    state.applied["propose"] = proposal
    state.meeting_version += 1
    return accepted(state)


def pick_slot(state: LifecycleState, pick: SlotPick) -> DecisionResult:
    if state.repeats("pick", pick):
        return already(state)
    proposal = state.proposal
    assert proposal is not None
    slot = next(s for s in proposal.slots if same_instant(s.start, pick.start))
    state.meeting = Meeting(
        start=slot.start,
        end=slot.end,
        timezone=proposal.timezone,
        mode=proposal.mode,
        location=proposal.location,
        sequence=state.invite_sequence,
    )
    state.pick = pick
    state.applied["pick"] = pick
    state.meeting_version += 1
    return accepted(state)


def cancel_meeting(state: LifecycleState, cancellation: MeetingCancellation) -> DecisionResult:
    if state.repeats("cancel_meeting", cancellation):
        return already(state)
    assert state.meeting is not None
    state.meeting.status = "cancelled"
    state.applied["cancel_meeting"] = cancellation
    state.meeting_version += 1
    return accepted(state)


def report_not_held(state: LifecycleState, report: NotHeldReport) -> DecisionResult:
    if state.repeats("not_held", report):
        return already(state)
    state.not_held = report
    state.applied["not_held"] = report
    return accepted(state)


def answer_survey(state: LifecycleState, answer: SurveyAnswer) -> DecisionResult:
    side = state.side_of(answer.actor)
    assert side is not None
    if state.survey.get(side) == answer:
        return already(state)
    state.survey[side] = answer
    state.waiting_on = [s for s in state.waiting_on if s != side]
    if answer.outcome == SurveyOutcome.DID_NOT_TAKE_PLACE and not state.reopened:
        state.not_held = NotHeldReport(actor=answer.actor, note=answer.comment)
    return accepted(state)


def close(state: LifecycleState, outcome: Outcome, closure: Closure) -> DecisionResult:
    """Withdraw or cancel: the lifecycle closes at its next wait."""
    if state.closure is None:
        state.closure = (outcome, closure)
    return accepted(state)
