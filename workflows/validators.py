"""The update validators: pure checks of a decision against the workflow state.

A refused decision never reaches history. Each check first acknowledges an exact repeat of the
decision last applied (a double click answers like the first), then checks the actor, the input
and the stage: WrongActor (HTTP 403), InvalidDecision (422), WrongStage (409).
"""

from datetime import datetime
from enum import StrEnum

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from ce4big.domain import HostVerdict, Outcome, Stage, SurveyOutcome, VettingVerdict
    from ce4big.lifecycle import (
        INVALID_DECISION,
        PARTNER,
        WRONG_ACTOR,
        WRONG_STAGE,
        Amendment,
        Closure,
        HostReviewDecision,
        IntroductionAnswer,
        MeetingCancellation,
        NotHeldReport,
        ShortlistDecision,
        SlotData,
        SlotPick,
        SlotProposal,
        SurveyAnswer,
        VettingDecision,
    )
from workflows.state import LifecycleState


def refuse(kind: str, message: str) -> ApplicationError:
    return ApplicationError(message, type=kind, non_retryable=True)


def one_of(vocabulary: type[StrEnum], value: str) -> bool:
    return value in {member.value for member in vocabulary}


def host_decision_for(verdict: str) -> str:
    return "endorsed" if verdict == HostVerdict.ENDORSE else "vetoed"


def validate_vet(state: LifecycleState, decision: VettingDecision) -> None:
    if state.repeats("vet", decision):
        return
    if not state.is_home_broker(decision.actor):
        raise refuse(WRONG_ACTOR, "only a broker of the requester's cluster vets a request")
    if not one_of(VettingVerdict, decision.decision):
        raise refuse(
            INVALID_DECISION,
            f"decision: {decision.decision!r} is not one of approve, reject, request_changes",
        )
    if decision.decision != VettingVerdict.APPROVE and not decision.note.strip():
        raise refuse(INVALID_DECISION, "note: a reason is needed to reject or ask for changes")
    require_stage(state, Stage.VETTING)
    if state.vetting is not None:
        raise out_of_stage(state, "the request has already been vetted")


def validate_amend(state: LifecycleState, amendment: Amendment) -> None:
    # A repeat is harmless only while the amended request waits for its vetting: later, the API
    # would write its text over the request the broker has vetted.
    awaiting_vetting = state.stage in (Stage.CHANGES_REQUESTED, Stage.VETTING)
    if state.repeats("amend", amendment) and awaiting_vetting and state.vetting is None:
        return
    if not state.is_requester(amendment.actor):
        raise refuse(WRONG_ACTOR, "only the requester amends the request")
    require_stage(state, Stage.CHANGES_REQUESTED)
    if state.amendment is not None:
        raise out_of_stage(state, "the request has already been amended")


def validate_shortlist(state: LifecycleState, decision: ShortlistDecision) -> None:
    if state.repeats("shortlist", decision):
        return
    if not state.is_home_broker(decision.actor):
        raise refuse(WRONG_ACTOR, "only a broker of the requester's cluster sets the shortlist")
    require_stage(state, Stage.MATCHING)
    if state.shortlist is not None:
        raise out_of_stage(state, "the shortlist is already set")
    ids = decision.organisation_ids
    most = state.data.max_shortlist
    if not 1 <= len(ids) <= most:
        raise refuse(INVALID_DECISION, f"organisation_ids: choose 1 to {most} candidates")
    if len(set(ids)) != len(ids):
        raise refuse(INVALID_DECISION, "organisation_ids: a candidate appears twice")
    unknown = [o for o in ids if o not in state.ranking]
    if unknown:
        raise refuse(
            INVALID_DECISION,
            f"organisation_ids: not candidates of this exchange: {', '.join(unknown)}",
        )


def validate_host_review(state: LifecycleState, decision: HostReviewDecision) -> None:
    if not one_of(HostVerdict, decision.decision):
        raise refuse(INVALID_DECISION, "decision: must be endorse or veto")
    candidate = state.candidates.get(decision.organisation_id)
    if candidate is None or decision.organisation_id not in (state.shortlist or []):
        raise refuse(
            INVALID_DECISION,
            f"organisation_id: {decision.organisation_id!r} is not on this exchange's shortlist",
        )
    if not (decision.actor.role == "broker" and decision.actor.cluster == candidate.cluster):
        raise refuse(WRONG_ACTOR, f"only a broker of {candidate.cluster} reviews this candidate")
    if candidate.host_decision == host_decision_for(decision.decision):
        return
    require_stage(state, Stage.HOST_REVIEW)
    if candidate.host_decision is not None:
        raise out_of_stage(state, f"this candidate is already {candidate.host_decision}")


def validate_introduction(state: LifecycleState, answer: IntroductionAnswer) -> None:
    if state.repeats("introduction", answer):
        return
    actor = answer.actor
    if actor.role != PARTNER or actor.organisation_id != answer.organisation_id:
        raise refuse(WRONG_ACTOR, "only the asked partner answers an introduction")
    require_stage(state, Stage.INTRODUCTION)
    if state.current != answer.organisation_id or state.answer is not None:
        raise out_of_stage(state, "this introduction is no longer open")


def validate_propose(state: LifecycleState, proposal: SlotProposal) -> None:
    if state.repeats("propose", proposal):
        return
    side = state.side_of(proposal.actor)
    if side is None:
        raise refuse(WRONG_ACTOR, "only the requester or the introduced partner proposes slots")
    problem = slot_problem(proposal.slots, state.data.max_slots)
    if problem:
        raise refuse(INVALID_DECISION, problem)
    require_stage(state, Stage.SCHEDULING, Stage.MEETING_SCHEDULED)
    if state.stage == Stage.MEETING_SCHEDULED:
        if state.meeting is None or state.meeting.status != "confirmed":
            raise out_of_stage(state, "there is no confirmed meeting to reschedule")
        return
    if state.waiting_side() != side:
        raise out_of_stage(state, "the other side has to answer the current proposal")
    if state.proposal is not None and state.rounds >= state.data.max_slot_rounds:
        raise refuse(
            WRONG_STAGE,
            f"at most {state.data.max_slot_rounds} rounds of proposals: "
            "pick one of the proposed slots",
        )


def validate_pick(state: LifecycleState, pick: SlotPick) -> None:
    if state.repeats("pick", pick):
        return
    side = state.side_of(pick.actor)
    if side is None:
        raise refuse(WRONG_ACTOR, "only the requester or the introduced partner picks a slot")
    require_stage(state, Stage.SCHEDULING)
    proposal = state.proposal
    if proposal is None or state.pick is not None:
        raise out_of_stage(state, "there is no open proposal to pick from")
    if proposal.by == side:
        raise refuse(WRONG_ACTOR, "the other side picks from your proposal")
    if not any(same_instant(s.start, pick.start) for s in proposal.slots):
        raise refuse(INVALID_DECISION, "start: not the start of a proposed slot")


def validate_cancel_meeting(state: LifecycleState, cancellation: MeetingCancellation) -> None:
    if state.repeats("cancel_meeting", cancellation):
        return
    if state.side_of(cancellation.actor) is None:
        raise refuse(WRONG_ACTOR, "only the requester or the partner cancels the meeting")
    require_stage(state, Stage.MEETING_SCHEDULED)
    if state.meeting is None or state.meeting.status != "confirmed":
        raise out_of_stage(state, "there is no confirmed meeting to cancel")


def validate_not_held(state: LifecycleState, report: NotHeldReport) -> None:
    if state.repeats("not_held", report):
        return
    if state.side_of(report.actor) is None:
        raise refuse(WRONG_ACTOR, "only the requester or the partner reports on the meeting")
    require_stage(state, Stage.FOLLOW_UP)
    if state.reopened or state.not_held is not None:
        raise out_of_stage(state, "scheduling was already reopened once for this exchange")


def validate_survey(state: LifecycleState, answer: SurveyAnswer) -> None:
    side = state.side_of(answer.actor)
    if side is None:
        raise refuse(WRONG_ACTOR, "only the requester or the partner answers the survey")
    if state.survey.get(side) == answer:
        return
    if not one_of(SurveyOutcome, answer.outcome):
        raise refuse(
            INVALID_DECISION,
            f"outcome: must be one of {', '.join(sorted(o.value for o in SurveyOutcome))}",
        )
    if answer.satisfaction is not None and not 1 <= answer.satisfaction <= 5:
        raise refuse(INVALID_DECISION, "satisfaction: must be 1 to 5")
    if answer.recommend is not None and not 0 <= answer.recommend <= 10:
        raise refuse(INVALID_DECISION, "recommend: must be 0 to 10")
    require_stage(state, Stage.FOLLOW_UP)
    if not state.survey_open:
        raise out_of_stage(state, "the survey is not open yet")
    if side in state.survey:
        raise out_of_stage(state, "this side has already answered the survey")


def validate_withdraw(state: LifecycleState, closure: Closure) -> None:
    if not state.is_requester(closure.actor):
        raise refuse(WRONG_ACTOR, "only the requester withdraws the request")
    require_open(state, Outcome.WITHDRAWN)


def validate_cancel(state: LifecycleState, closure: Closure) -> None:
    if closure.actor.role not in ("manager", "admin"):
        raise refuse(WRONG_ACTOR, "only a manager cancels an exchange")
    require_open(state, Outcome.CANCELLED)


# ---------------------------------------------------------------------- shared checks


def require_stage(state: LifecycleState, *stages: Stage) -> None:
    if state.stage not in stages:
        expected = " or ".join(s.value for s in stages)
        raise refuse(WRONG_STAGE, f"the exchange is at stage {state.stage.value}, not {expected}")


def require_open(state: LifecycleState, outcome: Outcome) -> None:
    if state.closure is not None and state.closure[0] == outcome:
        return  # the same click twice
    if state.stage == Stage.CLOSED or state.closure is not None or state.closing:
        raise refuse(
            WRONG_STAGE,
            f"the exchange is at stage {state.stage.value}: it is closed or closing",
        )


def out_of_stage(state: LifecycleState, message: str) -> ApplicationError:
    if "stage" not in message:
        message = f"{message} (the exchange is at stage {state.stage.value})"
    return refuse(WRONG_STAGE, message)


def slot_problem(slots: list[SlotData], most: int) -> str | None:
    """Why these slots cannot be proposed, or None. Times must carry an offset: a naive time
    would make the meeting's timers unreadable."""
    if not 1 <= len(slots) <= most:
        return f"slots: propose 1 to {most} slots"
    for number, slot in enumerate(slots):
        try:
            start, end = datetime.fromisoformat(slot.start), datetime.fromisoformat(slot.end)
        except ValueError:
            return f"slots.{number}: not an ISO 8601 date and time"
        if start.tzinfo is None or end.tzinfo is None:
            return f"slots.{number}: the time needs an offset or zone"
        if end <= start:
            return f"slots.{number}: the end must come after the start"
    return None


def same_instant(a: str, b: str) -> bool:
    try:
        return datetime.fromisoformat(a) == datetime.fromisoformat(b)
    except ValueError:
        return False
