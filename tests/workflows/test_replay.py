"""Recorded histories of complete exchanges replay on today's workflow code.

A change that would make a running exchange take another path on replay (an activity, timer or
child workflow added, removed or moved without `workflow.patched`) fails here. Every JSON file
under histories/ replays, so copies of older histories kept under other names keep guarding the
exchanges started on older code. Re-record (overwriting the files named after the scenarios
below) only when no exchange started on the old code can still be running (see the README):

    CE4BIG_RECORD_HISTORIES=1 .venv/bin/pytest tests/workflows/test_replay.py
"""

from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle, WorkflowHistory
from temporalio.worker import Replayer

from activities.exchange import NOTIFY_OPTIONS
from ce4big.domain import HostVerdict, SurveyOutcome, VettingVerdict, WaveOutcome
from ce4big.lifecycle import (
    Amendment,
    Closure,
    ExchangeInput,
    HostReviewDecision,
    IntroductionAnswer,
    OutcomeAnswer,
    ShortlistDecision,
    SlotPick,
    SurveyAnswer,
    VettingDecision,
)
from ce4big.searchattributes import STAGE
from tests.workflows.conftest import (
    DAY,
    HOME_BROKER,
    REQUESTER,
    Harness,
    host_broker,
    partner,
    wait_stage,
    wait_until,
)
from workflows.exchange import ExchangeWorkflow
from workflows.outcome import OutcomeWaveWorkflow

HISTORIES = Path(__file__).parent / "histories"
# Copies kept from the versions before the search-attributes patch: they replay its old branch.
BEFORE_SEARCH_ATTRIBUTES = ("v1-", "v2-")


def histories() -> list[Path]:
    return sorted(HISTORIES.glob("*.json"))


def load(path: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(path.stem, path.read_text())


def upserts(history: WorkflowHistory) -> int:
    """Upserts of the exchange's stage (the SDK upserts TemporalChangeVersion with each patch)."""
    upsert = EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES
    fields = (
        event.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields
        for event in history.events
        if event.event_type == upsert
    )
    return sum(1 for indexed in fields if STAGE.name in indexed)


def notify_timeouts(history: WorkflowHistory) -> set[tuple[timedelta, timedelta]]:
    """(start-to-close, heartbeat) timeouts of each notify the history scheduled."""
    scheduled = EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    return {
        (
            attributes.start_to_close_timeout.ToTimedelta(),
            attributes.heartbeat_timeout.ToTimedelta(),
        )
        for event in history.events
        if event.event_type == scheduled
        and (attributes := event.activity_task_scheduled_event_attributes).activity_type.name
        == "notify"
    }


def replayer() -> Replayer:
    return Replayer(workflows=[ExchangeWorkflow, OutcomeWaveWorkflow])


@pytest.mark.replay
class TestReplay:
    @pytest.mark.parametrize("path", histories(), ids=lambda p: p.stem)
    async def test_recorded_history_replays_without_nondeterminism(self, path: Path) -> None:
        history = load(path)

        await replayer().replay_workflow(history)

    def test_every_lifecycle_has_a_recorded_history(self) -> None:
        # Histories kept from earlier versions of the workflow may sit next to these.
        assert {*SCENARIOS, "outcome_wave"} <= {p.stem for p in histories()}

    def test_both_branches_of_the_search_attributes_patch_are_replayed(self) -> None:
        older = [p for p in histories() if p.name.startswith(BEFORE_SEARCH_ATTRIBUTES)]

        assert older and not any(upserts(load(p)) for p in older)
        assert all(upserts(load(HISTORIES / f"{name}.json")) for name in SCENARIOS)

    def test_histories_scheduled_notify_with_other_timeouts_than_today(self) -> None:
        # Timeouts are not compared on replay: exchanges that scheduled notify before it
        # heartbeated (2 minutes to complete, no heartbeat timeout) replay on today's options,
        # as the test above shows for these histories.
        today = (
            NOTIFY_OPTIONS.get("start_to_close_timeout"),
            NOTIFY_OPTIONS.get("heartbeat_timeout"),
        )

        older = [p.stem for p in histories() if notify_timeouts(load(p)) - {today}]

        assert older

    async def test_a_workflow_that_takes_another_path_fails_the_replay(self) -> None:
        history = load(HISTORIES / "completed.json")

        with pytest.raises(workflow.NondeterminismError):
            await Replayer(workflows=[ReorderedExchangeWorkflow]).replay_workflow(history)


@workflow.defn(name="ExchangeWorkflow", sandboxed=False)
class ReorderedExchangeWorkflow:
    """Waits before recording the submission, where the real one records it at once."""

    @workflow.run
    async def run(self, data: ExchangeInput) -> str:
        await workflow.sleep(timedelta(seconds=1))
        return "completed"


Scenario = Callable[[Harness], Awaitable[None]]
Handle = WorkflowHandle[ExchangeWorkflow, str]


async def _vet_and_shortlist(handle: Handle, ids: list[str]) -> None:
    await wait_stage(handle, "vetting")
    await handle.execute_update(
        ExchangeWorkflow.vet, VettingDecision(HOME_BROKER, VettingVerdict.APPROVE)
    )
    await wait_until(handle, lambda s: s.stage == "matching" and bool(s.candidates))
    await handle.execute_update(ExchangeWorkflow.set_shortlist, ShortlistDecision(HOME_BROKER, ids))
    await wait_stage(handle, "host_review")


async def record_completed(harness: Harness) -> None:
    handle = await harness.start()
    await wait_stage(handle, "vetting")
    # Past the vetting reminder, so that a timer that fired is part of the history.
    await harness.env.sleep(2.5 * DAY)
    await wait_until(handle, lambda _: bool(harness.fakes.sent_of("vetting_reminder")))
    await _vet_and_shortlist(handle, ["bm-1"])
    await handle.execute_update(
        ExchangeWorkflow.host_review,
        HostReviewDecision(host_broker("biom"), "bm-1", HostVerdict.ENDORSE),
    )
    await wait_stage(handle, "introduction")
    await handle.execute_update(
        ExchangeWorkflow.answer_introduction, IntroductionAnswer(partner("bm-1"), "bm-1", True)
    )
    await wait_stage(handle, "scheduling", ["requester"])
    proposal = await harness.slots(3, 4)
    await handle.execute_update(ExchangeWorkflow.propose_slots, proposal)
    await wait_stage(handle, "scheduling", ["partner"])
    await handle.execute_update(
        ExchangeWorkflow.pick_slot, SlotPick(partner("bm-1"), proposal.slots[0].start)
    )
    await wait_stage(handle, "meeting_scheduled")
    await harness.env.sleep(4 * DAY)
    await wait_stage(handle, "follow_up", [])
    await harness.env.sleep(7 * DAY)
    await wait_stage(handle, "follow_up", ["requester", "partner"])
    for actor in (REQUESTER, partner("bm-1")):
        await handle.execute_update(
            ExchangeWorkflow.answer_survey,
            SurveyAnswer(actor, SurveyOutcome.COOPERATION_POSSIBLE, satisfaction=5, recommend=9),
        )
    # Awaiting a result lets the test server skip time on its own, which here could run past
    # the outcome wave's timer before the sleep below asks for it.
    with harness.env.auto_time_skipping_disabled():
        assert await handle.result() == "completed"
    save("completed", await handle.fetch_history())

    wave = harness.env.client.get_workflow_handle(f"{handle.id}-outcome")
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
    save("outcome_wave", await wave.fetch_history())


async def record_withdrawn_with_meeting_scheduled(harness: Harness) -> None:
    handle = await harness.start()
    await _vet_and_shortlist(handle, ["bm-1"])
    await handle.execute_update(
        ExchangeWorkflow.host_review,
        HostReviewDecision(host_broker("biom"), "bm-1", HostVerdict.ENDORSE),
    )
    await wait_stage(handle, "introduction")
    await handle.execute_update(
        ExchangeWorkflow.answer_introduction, IntroductionAnswer(partner("bm-1"), "bm-1", True)
    )
    await wait_stage(handle, "scheduling", ["requester"])
    proposal = await harness.slots(5, 6)
    await handle.execute_update(ExchangeWorkflow.propose_slots, proposal)
    await wait_stage(handle, "scheduling", ["partner"])
    await handle.execute_update(
        ExchangeWorkflow.pick_slot, SlotPick(partner("bm-1"), proposal.slots[1].start)
    )
    await wait_stage(handle, "meeting_scheduled")
    await handle.execute_update(ExchangeWorkflow.withdraw, Closure(REQUESTER, "found one"))
    assert await handle.result() == "withdrawn"
    save("withdrawn_with_meeting_scheduled", await handle.fetch_history())


async def record_no_partner(harness: Harness) -> None:
    handle = await harness.start()
    await _vet_and_shortlist(handle, ["bm-1"])
    await handle.execute_update(
        ExchangeWorkflow.host_review,
        HostReviewDecision(host_broker("biom"), "bm-1", HostVerdict.ENDORSE),
    )
    await wait_stage(handle, "introduction")
    await handle.execute_update(
        ExchangeWorkflow.answer_introduction,
        IntroductionAnswer(partner("bm-1"), "bm-1", False, "fully booked"),
    )
    await wait_until(handle, lambda s: s.matching_rounds == 2 and s.stage == "matching")
    await handle.execute_update(
        ExchangeWorkflow.set_shortlist, ShortlistDecision(HOME_BROKER, ["kr-1"])
    )
    await wait_stage(handle, "host_review")
    # The host broker stays silent: consent at the deadline.
    await harness.env.sleep(3 * DAY + 60)
    await wait_stage(handle, "introduction")
    await handle.execute_update(
        ExchangeWorkflow.answer_introduction, IntroductionAnswer(partner("kr-1"), "kr-1", False)
    )
    assert await handle.result() == "no_partner"
    save("no_partner", await handle.fetch_history())


async def record_changes_then_rejected(harness: Harness) -> None:
    handle = await harness.start()
    await wait_stage(handle, "vetting")
    await handle.execute_update(
        ExchangeWorkflow.vet,
        VettingDecision(HOME_BROKER, VettingVerdict.REQUEST_CHANGES, "add a budget"),
    )
    await wait_stage(handle, "changes_requested", ["requester"])
    # Past the changes reminder before amending.
    await harness.env.sleep(8 * DAY)
    await wait_until(handle, lambda _: bool(harness.fakes.sent_of("changes_reminder")))
    await handle.execute_update(ExchangeWorkflow.amend, Amendment(REQUESTER, "budget added"))
    await wait_stage(handle, "vetting")
    await handle.execute_update(
        ExchangeWorkflow.vet,
        VettingDecision(HOME_BROKER, VettingVerdict.REJECT, "outside the programme"),
    )
    assert await handle.result() == "rejected"
    save("changes_then_rejected", await handle.fetch_history())


SCENARIOS: dict[str, Scenario] = {
    "completed": record_completed,
    "withdrawn_with_meeting_scheduled": record_withdrawn_with_meeting_scheduled,
    "no_partner": record_no_partner,
    "changes_then_rejected": record_changes_then_rejected,
}


def save(name: str, history: WorkflowHistory) -> None:
    HISTORIES.mkdir(exist_ok=True)
    (HISTORIES / f"{name}.json").write_text(history.to_json() + "\n")


@pytest.mark.slow
@pytest.mark.record_histories
class TestRecordHistories:
    @pytest.mark.parametrize("name", sorted(SCENARIOS))
    async def test_record(self, harness: Harness, name: str) -> None:
        await SCENARIOS[name](harness)
