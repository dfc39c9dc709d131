"""The floor of bench/lifecycle.py: a workflow of the same shape as one complete exchange.

Same activity calls in the same order with the same options (about 48 for a complete exchange
with one shortlisted partner), the same stage entries (the patch markers, the search attribute
upserts and the recorded entry of workflows/effects.py), the same waits with the same reminder
and deadline timers, the same timers for the meeting and the survey delay, and the same
branches where a decision can come before its wait (scheduling), but no-op activities and a
signal for each human decision. bench/lifecycle.py compares the two histories' activities and
upserts, in order, at the end of every run. It lives in its own module because the workflow
sandbox re-imports the module that defines a workflow, and the bench script itself imports the
whole web stack.
"""

import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from temporalio import activity, workflow

with workflow.unsafe.imports_passed_through():
    from activities.exchange import FIND_CANDIDATES_OPTIONS, NOTIFY_OPTIONS
    from activities.records import RECORD_EVENT_OPTIONS
    from ce4big.lifecycle import Timings
    from ce4big.searchattributes import stage_updates

# The product's patches (workflows/effects.py): each records a marker on first use.
STAGE_RECORDS_PATCH = "record-stage-entries"
SEARCH_ATTRIBUTES_PATCH = "search-attributes"
HOME_CLUSTER = "biowin"

HOUR = 3600.0


@dataclass(frozen=True)
class FloorInput:
    number: int
    timings: Timings
    # Real seconds from the proposal to the meeting's start, as in the product's slots.
    meeting_lead: float
    meeting_length: float = HOUR


@dataclass(frozen=True)
class FloorCall:
    number: int
    kind: str
    # Decisions this e-mail asks for, as the product's action links do.
    ready: list[str] = field(default_factory=list)


class FloorActivities:
    """No-op activities; `record` and `notify` only tell the bench what happened, as the
    exchange event row and the e-mail do in the product."""

    def __init__(
        self, on_record: Callable[[int, str], None], on_ready: Callable[[int, str], None]
    ) -> None:
        self._on_record = on_record
        self._on_ready = on_ready

    @activity.defn(name="floor_record")
    async def record(self, call: FloorCall) -> None:
        self._on_record(call.number, call.kind)

    @activity.defn(name="floor_notify")
    async def notify(self, call: FloorCall) -> None:
        for step in call.ready:
            self._on_ready(call.number, step)

    @activity.defn(name="floor_noop")
    async def noop(self, call: FloorCall) -> None:
        return None


@workflow.defn
class FloorWorkflow:
    @workflow.init
    def __init__(self, data: FloorInput) -> None:
        self._data = data
        self._decided: set[str] = set()

    @workflow.signal
    def decide(self, step: str) -> None:
        self._decided.add(step)

    @workflow.run
    async def run(self, data: FloorInput) -> str:
        t = data.timings
        await self._record("submitted")
        await self._notify("request_received")
        # Vetting.
        await self._enter("vetting", ["home_broker"], t.vetting_escalation)
        await self._notify("vetting_needed", "vet")
        await self._wait(
            "vet",
            reminders=[
                (t.vetting_reminder, lambda: self._notify("vetting_reminder")),
                (t.vetting_escalation, lambda: self._notify("vetting_escalation")),
            ],
        )
        await self._record("vetting_approve")
        await self._noop("revoke_tokens")
        await self._notify("request_approved")
        # Matching and host review.
        await self._enter("matching", ["home_broker"], t.shortlist_escalation)
        await self._noop("find_candidates", FIND_CANDIDATES_OPTIONS)
        await self._record("candidates_found")
        await self._notify("shortlist_needed", "shortlist")
        await self._wait(
            "shortlist",
            reminders=[
                (t.shortlist_reminder, lambda: self._notify("shortlist_reminder")),
                (t.shortlist_escalation, lambda: self._notify("shortlist_escalation")),
            ],
        )
        await self._noop("revoke_tokens")
        await self._record("shortlisted")
        await self._noop("update_candidate")
        await self._enter("host_review", ["host_broker"], t.host_review_consent)
        await self._notify("host_review_request", "host_review")
        await self._wait("host_review", deadline=t.host_review_consent)
        await self._noop("revoke_tokens")
        await self._noop("update_candidate")
        await self._record("host_review_done")
        # Introduction.
        await self._enter("introduction", ["partner"], t.partner_deadline)
        await self._noop("update_candidate")
        await self._notify("introduction_request", "introduction")
        await self._wait(
            "introduction",
            reminders=[(t.partner_reminder, lambda: self._notify("introduction_reminder"))],
            deadline=t.partner_deadline,
        )
        await self._noop("revoke_tokens")
        await self._noop("update_candidate")
        await self._record("introduction_accepted")
        await self._enter("scheduling", ["requester"], t.scheduling_deadline)
        await self._notify("introduction_made", "propose")
        await self._notify("introduction_made")
        # Scheduling, as workflows/scheduling.py: a proposal already made is announced at once;
        # otherwise the stage is entered again and waits for the next move.
        announced = False
        while "pick" not in self._decided:
            if "propose" in self._decided and not announced:
                announced = True
                await self._record("slots_proposed")
                await self._notify("slots_proposed", "pick")
                continue
            waiting = "partner" if announced else "requester"
            await self._enter("scheduling", [waiting], t.scheduling_deadline)
            await self._wait(
                "pick" if announced else "propose",
                reminders=[(t.scheduling_reminder, lambda: self._notify("slots_reminder"))],
                deadline=t.scheduling_deadline,
            )
        await self._noop("revoke_tokens")
        # The meeting: its reminder and its end are real times divided by the scale.
        until_start = data.meeting_lead / t.time_scale
        until_end = (data.meeting_lead + data.meeting_length) / t.time_scale
        await self._enter("meeting_scheduled", [], until_end)
        await self._record("meeting_scheduled")
        await self._notify("meeting_confirmed")
        await self._wait(
            "never",
            reminders=[
                (
                    max(0.0, until_start - t.meeting_reminder_before),
                    lambda: self._notify("meeting_reminder"),
                )
            ],
            deadline=until_end,
        )
        await self._record("meeting_held")
        # Follow-up: the survey delay, then both answers.
        await self._enter("follow_up", [], t.survey_delay)
        await self._wait("never", deadline=t.survey_delay)
        await self._enter("follow_up", ["requester", "partner"], t.survey_close)
        await self._notify("survey_invitation", "survey:requester", "survey:partner")
        await self._wait(
            "survey:requester",
            "survey:partner",
            reminders=[(t.survey_reminder, lambda: self._notify("survey_reminder"))],
            deadline=t.survey_close,
        )
        await self._noop("revoke_tokens")
        for side in ("partner", "requester"):
            await self._noop("record_survey")
            await self._record(f"survey_answered:{side}")
        await self._record("survey_closed")
        # Closing.
        await self._noop("revoke_tokens")
        await self._enter("closed", [], None)
        await self._record("closed")
        return "completed"

    async def _enter(self, stage: str, waiting_on: list[str], deadline: float | None) -> None:
        """The product's stage entry: the search attributes, then the entry's record."""
        since = workflow.now()
        if workflow.patched(SEARCH_ATTRIBUTES_PATCH):
            workflow.upsert_search_attributes(
                stage_updates(
                    stage=stage,
                    home_cluster=HOME_CLUSTER,
                    waiting_on=waiting_on,
                    deadline=since + timedelta(seconds=deadline) if deadline is not None else None,
                )
            )
        if workflow.patched(STAGE_RECORDS_PATCH):
            await self._noop("record_event")

    async def _wait(
        self,
        *steps: str,
        reminders: Sequence[tuple[float, Callable[[], Awaitable[Any]]]] = (),
        deadline: float | None = None,
    ) -> bool:
        """The product's `_wait`: one timer per reminder still ahead, then the deadline."""
        start = workflow.now()

        def done() -> bool:
            return all(step in self._decided for step in steps)

        async def until(offset: float | None) -> None:
            if offset is None:
                await workflow.wait_condition(done)
                return
            remaining = offset - (workflow.now() - start).total_seconds()
            if remaining > 0:
                with contextlib.suppress(TimeoutError):
                    await workflow.wait_condition(done, timeout=remaining)

        for offset, remind in sorted(reminders, key=lambda r: r[0]):
            await until(offset)
            if done():
                return True
            await remind()
        await until(deadline)
        return done()

    async def _record(self, kind: str) -> None:
        await workflow.execute_activity(
            "floor_record", FloorCall(self._data.number, kind), **RECORD_EVENT_OPTIONS
        )

    async def _notify(self, kind: str, *ready: str) -> None:
        await workflow.execute_activity(
            "floor_notify", FloorCall(self._data.number, kind, list(ready)), **NOTIFY_OPTIONS
        )

    async def _noop(
        self, kind: str, options: workflow.ActivityConfig = RECORD_EVENT_OPTIONS
    ) -> None:
        await workflow.execute_activity("floor_noop", FloorCall(self._data.number, kind), **options)
