"""Scheduling: the two sides propose and counter-propose slots until one is picked."""

from functools import partial

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.types import SchedulingStuckEmail
    from ce4big.domain import Outcome, Stage
    from ce4big.lifecycle import PARTNER, REQUESTER, Proposal

from workflows.effects import ClosedError, Effects
from workflows.state import HOME_BROKERS, LifecycleState


async def run_scheduling(fx: Effects) -> None:
    """Until a slot is picked: proposals, counter-proposals, reminders, the broker's help.

    A proposal may already be open on entry: a reschedule asked for while the meeting stood.
    """
    state, t = fx.state, fx.state.timings
    asked_broker = False
    while state.pick is None:
        if state.proposal is not None and state.announced != state.proposal.number:
            state.announced = state.proposal.number
            await announce_proposal(fx, state.proposal)
            continue
        waiting = [state.waiting_side()]
        # Taken before entering: a proposal that arrives while the entry is recorded counts.
        version = state.meeting_version
        await fx.enter(Stage.SCHEDULING, waiting, t.scheduling_deadline)
        changed = await fx.wait(
            partial(state.meeting_changed_since, version),
            reminders=[(t.scheduling_reminder, partial(scheduling_reminder, fx, waiting[0]))],
            deadline=t.scheduling_deadline,
        )
        if changed:
            continue
        if asked_broker:
            raise ClosedError(Outcome.EXPIRED, "no meeting could be scheduled")
        asked_broker = True
        await fx.notify(
            "scheduling_stuck",
            [HOME_BROKERS],
            action="view",
            email=SchedulingStuckEmail(rounds=state.rounds),
        )
    await fx.revoke("slots")


def restart_scheduling(state: LifecycleState) -> None:
    state.forget("propose", "pick", "cancel_meeting", "not_held")
    state.meeting = None
    state.proposal = None
    state.pick = None
    state.rounds = 0


async def announce_proposal(fx: Effects, proposal: Proposal) -> None:
    other = PARTNER if proposal.by == REQUESTER else REQUESTER
    await fx.record(
        "slots_proposed",
        by=proposal.by,
        round=proposal.round,
        slots=[s.start for s in proposal.slots],
    )
    await fx.notify(
        "slots_proposed",
        [fx.state.side_audience(other)],
        action="slots",
        step=f"slots_proposed:{proposal.number}",
    )


async def scheduling_reminder(fx: Effects, side: str) -> None:
    proposal = fx.state.proposal
    if proposal is None:
        return
    await fx.notify(
        "slots_reminder",
        [fx.state.side_audience(side)],
        action="slots",
        step=f"slots_reminder:{proposal.round}",
    )
