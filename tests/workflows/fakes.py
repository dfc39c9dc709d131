"""In-memory stand-ins for the exchange activities, registered under the same names."""

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from temporalio import activity

from activities.records import RecordEventInput, RecordEventOutput
from activities.types import (
    FindCandidatesInput,
    FindCandidatesOutput,
    NotifyInput,
    NotifyOutput,
    RecordSurveyInput,
    RevokeTokensInput,
    UpdateCandidateInput,
)
from ce4big.lifecycle import CandidateInfo
from tests.polling import eventually


@dataclass(frozen=True)
class Sent:
    kind: str
    audiences: list[str]
    action: str | None
    invite: str | None
    at: datetime
    step_key: str
    data: NotifyInput


def candidate(organisation_id: str, cluster: str, score: float = 1.0) -> CandidateInfo:
    return CandidateInfo(
        organisation_id=organisation_id,
        name=f"Org {organisation_id}",
        cluster=cluster,
        score=score,
        reasons=["test"],
    )


@dataclass
class FakeActivities:
    rounds: list[list[CandidateInfo]] = field(default_factory=list)
    events: list[RecordEventInput] = field(default_factory=list)
    sent: list[Sent] = field(default_factory=list)
    revoked: list[str | None] = field(default_factory=list)
    candidate_updates: list[UpdateCandidateInput] = field(default_factory=list)
    surveys: list[RecordSurveyInput] = field(default_factory=list)
    searches: list[FindCandidatesInput] = field(default_factory=list)
    # Seconds each stage entry takes to record: decisions then arrive while it is recorded.
    slow_stage_records: float = 0.0

    def all(self) -> list[Callable[..., Any]]:
        return [
            self.record_event,
            self.find_candidates,
            self.notify,
            self.revoke_tokens,
            self.update_candidate,
            self.record_survey,
        ]

    @activity.defn(name="record_event")
    async def record_event(self, data: RecordEventInput) -> RecordEventOutput:
        if data.waiting_on is not None and self.slow_stage_records:
            await asyncio.sleep(self.slow_stage_records)
        if any(e.event_key == data.event_key for e in self.events):
            return RecordEventOutput(recorded=False)
        self.events.append(data)
        return RecordEventOutput(recorded=True)

    @activity.defn(name="find_candidates")
    async def find_candidates(self, data: FindCandidatesInput) -> FindCandidatesOutput:
        self.searches.append(data)
        index = min(data.matching_round, len(self.rounds)) - 1
        found = self.rounds[index] if index >= 0 else []
        return FindCandidatesOutput(
            candidates=[c for c in found if c.organisation_id not in data.exclude]
        )

    @activity.defn(name="notify")
    async def notify(self, data: NotifyInput) -> NotifyOutput:
        if any(s.step_key == data.step_key for s in self.sent):
            return NotifyOutput(sent=0)
        self.sent.append(
            Sent(
                kind=data.kind,
                audiences=list(data.audiences),
                action=data.action,
                invite=data.invite,
                at=activity.info().current_attempt_scheduled_time,
                step_key=data.step_key,
                data=data,
            )
        )
        return NotifyOutput(sent=len(data.audiences))

    @activity.defn(name="revoke_tokens")
    async def revoke_tokens(self, data: RevokeTokensInput) -> int:
        self.revoked.append(data.action)
        return 0

    @activity.defn(name="update_candidate")
    async def update_candidate(self, data: UpdateCandidateInput) -> None:
        self.candidate_updates.append(data)

    @activity.defn(name="record_survey")
    async def record_survey(self, data: RecordSurveyInput) -> None:
        self.surveys.append(data)

    def kinds(self) -> list[str]:
        return [s.kind for s in self.sent]

    def event_kinds(self) -> list[str]:
        return [e.kind for e in self.events]

    def sent_of(self, kind: str) -> list[Sent]:
        return [s for s in self.sent if s.kind == kind]

    async def wait_sent(self, kind: str, count: int = 1) -> list[Sent]:
        """The notifications of `kind` once at least `count` have gone out."""

        def enough() -> list[Sent]:
            found = self.sent_of(kind)
            return found if len(found) >= count else []

        return await eventually(enough, what=f"{count} of {kind} sent")

    async def wait_event(self, kind: str) -> None:
        await eventually(lambda: kind in self.event_kinds(), what=f"event {kind} recorded")
