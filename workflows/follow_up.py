"""Follow-up: a pause after the meeting for a not-held report, then the survey of both sides."""

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.types import RecordSurveyInput
    from ce4big.domain import Stage
    from ce4big.lifecycle import PARTNER, REQUESTER

from workflows.effects import Effects
from workflows.scheduling import restart_scheduling
from workflows.state import partner_audience


async def run_follow_up(fx: Effects) -> bool:
    """True when the survey closed; False when scheduling opens again (meeting not held)."""
    state, t = fx.state, fx.state.timings
    state.not_held = None
    await fx.enter(Stage.FOLLOW_UP, [], t.survey_delay)
    reported = await fx.wait(lambda: state.not_held is not None, deadline=t.survey_delay)
    if reported:
        return await reopen_scheduling(fx)
    sides = [REQUESTER, PARTNER]
    state.survey = {}
    state.survey_open = True
    await fx.enter(Stage.FOLLOW_UP, sides, t.survey_close)
    partner = partner_audience(state.partner or "")
    await fx.notify("survey_invitation", [REQUESTER, partner], action="survey")
    await fx.wait(
        lambda: len(state.survey) == 2 or state.not_held is not None,
        reminders=[(t.survey_reminder, lambda: survey_reminder(fx))],
        deadline=t.survey_close,
    )
    state.survey_open = False
    if state.not_held is not None and not state.reopened:
        await fx.revoke("survey")
        return await reopen_scheduling(fx)
    await fx.revoke("survey")
    for side, answer in sorted(state.survey.items()):
        await fx.record_survey(
            RecordSurveyInput(
                exchange_id=state.data.exchange_id,
                respondent=side,
                wave="survey",
                outcome=answer.outcome,
                satisfaction=answer.satisfaction,
                recommend=answer.recommend,
                comment=answer.comment,
            )
        )
        await fx.record("survey_answered", actor=answer.actor, side=side, answer=answer.outcome)
    await fx.record("survey_closed", answered=sorted(state.survey))
    return True


async def reopen_scheduling(fx: Effects) -> bool:
    state = fx.state
    assert state.not_held is not None and state.meeting is not None
    state.reopened = True
    state.meeting.status = "not_held"
    await fx.record("meeting_not_held", actor=state.not_held.actor, note=state.not_held.note)
    restart_scheduling(state)
    state.survey = {}
    return False


async def survey_reminder(fx: Effects) -> None:
    state = fx.state
    missing = [s for s in (REQUESTER, PARTNER) if s not in state.survey]
    await fx.notify("survey_reminder", [state.side_audience(s) for s in missing], action="survey")
