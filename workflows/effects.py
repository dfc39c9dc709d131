"""What the lifecycle stages do besides deciding: enter a stage, wait, call activities.

Activities are called through their methods (the name Temporal records is the method's
`@activity.defn` name) with the options declared beside them. Every call made here is a command
in the exchange's history: their order is the workflow's contract with running exchanges.
"""

import contextlib
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.exchange import (
        FIND_CANDIDATES_OPTIONS,
        NOTIFY_OPTIONS,
        RECORD_SURVEY_OPTIONS,
        REVOKE_TOKENS_OPTIONS,
        UPDATE_CANDIDATE_OPTIONS,
        ExchangeActivities,
    )
    from activities.records import RECORD_EVENT_OPTIONS, RecordActivities, RecordEventInput
    from activities.types import (
        EmailData,
        FindCandidatesInput,
        FindCandidatesOutput,
        NotifyInput,
        RecordSurveyInput,
        RevokeTokensInput,
        UpdateCandidateInput,
    )
    from ce4big.domain import Outcome, Stage
    from ce4big.lifecycle import Actor
    from ce4big.searchattributes import stage_updates

from workflows.state import LifecycleState

Reminder = tuple[float, Callable[[], Awaitable[Any]]]

# Stage entries are recorded for the stage read model (ExchangeStage) from this version on.
STAGE_RECORDS_PATCH = "record-stage-entries"
# Stage, home cluster, parties waited on and deadline are upserted as search attributes (Temporal
# visibility) at every stage entry from this version on.
SEARCH_ATTRIBUTES_PATCH = "search-attributes"


class ClosedError(Exception):
    """Ends the lifecycle early: withdrawn, cancelled, rejected, expired or no partner."""

    def __init__(self, outcome: Outcome, reason: str = "", *, tell_contacted: bool = True):
        super().__init__(outcome.value)
        self.outcome = outcome
        self.reason = reason
        self.tell_contacted = tell_contacted


class Effects:
    def __init__(self, state: LifecycleState) -> None:
        self.state = state

    # ------------------------------------------------------------------ stages and waits

    async def enter(self, stage: Stage, waiting_on: list[str], deadline: float | None) -> None:
        """Moves the state at once, then records the entry (an activity): updates may arrive
        while it is recorded, so take any snapshot of the state before entering."""
        state = self.state
        state.stage = stage
        state.waiting_on = waiting_on
        state.since = workflow.now()
        state.deadline = state.since + timedelta(seconds=deadline) if deadline is not None else None
        # An upsert is a command too: exchanges started before it replay without one.
        if workflow.patched(SEARCH_ATTRIBUTES_PATCH):
            workflow.upsert_search_attributes(
                stage_updates(
                    stage=stage.value,
                    home_cluster=state.data.home_cluster,
                    waiting_on=waiting_on,
                    deadline=state.deadline,
                )
            )
        # Workflows started before the stage read model existed replay without these records.
        if workflow.patched(STAGE_RECORDS_PATCH):
            await self.record(
                "stage_entered",
                stage_entry=True,
                stage=stage.value,
                waiting_on=list(waiting_on),
            )

    async def wait(
        self,
        done: Callable[[], bool],
        *,
        reminders: Sequence[Reminder] = (),
        deadline: float | None = None,
    ) -> bool:
        """Wait for `done`, running each reminder at its offset unless `done` came first.

        True when `done`, False at the deadline; raises ClosedError on withdraw or cancel.
        """
        start = workflow.now()

        def ready() -> bool:
            return done() or self.state.closure is not None

        async def until(offset: float | None) -> None:
            if offset is None:
                await workflow.wait_condition(ready)
                return
            remaining = offset - (workflow.now() - start).total_seconds()
            if remaining > 0:
                with contextlib.suppress(TimeoutError):
                    await workflow.wait_condition(ready, timeout=remaining)

        for offset, remind in sorted(reminders, key=lambda r: r[0]):
            await until(offset)
            self.raise_if_closed()
            if done():
                return True
            # Checked again after the timer: a decision in the same task wins over a reminder.
            await remind()
        await until(deadline)
        self.raise_if_closed()
        return done()

    def raise_if_closed(self) -> None:
        if self.state.closure is not None:
            outcome, closure = self.state.closure
            raise ClosedError(outcome, closure.reason)

    # ------------------------------------------------------------------ activities

    async def record(
        self,
        kind: str,
        *,
        actor: Actor | None = None,
        outcome: str | None = None,
        result: str | None = None,
        stage_entry: bool = False,
        **detail: Any,
    ) -> None:
        state = self.state
        await workflow.execute_activity_method(
            RecordActivities.record_event,
            RecordEventInput(
                exchange_id=state.data.exchange_id,
                event_key=state.next_key(kind),
                kind=kind,
                actor=actor.email if actor else "system",
                detail={k: v for k, v in detail.items() if v not in (None, "")},
                at=workflow.now(),
                status=state.stage.value,
                outcome=outcome,
                result=result,
                waiting_on=list(state.waiting_on) if stage_entry else None,
                deadline=state.deadline if stage_entry else None,
            ),
            **RECORD_EVENT_OPTIONS,
        )

    async def notify(
        self,
        kind: str,
        audiences: list[str],
        *,
        action: str | None = None,
        step: str | None = None,
        invite: str | None = None,
        email: EmailData | None = None,
    ) -> None:
        """Send one e-mail kind to audiences; a mail that cannot go is recorded, not fatal."""
        if not audiences:
            return
        state = self.state
        for audience in audiences:
            if audience not in state.contacted:
                state.contacted.append(audience)
        key = state.next_key(step or kind)
        try:
            await workflow.execute_activity_method(
                ExchangeActivities.notify,
                NotifyInput(
                    exchange_id=state.data.exchange_id,
                    kind=kind,
                    audiences=audiences,
                    step_key=key,
                    action=action,
                    invite=invite,
                    meeting=state.meeting,
                    proposal=state.proposal,
                    deadline=state.deadline,
                    since=state.since,
                    email=email,
                ),
                **NOTIFY_OPTIONS,
            )
        except ActivityError as err:
            workflow.logger.warning("e-mail %s to %s failed: %s", kind, audiences, err.cause)
            await self.record(
                "email_failed", email_kind=kind, audiences=audiences, error=str(err.cause)
            )

    async def revoke(self, action: str | None) -> None:
        await workflow.execute_activity_method(
            ExchangeActivities.revoke_tokens,
            RevokeTokensInput(exchange_id=self.state.data.exchange_id, action=action),
            **REVOKE_TOKENS_OPTIONS,
        )

    async def find_candidates(self, matching_round: int) -> FindCandidatesOutput:
        return await workflow.execute_activity_method(
            ExchangeActivities.find_candidates,
            FindCandidatesInput(
                exchange_id=self.state.data.exchange_id,
                exclude=list(self.state.asked),
                matching_round=matching_round,
            ),
            **FIND_CANDIDATES_OPTIONS,
        )

    async def update_candidate(
        self,
        organisation_id: str,
        *,
        shortlist_position: int | None = None,
        host_decision: str | None = None,
        intro_status: str | None = None,
        intro_reason: str | None = None,
    ) -> None:
        await workflow.execute_activity_method(
            ExchangeActivities.update_candidate,
            UpdateCandidateInput(
                exchange_id=self.state.data.exchange_id,
                organisation_id=organisation_id,
                shortlist_position=shortlist_position,
                host_decision=host_decision,
                intro_status=intro_status,
                intro_reason=intro_reason,
            ),
            **UPDATE_CANDIDATE_OPTIONS,
        )

    async def record_survey(self, data: RecordSurveyInput) -> None:
        await workflow.execute_activity_method(
            ExchangeActivities.record_survey, data, **RECORD_SURVEY_OPTIONS
        )
