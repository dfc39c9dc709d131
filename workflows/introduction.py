"""Introduction: the endorsed candidates are asked one at a time; contact details go out only
once one accepts (double opt-in)."""

from functools import partial

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.types import CandidateEmail, PartnerDeclinedEmail
    from ce4big.domain import Stage
    from ce4big.lifecycle import REQUESTER

from workflows.effects import Effects
from workflows.state import HOME_BROKERS, partner_audience


async def run_introductions(fx: Effects) -> bool:
    """Ask the endorsed candidates one at a time; True once one accepts."""
    state, t = fx.state, fx.state.timings
    shortlist = [o for o in (state.shortlist or []) if o not in state.asked]
    endorsed = [o for o in shortlist if state.candidates[o].host_decision != "vetoed"]
    for index, organisation_id in enumerate(endorsed):
        state.current = organisation_id
        state.answer = None
        state.asked.append(organisation_id)
        audience = partner_audience(organisation_id)
        await fx.enter(Stage.INTRODUCTION, [audience], t.partner_deadline)
        state.candidates[organisation_id].intro_status = "asked"
        await fx.update_candidate(organisation_id, intro_status="asked")
        await fx.notify(
            "introduction_request",
            [audience],
            action="introduction",
            email=CandidateEmail(organisation_id=organisation_id, kind="introduction_request"),
        )
        answered = await fx.wait(
            lambda: state.answer is not None,
            reminders=[
                (
                    t.partner_reminder,
                    partial(
                        fx.notify,
                        "introduction_reminder",
                        [audience],
                        action="introduction",
                        email=CandidateEmail(
                            organisation_id=organisation_id, kind="introduction_reminder"
                        ),
                    ),
                ),
            ],
            deadline=t.partner_deadline,
        )
        await fx.revoke("introduction")
        answer = state.answer
        if answered and answer is not None and answer.accept:
            state.candidates[organisation_id].intro_status = "accepted"
            state.partner = organisation_id
            state.current = None
            await fx.update_candidate(organisation_id, intro_status="accepted")
            await fx.record(
                "introduction_accepted", actor=answer.actor, organisation_id=organisation_id
            )
            # Scheduling opens before the e-mails go: the requester's link must work at once.
            await fx.enter(Stage.SCHEDULING, [REQUESTER], t.scheduling_deadline)
            made = CandidateEmail(organisation_id=organisation_id, kind="introduction_made")
            await fx.notify("introduction_made", [REQUESTER], action="slots", email=made)
            await fx.notify("introduction_made", [audience], email=made)
            return True
        status = "declined" if answered else "no_answer"
        reason = answer.reason if answer is not None else ""
        state.candidates[organisation_id].intro_status = status
        await fx.update_candidate(organisation_id, intro_status=status, intro_reason=reason)
        await fx.record(
            f"introduction_{status}",
            actor=answer.actor if answer is not None else None,
            organisation_id=organisation_id,
            reason=reason,
        )
        last = index == len(endorsed) - 1
        await fx.notify(
            "partner_declined",
            [REQUESTER, HOME_BROKERS],
            step=f"partner_declined:{organisation_id}",
            email=PartnerDeclinedEmail(
                organisation_id=organisation_id,
                reason=reason,
                next_step="back_to_matching" if last else "next_candidate",
            ),
        )
    state.current = None
    return False
