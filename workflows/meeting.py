"""The meeting: invites, a reminder, and what a cancel or a reschedule request changes."""

from datetime import datetime

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.types import MeetingCancelledEmail, MeetingRescheduledEmail
    from ce4big.domain import Stage
    from ce4big.lifecycle import Meeting

from workflows.effects import Effects
from workflows.follow_up import run_follow_up
from workflows.scheduling import restart_scheduling


async def run_meeting_and_follow_up(fx: Effects) -> bool:
    """The meeting, then the survey; False when scheduling has to start again."""
    state, t = fx.state, fx.state.timings
    meeting = state.meeting
    assert meeting is not None
    attendees = state.attendees()
    state.invite_sequence += 1
    meeting.sequence = state.invite_sequence
    previous_start, state.previous_start = state.previous_start, None
    start = datetime.fromisoformat(meeting.start)
    end = datetime.fromisoformat(meeting.end)
    scaled_end = max(0.0, (end - workflow.now()).total_seconds() / t.time_scale)
    # The stage moves before the e-mails go: a cancel may arrive while they are sent.
    # Taken before entering: a change that arrives while the entry is recorded counts.
    version = state.meeting_version
    await fx.enter(Stage.MEETING_SCHEDULED, [], scaled_end)
    await fx.record(
        "meeting_scheduled", start=meeting.start, end=meeting.end, sequence=meeting.sequence
    )
    if previous_start:
        await fx.notify(
            "meeting_rescheduled",
            attendees,
            step=f"meeting_rescheduled:{meeting.sequence}",
            invite="REQUEST",
            email=MeetingRescheduledEmail(previous_start=previous_start),
        )
    else:
        await fx.notify(
            "meeting_confirmed",
            attendees,
            step=f"meeting_confirmed:{meeting.sequence}",
            invite="REQUEST",
        )
    until_start = max(0.0, (start - workflow.now()).total_seconds() / t.time_scale)
    until_end = max(0.0, (end - workflow.now()).total_seconds() / t.time_scale)
    reminder_at = max(0.0, until_start - t.meeting_reminder_before)
    changed = await fx.wait(
        lambda: state.meeting_version != version,
        reminders=[
            (
                reminder_at,
                lambda: fx.notify(
                    "meeting_reminder", attendees, step=f"meeting_reminder:{meeting.sequence}"
                ),
            )
        ],
        deadline=until_end,
    )
    if changed:
        return await meeting_changed(fx, meeting, attendees)
    meeting.status = "held"
    await fx.record("meeting_held")
    return await run_follow_up(fx)


async def meeting_changed(fx: Effects, meeting: Meeting, attendees: list[str]) -> bool:
    if meeting.status == "cancelled":
        await fx.record("meeting_cancelled")
        await send_cancellation(fx, meeting, attendees, "")
        restart_scheduling(fx.state)
    else:
        await fx.record("reschedule_requested")
    return False


async def send_cancellation(
    fx: Effects, meeting: Meeting, attendees: list[str], reason: str
) -> None:
    fx.state.invite_sequence += 1
    meeting.sequence = fx.state.invite_sequence
    await fx.notify(
        "meeting_cancelled",
        attendees,
        step=f"meeting_cancelled:{meeting.sequence}",
        invite="CANCEL",
        email=MeetingCancelledEmail(reason=reason),
    )
