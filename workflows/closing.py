"""Closing: tokens revoked, calendars cleared, everyone contacted told, the outcome recorded,
and for a completed exchange the later outcome wave started."""

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.types import ExchangeClosedEmail
    from ce4big.domain import Outcome, Stage
    from ce4big.lifecycle import OutcomeWaveInput

from workflows.effects import Effects
from workflows.meeting import send_cancellation
from workflows.state import MANAGERS


async def close(fx: Effects, outcome: Outcome, reason: str, *, tell_contacted: bool) -> None:
    state = fx.state
    state.closing = True
    state.outcome = outcome
    actor = state.closure[1].actor if state.closure else None
    await fx.revoke(None)
    meeting = state.meeting
    # A meeting still in calendars (also one waiting to be rescheduled) is taken out.
    if meeting is not None and meeting.status in ("confirmed", "rescheduling"):
        meeting.status = "cancelled"
        await send_cancellation(fx, meeting, state.attendees(), reason)
    if tell_contacted:
        audiences = [a for a in state.contacted if a != MANAGERS]
        await fx.notify(
            "exchange_closed",
            audiences,
            email=ExchangeClosedEmail(outcome=outcome, reason=reason),
        )
    await fx.enter(Stage.CLOSED, [], None)
    result = state.result() if outcome == Outcome.COMPLETED else None
    await fx.record("closed", actor=actor, outcome=outcome.value, reason=reason, result=result)
    if outcome == Outcome.COMPLETED and state.timings.outcome_wave > 0 and state.partner:
        await workflow.start_child_workflow(
            "OutcomeWaveWorkflow",
            OutcomeWaveInput(
                exchange_id=state.data.exchange_id,
                partner_organisation_id=state.partner,
                requester_id=state.data.requester_id,
                timings=state.timings,
            ),
            id=f"exchange-{state.data.exchange_id}-outcome",
            parent_close_policy=workflow.ParentClosePolicy.ABANDON,
        )
