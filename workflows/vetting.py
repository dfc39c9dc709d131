"""Vetting: a home broker approves, rejects or asks for changes; changes come back to vetting."""

from functools import partial

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.types import ChangesRequestedEmail, RequestRejectedEmail
    from ce4big.domain import Outcome, Stage, VettingVerdict
    from ce4big.lifecycle import REQUESTER

from workflows.effects import ClosedError, Effects
from workflows.state import HOME_BROKERS, MANAGERS


async def run_vetting(fx: Effects) -> None:
    state, t = fx.state, fx.state.timings
    while True:
        # A decision may arrive before the first wait (the stage is vetting from the start),
        # so it is cleared only once consumed.
        await fx.enter(Stage.VETTING, ["home_broker"], t.vetting_escalation)
        await fx.notify("vetting_needed", [HOME_BROKERS], action="vet")
        await fx.wait(
            lambda: state.vetting is not None,
            reminders=[
                (
                    t.vetting_reminder,
                    lambda: fx.notify("vetting_reminder", [HOME_BROKERS], action="vet"),
                ),
                (
                    t.vetting_escalation,
                    lambda: fx.notify("vetting_escalation", [MANAGERS], action="view"),
                ),
            ],
        )
        decision = state.vetting
        assert decision is not None
        await fx.record(f"vetting_{decision.decision}", actor=decision.actor, note=decision.note)
        await fx.revoke("vet")
        if decision.decision == VettingVerdict.APPROVE:
            await fx.notify("request_approved", [REQUESTER])
            return
        if decision.decision == VettingVerdict.REJECT:
            await fx.notify(
                "request_rejected", [REQUESTER], email=RequestRejectedEmail(reason=decision.note)
            )
            raise ClosedError(Outcome.REJECTED, decision.note, tell_contacted=False)
        state.vetting = None
        state.amendment = None
        state.forget("vet", "amend")
        await fx.enter(Stage.CHANGES_REQUESTED, ["requester"], t.changes_expiry)
        await fx.notify(
            "changes_requested",
            [REQUESTER],
            action="amend",
            email=ChangesRequestedEmail(note=decision.note),
        )
        amended = await fx.wait(
            lambda: state.amendment is not None,
            reminders=[
                (
                    t.changes_reminder,
                    partial(
                        fx.notify,
                        "changes_reminder",
                        [REQUESTER],
                        action="amend",
                        email=ChangesRequestedEmail(note=decision.note, kind="changes_reminder"),
                    ),
                ),
            ],
            deadline=t.changes_expiry,
        )
        await fx.revoke("amend")
        if not amended:
            raise ClosedError(Outcome.EXPIRED, "the requested changes were not made in time")
        assert state.amendment is not None
        await fx.record("amended", actor=state.amendment.actor, note=state.amendment.note)
