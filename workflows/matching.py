"""Matching and host review: candidates, the home broker's shortlist, the host brokers' say."""

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.types import CandidateEmail, ShortlistNeededEmail
    from ce4big.domain import Stage

from workflows.effects import Effects
from workflows.state import HOME_BROKERS, MANAGERS, host_audience


async def run_matching(fx: Effects, matching_round: int) -> bool:
    """Candidates, shortlist and host review; False when nobody is left to ask."""
    state, t = fx.state, fx.state.timings
    state.matching_rounds = matching_round
    state.shortlist = None
    state.forget("shortlist")
    await fx.enter(Stage.MATCHING, ["home_broker"], t.shortlist_escalation)
    found = await fx.find_candidates(matching_round)
    state.store_candidates(found.candidates)
    await fx.record("candidates_found", count=len(found.candidates), round=matching_round)
    if not state.ranking:
        return False
    await fx.notify(
        "shortlist_needed",
        [HOME_BROKERS],
        action="shortlist",
        email=ShortlistNeededEmail(candidate_count=len(found.candidates)),
    )
    await fx.wait(
        lambda: state.shortlist is not None,
        reminders=[
            (
                t.shortlist_reminder,
                lambda: fx.notify("shortlist_reminder", [HOME_BROKERS], action="shortlist"),
            ),
            (
                t.shortlist_escalation,
                lambda: fx.notify("shortlist_escalation", [MANAGERS], action="view"),
            ),
        ],
    )
    await fx.revoke("shortlist")
    shortlist: list[str] = list(state.shortlist or [])
    await fx.record("shortlisted", organisation_ids=shortlist)
    for position, organisation_id in enumerate(shortlist, start=1):
        await fx.update_candidate(organisation_id, shortlist_position=position)
    await run_host_review(fx, shortlist)
    return any(state.candidates[o].host_decision != "vetoed" for o in shortlist)


async def run_host_review(fx: Effects, shortlist: list[str]) -> None:
    state = fx.state
    clusters = sorted({state.candidates[o].cluster for o in shortlist})
    await fx.enter(
        Stage.HOST_REVIEW, [f"host_broker:{c}" for c in clusters], state.timings.host_review_consent
    )
    for organisation_id in shortlist:
        candidate = state.candidates[organisation_id]
        await fx.notify(
            "host_review_request",
            [host_audience(candidate.cluster)],
            action="host_review",
            step=f"host_review:{organisation_id}",
            email=CandidateEmail(organisation_id=organisation_id, kind="host_review_request"),
        )
    await fx.wait(
        lambda: all(state.candidates[o].host_decision for o in shortlist),
        deadline=state.timings.host_review_consent,
    )
    await fx.revoke("host_review")
    for organisation_id in shortlist:
        candidate = state.candidates[organisation_id]
        # Silence until the deadline counts as consent.
        candidate.host_decision = candidate.host_decision or "consented"
        await fx.update_candidate(organisation_id, host_decision=candidate.host_decision)
    await fx.record(
        "host_review_done",
        decisions={o: state.candidates[o].host_decision for o in shortlist},
    )
