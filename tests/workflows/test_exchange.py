from datetime import datetime, timedelta
from functools import partial
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from activities.types import ExchangeClosedEmail, PartnerDeclinedEmail, RequestRejectedEmail
from ce4big.domain import HostVerdict, Outcome, SurveyOutcome, VettingVerdict, WaveOutcome
from ce4big.lifecycle import (
    Amendment,
    Closure,
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
from tests.polling import eventually
from tests.workflows.conftest import (
    DAY,
    HOME_BROKER,
    MANAGER,
    REQUESTER,
    Harness,
    host_broker,
    partner,
    state_of,
    wait_stage,
    wait_until,
)
from workflows.exchange import ExchangeWorkflow

Handle = WorkflowHandle[ExchangeWorkflow, str]


async def refused(handle: Handle, update: Any, arg: Any) -> ApplicationError:
    with pytest.raises(WorkflowUpdateFailedError) as failure:
        await handle.execute_update(update, arg)
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError)
    return cause


async def approve(handle: Handle) -> None:
    await wait_stage(handle, "vetting")
    await handle.execute_update(
        ExchangeWorkflow.vet, VettingDecision(HOME_BROKER, VettingVerdict.APPROVE)
    )
    await wait_until(handle, lambda s: s.stage == "matching" and bool(s.candidates))


async def shortlist(handle: Handle, ids: list[str]) -> None:
    await approve(handle)
    await handle.execute_update(ExchangeWorkflow.set_shortlist, ShortlistDecision(HOME_BROKER, ids))
    await wait_stage(handle, "host_review")


async def endorse_all(handle: Handle, ids: list[str]) -> None:
    await shortlist(handle, ids)
    for organisation_id in ids:
        cluster = {"bm": "biom", "kr": "klsk", "at": "atlanpole"}[organisation_id[:2]]
        await handle.execute_update(
            ExchangeWorkflow.host_review,
            HostReviewDecision(host_broker(cluster), organisation_id, HostVerdict.ENDORSE),
        )
    await wait_stage(handle, "introduction")


async def introduce(handle: Handle, organisation_id: str = "bm-1") -> None:
    await endorse_all(handle, [organisation_id])
    await handle.execute_update(
        ExchangeWorkflow.answer_introduction,
        IntroductionAnswer(partner(organisation_id), organisation_id, accept=True),
    )
    await wait_stage(handle, "scheduling", ["requester"])


async def schedule(harness: Harness, handle: Handle, days_ahead: float = 3) -> SlotProposal:
    await introduce(handle)
    proposal = await harness.slots(days_ahead, days_ahead + 1)
    await handle.execute_update(ExchangeWorkflow.propose_slots, proposal)
    await wait_stage(handle, "scheduling", ["partner"])
    await handle.execute_update(
        ExchangeWorkflow.pick_slot, SlotPick(partner("bm-1"), proposal.slots[0].start)
    )
    await wait_stage(handle, "meeting_scheduled")
    return proposal


async def open_survey(harness: Harness, handle: Handle) -> None:
    await schedule(harness, handle)
    await harness.env.sleep(4 * DAY)
    await wait_stage(handle, "follow_up", [])
    await harness.env.sleep(7 * DAY)
    await wait_stage(handle, "follow_up", ["requester", "partner"])


def answer(side: str, outcome: SurveyOutcome = SurveyOutcome.COOPERATION_POSSIBLE) -> SurveyAnswer:
    actor = REQUESTER if side == "requester" else partner("bm-1")
    return SurveyAnswer(actor, outcome, satisfaction=5, recommend=9, comment="useful")


def proposal_round_is(number: int, state: ExchangeState) -> bool:
    return state.proposal is not None and state.proposal.round == number


def offset_days(harness: Harness, start: datetime, at: datetime) -> float:
    return (at - start).total_seconds() / DAY


class TestHappyPath:
    async def test_request_to_completed(self, harness: Harness) -> None:
        handle = await harness.start()
        await open_survey(harness, handle)
        for side in ("requester", "partner"):
            await handle.execute_update(ExchangeWorkflow.answer_survey, answer(side))
        assert await handle.result() == "completed"

        fakes = harness.fakes
        assert fakes.kinds()[:4] == [
            "request_received",
            "vetting_needed",
            "request_approved",
            "shortlist_needed",
        ]
        for kind in (
            "host_review_request",
            "introduction_request",
            "introduction_made",
            "slots_proposed",
            "meeting_confirmed",
            "meeting_reminder",
            "survey_invitation",
        ):
            assert fakes.sent_of(kind), kind
        assert "exchange_closed" not in fakes.kinds()
        confirmed = fakes.sent_of("meeting_confirmed")[0]
        assert confirmed.invite == "REQUEST"
        assert confirmed.audiences == ["requester", "partner:bm-1", "home_brokers"]
        closed = fakes.events[-1]
        assert (closed.kind, closed.outcome, closed.result) == (
            "closed",
            "completed",
            "cooperation_possible",
        )
        assert {s.respondent for s in fakes.surveys} == {"requester", "partner"}
        final = await state_of(handle)
        assert (final.stage, final.outcome, final.partner) == ("closed", "completed", "bm-1")

    async def test_a_proposal_while_the_stage_entry_is_recorded_is_not_lost(
        self, harness: Harness
    ) -> None:
        handle = await harness.start()
        await endorse_all(handle, ["bm-1"])
        harness.fakes.slow_stage_records = 1.0
        await handle.execute_update(
            ExchangeWorkflow.answer_introduction, IntroductionAnswer(partner("bm-1"), "bm-1", True)
        )
        # The requester proposes as soon as the introduction arrives, while scheduling's own
        # entry is still being recorded.
        await harness.fakes.wait_sent("introduction_made", count=2)
        await handle.execute_update(ExchangeWorkflow.propose_slots, await harness.slots(3))
        await wait_stage(handle, "scheduling", ["partner"])

    async def test_introduction_made_releases_contacts_only_after_accept(
        self, harness: Harness
    ) -> None:
        handle = await harness.start()
        await endorse_all(handle, ["bm-1"])
        assert not harness.fakes.sent_of("introduction_made")
        request = (await harness.fakes.wait_sent("introduction_request"))[0]
        assert request.audiences == ["partner:bm-1"] and request.action == "introduction"
        await handle.execute_update(
            ExchangeWorkflow.answer_introduction, IntroductionAnswer(partner("bm-1"), "bm-1", True)
        )
        await eventually(
            lambda: (
                {a for s in harness.fakes.sent_of("introduction_made") for a in s.audiences}
                == {"requester", "partner:bm-1"}
            ),
            what="introduction_made sent to both sides",
        )


class TestVetting:
    async def test_reject_closes_and_tells_the_requester(self, harness: Harness) -> None:
        handle = await harness.start()
        await wait_stage(handle, "vetting")
        await handle.execute_update(
            ExchangeWorkflow.vet,
            VettingDecision(HOME_BROKER, VettingVerdict.REJECT, "outside the programme"),
        )
        assert await handle.result() == "rejected"
        rejected = harness.fakes.sent_of("request_rejected")
        assert rejected[0].audiences == ["requester"]
        assert rejected[0].data.email == RequestRejectedEmail(reason="outside the programme")
        assert "exchange_closed" not in harness.fakes.kinds()

    async def test_request_changes_then_amend_then_approve(self, harness: Harness) -> None:
        handle = await harness.start()
        await wait_stage(handle, "vetting")
        await handle.execute_update(
            ExchangeWorkflow.vet,
            VettingDecision(HOME_BROKER, VettingVerdict.REQUEST_CHANGES, "add budget"),
        )
        await wait_stage(handle, "changes_requested", ["requester"])
        await handle.execute_update(ExchangeWorkflow.amend, Amendment(REQUESTER, "budget added"))
        await wait_stage(handle, "vetting")
        await handle.execute_update(
            ExchangeWorkflow.vet, VettingDecision(HOME_BROKER, VettingVerdict.APPROVE)
        )
        await harness.fakes.wait_sent("vetting_needed", count=2)
        assert (await harness.fakes.wait_sent("changes_requested"))[0].action == "amend"
        await harness.fakes.wait_event("amended")

    async def test_unanswered_changes_expire(self, harness: Harness) -> None:
        handle = await harness.start()
        await wait_stage(handle, "vetting")
        await handle.execute_update(
            ExchangeWorkflow.vet,
            VettingDecision(HOME_BROKER, VettingVerdict.REQUEST_CHANGES, "add budget"),
        )
        assert await handle.result() == "expired"
        reminders = harness.fakes.sent_of("changes_reminder")
        assert len(reminders) == 1
        closed = harness.fakes.sent_of("exchange_closed")[0]
        assert isinstance(closed.data.email, ExchangeClosedEmail)
        assert closed.data.email.outcome == "expired"
        assert "requester" in closed.audiences

    async def test_reminder_then_escalation_at_their_times_and_never_after(
        self, harness: Harness
    ) -> None:
        handle = await harness.start()
        started = await harness.now()
        await wait_stage(handle, "vetting")
        await harness.env.sleep(5 * DAY + 600)
        await wait_until(handle, lambda _: bool(harness.fakes.sent_of("vetting_escalation")))
        reminder = (await harness.fakes.wait_sent("vetting_reminder"))[0]
        escalation = harness.fakes.sent_of("vetting_escalation")[0]
        assert offset_days(harness, started, reminder.at) == pytest.approx(2, abs=0.05)
        assert offset_days(harness, started, escalation.at) == pytest.approx(5, abs=0.05)
        assert reminder.audiences == ["home_brokers"]
        assert escalation.audiences == ["managers"]
        await handle.execute_update(
            ExchangeWorkflow.vet, VettingDecision(HOME_BROKER, VettingVerdict.APPROVE)
        )
        await wait_stage(handle, "matching")
        await harness.env.sleep(20 * DAY)
        assert len(harness.fakes.sent_of("vetting_reminder")) == 1
        assert len(harness.fakes.sent_of("vetting_escalation")) == 1

    async def test_no_reminder_when_decided_in_time(self, harness: Harness) -> None:
        handle = await harness.start()
        await wait_stage(handle, "vetting")
        await harness.env.sleep(DAY)
        await handle.execute_update(
            ExchangeWorkflow.vet, VettingDecision(HOME_BROKER, VettingVerdict.APPROVE)
        )
        await wait_stage(handle, "matching")
        await harness.env.sleep(10 * DAY)
        assert harness.fakes.sent_of("vetting_reminder") == []
        assert harness.fakes.sent_of("vetting_escalation") == []


class TestMatchingAndIntroduction:
    async def test_host_veto_drops_the_candidate(self, harness: Harness) -> None:
        handle = await harness.start()
        await shortlist(handle, ["bm-1", "kr-1"])
        await handle.execute_update(
            ExchangeWorkflow.host_review,
            HostReviewDecision(
                host_broker("biom"), "bm-1", HostVerdict.VETO, "conflict of interest"
            ),
        )
        await handle.execute_update(
            ExchangeWorkflow.host_review,
            HostReviewDecision(host_broker("klsk"), "kr-1", HostVerdict.ENDORSE),
        )
        state = await wait_stage(handle, "introduction")
        assert state.current_candidate == "kr-1"
        assert [c.host_decision for c in state.candidates[:2]] == ["vetoed", "endorsed"]
        asked = [s.audiences for s in await harness.fakes.wait_sent("introduction_request")]
        assert asked == [["partner:kr-1"]]

    async def test_host_silence_counts_as_consent(self, harness: Harness) -> None:
        handle = await harness.start()
        await shortlist(handle, ["bm-1"])
        await harness.env.sleep(3 * DAY + 60)
        state = await wait_stage(handle, "introduction")
        assert state.candidates[0].host_decision == "consented"

    async def test_host_review_by_another_clusters_broker_is_refused(
        self, harness: Harness
    ) -> None:
        handle = await harness.start()
        await shortlist(handle, ["bm-1"])
        error = await refused(
            handle,
            ExchangeWorkflow.host_review,
            HostReviewDecision(host_broker("klsk"), "bm-1", HostVerdict.VETO),
        )
        assert error.type == "WrongActor"

    async def test_decline_asks_the_next_candidate(self, harness: Harness) -> None:
        handle = await harness.start()
        await endorse_all(handle, ["bm-1", "kr-1"])
        await handle.execute_update(
            ExchangeWorkflow.answer_introduction,
            IntroductionAnswer(partner("bm-1"), "bm-1", False, "fully booked"),
        )
        state = await wait_until(handle, lambda s: s.current_candidate == "kr-1")
        assert state.stage == "introduction"
        declined = (await harness.fakes.wait_sent("partner_declined"))[0]
        assert declined.audiences == ["requester", "home_brokers"]
        assert declined.data.email == PartnerDeclinedEmail(
            organisation_id="bm-1", next_step="next_candidate", reason="fully booked"
        )

    async def test_silent_partner_is_reminded_then_passed_over(self, harness: Harness) -> None:
        handle = await harness.start()
        await endorse_all(handle, ["bm-1", "kr-1"])
        asked_at = await harness.now()
        await harness.env.sleep(7 * DAY + 60)
        await wait_until(handle, lambda s: s.current_candidate == "kr-1")
        reminder = (await harness.fakes.wait_sent("introduction_reminder"))[0]
        assert reminder.audiences == ["partner:bm-1"]
        assert offset_days(harness, asked_at, reminder.at) == pytest.approx(3, abs=0.05)
        await harness.fakes.wait_event("introduction_no_answer")

    async def test_all_decline_back_to_matching_once_then_no_partner(
        self, harness: Harness
    ) -> None:
        handle = await harness.start()
        await endorse_all(handle, ["bm-1"])
        await handle.execute_update(
            ExchangeWorkflow.answer_introduction, IntroductionAnswer(partner("bm-1"), "bm-1", False)
        )
        state = await wait_until(handle, lambda s: s.matching_rounds == 2 and s.stage == "matching")
        assert state.shortlist == []
        await handle.execute_update(
            ExchangeWorkflow.set_shortlist, ShortlistDecision(HOME_BROKER, ["kr-1"])
        )
        await wait_stage(handle, "host_review")
        await handle.execute_update(
            ExchangeWorkflow.host_review,
            HostReviewDecision(host_broker("klsk"), "kr-1", HostVerdict.ENDORSE),
        )
        await wait_stage(handle, "introduction")
        await handle.execute_update(
            ExchangeWorkflow.answer_introduction, IntroductionAnswer(partner("kr-1"), "kr-1", False)
        )
        assert await handle.result() == "no_partner"
        assert harness.fakes.searches[1].exclude == ["bm-1"]
        closed = harness.fakes.sent_of("exchange_closed")[0]
        assert "partner:bm-1" in closed.audiences and "partner:kr-1" in closed.audiences
        assert harness.fakes.revoked[-1] is None

    async def test_no_candidates_at_all_is_no_partner(self, harness: Harness) -> None:
        harness.fakes.rounds[:] = [[]]
        handle = await harness.start()
        await wait_stage(handle, "vetting")
        await handle.execute_update(
            ExchangeWorkflow.vet, VettingDecision(HOME_BROKER, VettingVerdict.APPROVE)
        )
        assert await handle.result() == "no_partner"


class TestScheduling:
    async def test_counter_proposal_then_requester_picks(self, harness: Harness) -> None:
        handle = await harness.start()
        await introduce(handle)
        await handle.execute_update(ExchangeWorkflow.propose_slots, await harness.slots(3))
        await wait_stage(handle, "scheduling", ["partner"])
        counter = await harness.slots(5, 6)
        counter = SlotProposal(partner("bm-1"), counter.slots, "Europe/Berlin")
        await handle.execute_update(ExchangeWorkflow.propose_slots, counter)
        state = await wait_stage(handle, "scheduling", ["requester"])
        assert state.proposal is not None and state.proposal.by == "partner"
        error = await refused(
            handle, ExchangeWorkflow.pick_slot, SlotPick(partner("bm-1"), counter.slots[0].start)
        )
        assert error.type == "WrongActor"
        await handle.execute_update(
            ExchangeWorkflow.pick_slot, SlotPick(REQUESTER, counter.slots[1].start)
        )
        state = await wait_stage(handle, "meeting_scheduled")
        assert state.meeting is not None
        assert state.meeting.start == counter.slots[1].start
        assert state.meeting.timezone == "Europe/Berlin"
        slots_mail = await harness.fakes.wait_sent("slots_proposed", count=2)
        assert [s.audiences for s in slots_mail] == [["partner:bm-1"], ["requester"]]

    async def test_reschedule_raises_the_invite_sequence(self, harness: Harness) -> None:
        handle = await harness.start()
        await schedule(harness, handle, days_ahead=5)
        await handle.execute_update(ExchangeWorkflow.propose_slots, await harness.slots(8))
        await wait_stage(handle, "scheduling", ["partner"])
        new = (await state_of(handle)).proposal
        assert new is not None
        await handle.execute_update(
            ExchangeWorkflow.pick_slot, SlotPick(partner("bm-1"), new.slots[0].start)
        )
        state = await wait_stage(handle, "meeting_scheduled")
        assert state.meeting is not None and state.meeting.sequence == 1
        await wait_until(handle, lambda _: bool(harness.fakes.sent_of("meeting_rescheduled")))
        rescheduled = harness.fakes.sent_of("meeting_rescheduled")
        assert rescheduled[0].invite == "REQUEST"
        assert rescheduled[0].data.meeting is not None
        assert rescheduled[0].data.meeting.sequence == 1

    async def test_cancel_meeting_sends_a_cancel_invite_and_reopens_scheduling(
        self, harness: Harness
    ) -> None:
        handle = await harness.start()
        await schedule(harness, handle, days_ahead=5)
        await handle.execute_update(
            ExchangeWorkflow.cancel_meeting, MeetingCancellation(partner("bm-1"), "ill")
        )
        state = await wait_stage(handle, "scheduling", ["requester"])
        assert state.meeting is None
        cancelled = (await harness.fakes.wait_sent("meeting_cancelled"))[0]
        assert cancelled.invite == "CANCEL"
        assert cancelled.audiences == ["requester", "partner:bm-1", "home_brokers"]

    async def test_meeting_not_held_reopens_scheduling_once(self, harness: Harness) -> None:
        handle = await harness.start()
        await schedule(harness, handle)
        await harness.env.sleep(4 * DAY)
        await wait_stage(handle, "follow_up")
        await handle.execute_update(ExchangeWorkflow.report_not_held, NotHeldReport(REQUESTER))
        await wait_stage(handle, "scheduling", ["requester"])
        proposal = await harness.slots(2)
        await handle.execute_update(ExchangeWorkflow.propose_slots, proposal)
        await wait_stage(handle, "scheduling", ["partner"])
        await handle.execute_update(
            ExchangeWorkflow.pick_slot, SlotPick(partner("bm-1"), proposal.slots[0].start)
        )
        await wait_stage(handle, "meeting_scheduled")
        await harness.env.sleep(3 * DAY)
        await wait_stage(handle, "follow_up")
        error = await refused(handle, ExchangeWorkflow.report_not_held, NotHeldReport(REQUESTER))
        assert error.type == "WrongStage"
        await harness.fakes.wait_event("meeting_not_held")

    async def test_scheduling_stuck_asks_the_broker_then_expires(self, harness: Harness) -> None:
        handle = await harness.start()
        await introduce(handle)
        await harness.env.sleep(10 * DAY + 60)
        await wait_until(handle, lambda _: bool(harness.fakes.sent_of("scheduling_stuck")))
        assert harness.fakes.sent_of("scheduling_stuck")[0].audiences == ["home_brokers"]
        assert await handle.result() == "expired"


class TestFollowUp:
    async def test_survey_reminder_then_closing_without_answers(self, harness: Harness) -> None:
        handle = await harness.start()
        await open_survey(harness, handle)
        await handle.execute_update(ExchangeWorkflow.answer_survey, answer("requester"))
        assert await handle.result() == "completed"
        reminders = harness.fakes.sent_of("survey_reminder")
        assert [r.audiences for r in reminders] == [["partner:bm-1"]]
        assert [s.respondent for s in harness.fakes.surveys] == ["requester"]

    async def test_outcome_wave_updates_the_recorded_result(self, harness: Harness) -> None:
        handle = await harness.start()
        await open_survey(harness, handle)
        for side in ("requester", "partner"):
            await handle.execute_update(ExchangeWorkflow.answer_survey, answer(side))
        # Awaiting the result would let the server skip past the wave's own timers.
        with harness.env.auto_time_skipping_disabled():
            await handle.result()
        wave = harness.env.client.get_workflow_handle(f"{handle.id}-outcome")
        from ce4big.lifecycle import OutcomeAnswer
        from workflows.outcome import OutcomeWaveWorkflow

        await harness.env.sleep(181 * DAY)
        await wait_until(handle, lambda _: bool(harness.fakes.sent_of("outcome_wave")))
        await wave.execute_update(
            OutcomeWaveWorkflow.answer_outcome,
            OutcomeAnswer(REQUESTER, WaveOutcome.AGREEMENT_REACHED, "licensing"),
        )
        await wave.execute_update(
            OutcomeWaveWorkflow.answer_outcome,
            OutcomeAnswer(partner("bm-1"), WaveOutcome.VALUABLE_CONTACT),
        )
        assert await wave.result() == "agreement_reached"
        recorded = harness.fakes.events[-1]
        assert (recorded.kind, recorded.result, recorded.agreement_type) == (
            "outcome_recorded",
            "agreement_reached",
            "licensing",
        )
        assert recorded.outcome is None


STAGE_STEPS = [
    "vetting",
    "changes_requested",
    "matching",
    "host_review",
    "introduction",
    "scheduling",
    "meeting_scheduled",
    "follow_up",
]


class TestWithdrawAndCancel:
    async def reach(self, harness: Harness, handle: Handle, stage: str) -> None:
        if stage == "vetting":
            await wait_stage(handle, "vetting")
        elif stage == "changes_requested":
            await wait_stage(handle, "vetting")
            await handle.execute_update(
                ExchangeWorkflow.vet,
                VettingDecision(HOME_BROKER, VettingVerdict.REQUEST_CHANGES, "more"),
            )
            await wait_stage(handle, "changes_requested")
        elif stage == "matching":
            await approve(handle)
        elif stage == "host_review":
            await shortlist(handle, ["bm-1"])
        elif stage == "introduction":
            await endorse_all(handle, ["bm-1"])
        elif stage == "scheduling":
            await introduce(handle)
        elif stage == "meeting_scheduled":
            await schedule(harness, handle, days_ahead=5)
        else:
            await open_survey(harness, handle)

    @pytest.mark.parametrize("stage", STAGE_STEPS)
    async def test_withdraw_tells_everyone_contacted(self, harness: Harness, stage: str) -> None:
        handle = await harness.start()
        await self.reach(harness, handle, stage)
        await handle.execute_update(ExchangeWorkflow.withdraw, Closure(REQUESTER, "found one"))
        assert await handle.result() == "withdrawn"
        closed = harness.fakes.sent_of("exchange_closed")[0]
        assert isinstance(closed.data.email, ExchangeClosedEmail)
        assert closed.data.email.outcome == "withdrawn"
        assert "requester" in closed.audiences and "home_brokers" in closed.audiences
        partner_contacted = stage in STAGE_STEPS[STAGE_STEPS.index("introduction") :]
        assert ("partner:bm-1" in closed.audiences) == partner_contacted
        host_contacted = stage in STAGE_STEPS[STAGE_STEPS.index("host_review") :]
        assert ("host_brokers:biom" in closed.audiences) == host_contacted
        assert harness.fakes.revoked[-1] is None
        cancel_invites = [s for s in harness.fakes.sent if s.invite == "CANCEL"]
        assert bool(cancel_invites) == (stage == "meeting_scheduled")
        assert harness.fakes.events[-1].outcome == "withdrawn"

    async def test_manager_cancels(self, harness: Harness) -> None:
        handle = await harness.start()
        await approve(handle)
        await handle.execute_update(ExchangeWorkflow.cancel, Closure(MANAGER, "duplicate"))
        assert await handle.result() == "cancelled"
        closed = harness.fakes.sent_of("exchange_closed")[0].data.email
        assert closed == ExchangeClosedEmail(outcome=Outcome.CANCELLED, reason="duplicate")

    async def test_only_the_requester_withdraws_and_only_managers_cancel(
        self, harness: Harness
    ) -> None:
        handle = await harness.start()
        await wait_stage(handle, "vetting")
        assert (await refused(handle, ExchangeWorkflow.withdraw, Closure(HOME_BROKER))).type == (
            "WrongActor"
        )
        assert (await refused(handle, ExchangeWorkflow.cancel, Closure(REQUESTER))).type == (
            "WrongActor"
        )

    async def test_closed_exchange_refuses_withdraw(self, harness: Harness) -> None:
        handle = await harness.start()
        await wait_stage(handle, "vetting")
        await handle.execute_update(ExchangeWorkflow.cancel, Closure(MANAGER))
        await handle.result()
        with pytest.raises(Exception):  # noqa: B017 - a closed workflow takes no update at all
            await handle.execute_update(ExchangeWorkflow.withdraw, Closure(REQUESTER))


class TestValidators:
    async def test_out_of_stage_decision_is_refused_before_history(self, harness: Harness) -> None:
        handle = await harness.start()
        await wait_stage(handle, "vetting")
        error = await refused(
            handle, ExchangeWorkflow.set_shortlist, ShortlistDecision(HOME_BROKER, ["bm-1"])
        )
        assert error.type == "WrongStage"
        assert "vetting" in error.message
        history = await handle.fetch_history()
        accepted = [
            e
            for e in history.events
            if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
        ]
        assert accepted == []

    async def test_wrong_actor_is_refused(self, harness: Harness) -> None:
        handle = await harness.start()
        await wait_stage(handle, "vetting")
        other_broker = host_broker("biom")
        error = await refused(
            handle, ExchangeWorkflow.vet, VettingDecision(other_broker, VettingVerdict.APPROVE)
        )
        assert error.type == "WrongActor"
        error = await refused(
            handle, ExchangeWorkflow.vet, VettingDecision(REQUESTER, VettingVerdict.APPROVE)
        )
        assert error.type == "WrongActor"

    async def test_reject_needs_a_reason(self, harness: Harness) -> None:
        handle = await harness.start()
        await wait_stage(handle, "vetting")
        error = await refused(
            handle, ExchangeWorkflow.vet, VettingDecision(HOME_BROKER, VettingVerdict.REJECT)
        )
        assert error.type == "InvalidDecision"

    async def test_shortlist_must_hold_1_to_5_known_candidates(self, harness: Harness) -> None:
        handle = await harness.start()
        await approve(handle)
        for ids in ([], ["nobody"], ["bm-1", "bm-1"]):
            error = await refused(
                handle, ExchangeWorkflow.set_shortlist, ShortlistDecision(HOME_BROKER, ids)
            )
            assert error.type == "InvalidDecision", ids

    async def test_double_click_is_harmless(self, harness: Harness) -> None:
        handle = await harness.start()
        await wait_stage(handle, "vetting")
        decision = VettingDecision(HOME_BROKER, VettingVerdict.APPROVE)
        first = await handle.execute_update(ExchangeWorkflow.vet, decision)
        await wait_stage(handle, "matching")
        second = await handle.execute_update(ExchangeWorkflow.vet, decision)
        assert first.detail == "" and second.detail == "already decided"
        await harness.fakes.wait_event("vetting_approve")
        assert harness.fakes.event_kinds().count("vetting_approve") == 1
        different = await refused(
            handle, ExchangeWorkflow.vet, VettingDecision(HOME_BROKER, VettingVerdict.REJECT, "no")
        )
        assert different.type == "WrongStage"

    async def test_partner_of_another_candidate_cannot_answer(self, harness: Harness) -> None:
        handle = await harness.start()
        await endorse_all(handle, ["bm-1", "kr-1"])
        error = await refused(
            handle,
            ExchangeWorkflow.answer_introduction,
            IntroductionAnswer(partner("kr-1"), "kr-1", True),
        )
        assert error.type == "WrongStage"

    async def test_pick_must_be_a_proposed_slot(self, harness: Harness) -> None:
        handle = await harness.start()
        await introduce(handle)
        proposal = await harness.slots(3)
        await handle.execute_update(ExchangeWorkflow.propose_slots, proposal)
        await wait_stage(handle, "scheduling", ["partner"])
        later = (datetime.fromisoformat(proposal.slots[0].start) + timedelta(hours=2)).isoformat()
        error = await refused(handle, ExchangeWorkflow.pick_slot, SlotPick(partner("bm-1"), later))
        assert error.type == "InvalidDecision"

    async def test_at_most_three_rounds_of_proposals(self, harness: Harness) -> None:
        handle = await harness.start()
        await introduce(handle)
        sides = [REQUESTER, partner("bm-1"), REQUESTER]
        for number, actor in enumerate(sides, start=1):
            slots = (await harness.slots(3 + number)).slots
            await handle.execute_update(
                ExchangeWorkflow.propose_slots, SlotProposal(actor, slots, "Europe/Paris")
            )
            await wait_until(handle, partial(proposal_round_is, number))
        slots = (await harness.slots(9)).slots
        error = await refused(
            handle,
            ExchangeWorkflow.propose_slots,
            SlotProposal(partner("bm-1"), slots, "Europe/Paris"),
        )
        assert error.type == "WrongStage"
