"""The exchange lifecycle (DESIGN section 2) as one durable workflow per exchange.

Deterministic code only: side effects are activities, time is `workflow.now()`, waits are
timers. Human decisions arrive as Updates whose validators refuse a decision that does not fit
the stage (WrongStage, HTTP 409) or the actor (WrongActor, 403) before it reaches history.
"""

import contextlib
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.records import RecordEventInput
    from activities.types import (
        FindCandidatesInput,
        FindCandidatesOutput,
        NotifyInput,
        RecordSurveyInput,
        RevokeTokensInput,
        UpdateCandidateInput,
    )
    from ce4big.domain import Outcome, Stage
    from ce4big.lifecycle import (
        INVALID_DECISION,
        PARTNER,
        REQUESTER,
        WRONG_ACTOR,
        WRONG_STAGE,
        Actor,
        Amendment,
        CandidateInfo,
        CandidateState,
        Closure,
        DecisionResult,
        ExchangeInput,
        ExchangeState,
        HostReviewDecision,
        IntroductionAnswer,
        Meeting,
        MeetingCancellation,
        NotHeldReport,
        OutcomeWaveInput,
        Proposal,
        ShortlistDecision,
        SlotData,
        SlotPick,
        SlotProposal,
        SurveyAnswer,
        VettingDecision,
    )

RECORD_OPTIONS: dict[str, Any] = {
    "start_to_close_timeout": timedelta(seconds=30),
    "retry_policy": RetryPolicy(
        maximum_interval=timedelta(minutes=1), non_retryable_error_types=["UnknownExchange"]
    ),
}
# Mail keeps retrying through an SMTP outage for a day; a permanent refusal stops at once.
NOTIFY_OPTIONS: dict[str, Any] = {
    "start_to_close_timeout": timedelta(minutes=2),
    "schedule_to_close_timeout": timedelta(days=1),
    "retry_policy": RetryPolicy(
        initial_interval=timedelta(seconds=2),
        maximum_interval=timedelta(minutes=10),
        non_retryable_error_types=["UnknownExchange", "PermanentEmailError", "EmailContextError"],
    ),
}
MATCH_OPTIONS: dict[str, Any] = {
    "start_to_close_timeout": timedelta(minutes=2),
    "retry_policy": RetryPolicy(
        maximum_interval=timedelta(minutes=1), non_retryable_error_types=["UnknownExchange"]
    ),
}

VETTING_DECISIONS = frozenset({"approve", "reject", "request_changes"})
SURVEY_OUTCOMES = frozenset(
    {
        "did_not_take_place",
        "insufficient_interest",
        "informative_no_cooperation",
        "cooperation_possible",
    }
)
HOME_BROKERS = "home_brokers"
MANAGERS = "managers"


class ClosedError(Exception):
    """Ends the lifecycle early: withdrawn, cancelled, rejected, expired or no partner."""

    def __init__(self, outcome: Outcome, reason: str = "", *, tell_contacted: bool = True):
        super().__init__(outcome.value)
        self.outcome = outcome
        self.reason = reason
        self.tell_contacted = tell_contacted


def refuse(kind: str, message: str) -> ApplicationError:
    return ApplicationError(message, type=kind, non_retryable=True)


def partner_audience(organisation_id: str) -> str:
    return f"partner:{organisation_id}"


def host_audience(cluster: str) -> str:
    return f"host_brokers:{cluster}"


@workflow.defn
class ExchangeWorkflow:
    @workflow.init
    def __init__(self, data: ExchangeInput) -> None:
        self._data = data
        self._t = data.timings
        self._stage = Stage.VETTING
        self._waiting_on: list[str] = ["home_broker"]
        self._since = workflow.now()
        self._deadline: datetime | None = None
        self._outcome: Outcome | None = None
        self._seq = 0
        self._contacted: list[str] = []
        self._closure: tuple[Outcome, Closure] | None = None
        # Decisions, each set by its update handler and consumed by the lifecycle.
        self._vetting: VettingDecision | None = None
        self._amendment: Amendment | None = None
        self._shortlist: list[str] | None = None
        self._candidates: dict[str, CandidateState] = {}
        self._ranking: list[str] = []
        self._asked: list[str] = []
        self._current: str | None = None
        self._answer: IntroductionAnswer | None = None
        self._partner: str | None = None
        self._proposal: Proposal | None = None
        self._pick: SlotPick | None = None
        self._rounds = 0
        self._proposals = 0
        self._announced = 0
        self._meeting: Meeting | None = None
        self._meeting_version = 0
        self._reopened = False
        self._closing = False
        # Invites of one exchange share a UID: every invite sent raises this, so calendars apply it.
        self._invite_sequence = -1
        self._previous_start: str | None = None
        self._survey_open = False
        self._not_held: NotHeldReport | None = None
        self._survey: dict[str, SurveyAnswer] = {}
        self._matching_rounds = 0
        # The last decision of each kind, so that a repeated click is acknowledged, not refused.
        self._applied: dict[str, Any] = {}

    # ------------------------------------------------------------------ lifecycle

    @workflow.run
    async def run(self, data: ExchangeInput) -> str:
        try:
            await self._lifecycle()
            outcome, reason, tell = Outcome.COMPLETED, "", False
        except ClosedError as closed:
            outcome, reason, tell = closed.outcome, closed.reason, closed.tell_contacted
        await self._close(outcome, reason, tell_contacted=tell)
        return outcome.value

    async def _lifecycle(self) -> None:
        await self._record("submitted")
        await self._notify("request_received", [REQUESTER])
        await self._run_vetting()
        for matching_round in (1, 2):
            if await self._run_matching(matching_round) and await self._run_introductions():
                break
            if matching_round == 2:
                raise ClosedError(Outcome.NO_PARTNER)
        while True:
            await self._run_scheduling()
            if await self._run_meeting_and_follow_up():
                return

    async def _run_vetting(self) -> None:
        t = self._t
        while True:
            # A decision may arrive before the first wait (the stage is vetting from the start),
            # so it is cleared only once consumed.
            self._enter(Stage.VETTING, ["home_broker"], t.vetting_escalation)
            await self._notify("vetting_needed", [HOME_BROKERS], action="vet")
            await self._wait(
                lambda: self._vetting is not None,
                reminders=[
                    (
                        t.vetting_reminder,
                        lambda: self._notify("vetting_reminder", [HOME_BROKERS], action="vet"),
                    ),
                    (
                        t.vetting_escalation,
                        lambda: self._notify("vetting_escalation", [MANAGERS], action="view"),
                    ),
                ],
            )
            decision = self._vetting
            assert decision is not None
            await self._record(
                f"vetting_{decision.decision}", actor=decision.actor, note=decision.note
            )
            await self._revoke("vet")
            if decision.decision == "approve":
                await self._notify("request_approved", [REQUESTER])
                return
            if decision.decision == "reject":
                await self._notify("request_rejected", [REQUESTER], reason=decision.note)
                raise ClosedError(Outcome.REJECTED, decision.note, tell_contacted=False)
            self._vetting = None
            self._applied.pop("vet", None)
            self._amendment = None
            self._applied.pop("amend", None)
            self._enter(Stage.CHANGES_REQUESTED, ["requester"], t.changes_expiry)
            await self._notify("changes_requested", [REQUESTER], action="amend", note=decision.note)
            amended = await self._wait(
                lambda: self._amendment is not None,
                reminders=[
                    (
                        t.changes_reminder,
                        partial(
                            self._notify,
                            "changes_reminder",
                            [REQUESTER],
                            action="amend",
                            note=decision.note,
                        ),
                    ),
                ],
                deadline=t.changes_expiry,
            )
            await self._revoke("amend")
            if not amended:
                raise ClosedError(Outcome.EXPIRED, "the requested changes were not made in time")
            assert self._amendment is not None
            await self._record("amended", actor=self._amendment.actor, note=self._amendment.note)

    async def _run_matching(self, matching_round: int) -> bool:
        """Candidates, shortlist and host review; False when nobody is left to ask."""
        t = self._t
        self._matching_rounds = matching_round
        self._shortlist = None
        self._applied.pop("shortlist", None)
        self._enter(Stage.MATCHING, ["home_broker"], t.shortlist_escalation)
        found: FindCandidatesOutput = await workflow.execute_activity(
            "find_candidates",
            FindCandidatesInput(
                exchange_id=self._data.exchange_id,
                exclude=list(self._asked),
                matching_round=matching_round,
            ),
            result_type=FindCandidatesOutput,
            **MATCH_OPTIONS,
        )
        self._store_candidates(found.candidates)
        await self._record("candidates_found", count=len(found.candidates), round=matching_round)
        if not self._ranking:
            return False
        await self._notify(
            "shortlist_needed",
            [HOME_BROKERS],
            action="shortlist",
            candidate_count=len(found.candidates),
        )
        await self._wait(
            lambda: self._shortlist is not None,
            reminders=[
                (
                    t.shortlist_reminder,
                    lambda: self._notify("shortlist_reminder", [HOME_BROKERS], action="shortlist"),
                ),
                (
                    t.shortlist_escalation,
                    lambda: self._notify("shortlist_escalation", [MANAGERS], action="view"),
                ),
            ],
        )
        await self._revoke("shortlist")
        shortlist: list[str] = list(self._shortlist or [])
        await self._record("shortlisted", organisation_ids=shortlist)
        for position, organisation_id in enumerate(shortlist, start=1):
            await self._update_candidate(organisation_id, shortlist_position=position)
        await self._run_host_review(shortlist)
        return any(self._candidates[o].host_decision != "vetoed" for o in shortlist)

    async def _run_host_review(self, shortlist: list[str]) -> None:
        clusters = sorted({self._candidates[o].cluster for o in shortlist})
        self._enter(
            Stage.HOST_REVIEW, [f"host_broker:{c}" for c in clusters], self._t.host_review_consent
        )
        for organisation_id in shortlist:
            candidate = self._candidates[organisation_id]
            await self._notify(
                "host_review_request",
                [host_audience(candidate.cluster)],
                action="host_review",
                step=f"host_review:{organisation_id}",
                organisation_id=organisation_id,
            )
        await self._wait(
            lambda: all(self._candidates[o].host_decision for o in shortlist),
            deadline=self._t.host_review_consent,
        )
        await self._revoke("host_review")
        for organisation_id in shortlist:
            candidate = self._candidates[organisation_id]
            # Silence until the deadline counts as consent.
            candidate.host_decision = candidate.host_decision or "consented"
            await self._update_candidate(organisation_id, host_decision=candidate.host_decision)
        await self._record(
            "host_review_done",
            decisions={o: self._candidates[o].host_decision for o in shortlist},
        )

    async def _run_introductions(self) -> bool:
        """Ask the endorsed candidates one at a time; True once one accepts."""
        t = self._t
        shortlist = [o for o in (self._shortlist or []) if o not in self._asked]
        endorsed = [o for o in shortlist if self._candidates[o].host_decision != "vetoed"]
        for index, organisation_id in enumerate(endorsed):
            self._current = organisation_id
            self._answer = None
            self._asked.append(organisation_id)
            audience = partner_audience(organisation_id)
            self._enter(Stage.INTRODUCTION, [audience], t.partner_deadline)
            self._candidates[organisation_id].intro_status = "asked"
            await self._update_candidate(organisation_id, intro_status="asked")
            await self._notify(
                "introduction_request",
                [audience],
                action="introduction",
                organisation_id=organisation_id,
            )
            answered = await self._wait(
                lambda: self._answer is not None,
                reminders=[
                    (
                        t.partner_reminder,
                        partial(
                            self._notify,
                            "introduction_reminder",
                            [audience],
                            action="introduction",
                            organisation_id=organisation_id,
                        ),
                    ),
                ],
                deadline=t.partner_deadline,
            )
            await self._revoke("introduction")
            answer = self._answer
            if answered and answer is not None and answer.accept:
                self._candidates[organisation_id].intro_status = "accepted"
                self._partner = organisation_id
                self._current = None
                await self._update_candidate(organisation_id, intro_status="accepted")
                await self._record(
                    "introduction_accepted", actor=answer.actor, organisation_id=organisation_id
                )
                # Scheduling opens before the e-mails go: the requester's link must work at once.
                self._enter(Stage.SCHEDULING, [REQUESTER], t.scheduling_deadline)
                # Double opt-in: contact details go out only now, to both sides.
                await self._notify(
                    "introduction_made",
                    [REQUESTER],
                    action="slots",
                    side=REQUESTER,
                    organisation_id=organisation_id,
                )
                await self._notify(
                    "introduction_made", [audience], side=PARTNER, organisation_id=organisation_id
                )
                return True
            status = "declined" if answered else "no_answer"
            reason = answer.reason if answer is not None else ""
            self._candidates[organisation_id].intro_status = status
            await self._update_candidate(organisation_id, intro_status=status, intro_reason=reason)
            await self._record(
                f"introduction_{status}",
                actor=answer.actor if answer is not None else None,
                organisation_id=organisation_id,
                reason=reason,
            )
            last = index == len(endorsed) - 1
            await self._notify(
                "partner_declined",
                [REQUESTER, HOME_BROKERS],
                step=f"partner_declined:{organisation_id}",
                organisation_id=organisation_id,
                reason=reason,
                next_step="back_to_matching" if last else "next_candidate",
            )
        self._current = None
        return False

    async def _run_scheduling(self) -> None:
        """Until a slot is picked: proposals, counter-proposals, reminders, the broker's help.

        A proposal may already be open on entry: a reschedule asked for while the meeting stood.
        """
        t = self._t
        asked_broker = False
        while self._pick is None:
            if self._proposal is not None and self._announced != self._proposal.number:
                self._announced = self._proposal.number
                await self._announce_proposal(self._proposal)
                continue
            waiting = [self._waiting_side()]
            self._enter(Stage.SCHEDULING, waiting, t.scheduling_deadline)
            version = self._meeting_version
            changed = await self._wait(
                partial(self._meeting_changed_since, version),
                reminders=[(t.scheduling_reminder, partial(self._scheduling_reminder, waiting[0]))],
                deadline=t.scheduling_deadline,
            )
            if changed:
                continue
            if asked_broker:
                raise ClosedError(Outcome.EXPIRED, "no meeting could be scheduled")
            asked_broker = True
            await self._notify(
                "scheduling_stuck", [HOME_BROKERS], action="view", rounds=self._rounds
            )
        await self._revoke("slots")

    def _restart_scheduling(self) -> None:
        # Decisions about the old meeting are spent: the same words now mean a new decision.
        for kind in ("propose", "pick", "cancel_meeting", "not_held"):
            self._applied.pop(kind, None)
        self._meeting = None
        self._proposal = None
        self._pick = None
        self._rounds = 0

    async def _run_meeting_and_follow_up(self) -> bool:
        """The meeting, then the survey; False when scheduling has to start again."""
        t = self._t
        meeting = self._meeting
        assert meeting is not None
        attendees = self._attendees()
        self._invite_sequence += 1
        meeting.sequence = self._invite_sequence
        previous_start, self._previous_start = self._previous_start, None
        kind = "meeting_rescheduled" if previous_start else "meeting_confirmed"
        start = datetime.fromisoformat(meeting.start)
        end = datetime.fromisoformat(meeting.end)
        scaled_end = max(0.0, (end - workflow.now()).total_seconds() / t.time_scale)
        # The stage moves before the e-mails go: a cancel may arrive while they are sent.
        self._enter(Stage.MEETING_SCHEDULED, [], scaled_end)
        version = self._meeting_version
        await self._record(
            "meeting_scheduled", start=meeting.start, end=meeting.end, sequence=meeting.sequence
        )
        await self._notify(
            kind,
            attendees,
            step=f"{kind}:{meeting.sequence}",
            invite="REQUEST",
            previous_start=previous_start,
        )
        until_start = max(0.0, (start - workflow.now()).total_seconds() / t.time_scale)
        until_end = max(0.0, (end - workflow.now()).total_seconds() / t.time_scale)
        reminder_at = max(0.0, until_start - t.meeting_reminder_before)
        changed = await self._wait(
            lambda: self._meeting_version != version,
            reminders=[
                (
                    reminder_at,
                    lambda: self._notify(
                        "meeting_reminder", attendees, step=f"meeting_reminder:{meeting.sequence}"
                    ),
                )
            ],
            deadline=until_end,
        )
        if changed:
            return await self._meeting_changed(meeting, attendees)
        meeting.status = "held"
        await self._record("meeting_held")
        return await self._run_follow_up()

    async def _meeting_changed(self, meeting: Meeting, attendees: list[str]) -> bool:
        if meeting.status == "cancelled":
            await self._record("meeting_cancelled")
            await self._send_cancellation(meeting, attendees, "")
            self._restart_scheduling()
        else:
            await self._record("reschedule_requested")
        return False

    async def _run_follow_up(self) -> bool:
        t = self._t
        self._not_held = None
        self._enter(Stage.FOLLOW_UP, [], t.survey_delay)
        reported = await self._wait(lambda: self._not_held is not None, deadline=t.survey_delay)
        if reported:
            return await self._reopen_scheduling()
        sides = [REQUESTER, PARTNER]
        self._survey = {}
        self._survey_open = True
        self._enter(Stage.FOLLOW_UP, sides, t.survey_close)
        partner = partner_audience(self._partner or "")
        await self._notify("survey_invitation", [REQUESTER, partner], action="survey")
        await self._wait(
            lambda: len(self._survey) == 2 or self._not_held is not None,
            reminders=[(t.survey_reminder, self._survey_reminder)],
            deadline=t.survey_close,
        )
        self._survey_open = False
        if self._not_held is not None and not self._reopened:
            await self._revoke("survey")
            return await self._reopen_scheduling()
        await self._revoke("survey")
        for side, answer in sorted(self._survey.items()):
            await workflow.execute_activity(
                "record_survey",
                RecordSurveyInput(
                    exchange_id=self._data.exchange_id,
                    respondent=side,
                    wave="survey",
                    outcome=answer.outcome,
                    satisfaction=answer.satisfaction,
                    recommend=answer.recommend,
                    comment=answer.comment,
                ),
                **RECORD_OPTIONS,
            )
            await self._record(
                "survey_answered", actor=answer.actor, side=side, answer=answer.outcome
            )
        await self._record("survey_closed", answered=sorted(self._survey))
        return True

    async def _reopen_scheduling(self) -> bool:
        assert self._not_held is not None and self._meeting is not None
        self._reopened = True
        self._meeting.status = "not_held"
        await self._record("meeting_not_held", actor=self._not_held.actor, note=self._not_held.note)
        self._restart_scheduling()
        self._survey = {}
        return False

    async def _close(self, outcome: Outcome, reason: str, *, tell_contacted: bool) -> None:
        self._closing = True
        self._outcome = outcome
        actor = self._closure[1].actor if self._closure else None
        await self._revoke(None)
        meeting = self._meeting
        # A meeting still in calendars (also one waiting to be rescheduled) is taken out.
        if meeting is not None and meeting.status in ("confirmed", "rescheduling"):
            meeting.status = "cancelled"
            await self._send_cancellation(meeting, self._attendees(), reason)
        if tell_contacted:
            audiences = [a for a in self._contacted if a != MANAGERS]
            await self._notify("exchange_closed", audiences, outcome=outcome.value, reason=reason)
        self._enter(Stage.CLOSED, [], None)
        result = self._result() if outcome == Outcome.COMPLETED else None
        await self._record(
            "closed", actor=actor, outcome=outcome.value, reason=reason, result=result
        )
        if outcome == Outcome.COMPLETED and self._t.outcome_wave > 0 and self._partner:
            await workflow.start_child_workflow(
                "OutcomeWaveWorkflow",
                OutcomeWaveInput(
                    exchange_id=self._data.exchange_id,
                    partner_organisation_id=self._partner,
                    requester_id=self._data.requester_id,
                    timings=self._t,
                ),
                id=f"exchange-{self._data.exchange_id}-outcome",
                parent_close_policy=workflow.ParentClosePolicy.ABANDON,
            )

    # ------------------------------------------------------------------ helpers

    def _attendees(self) -> list[str]:
        return [REQUESTER, partner_audience(self._partner or ""), HOME_BROKERS]

    async def _send_cancellation(self, meeting: Meeting, attendees: list[str], reason: str) -> None:
        self._invite_sequence += 1
        meeting.sequence = self._invite_sequence
        await self._notify(
            "meeting_cancelled",
            attendees,
            step=f"meeting_cancelled:{meeting.sequence}",
            invite="CANCEL",
            reason=reason,
        )

    def _enter(self, stage: Stage, waiting_on: list[str], deadline: float | None) -> None:
        self._stage = stage
        self._waiting_on = waiting_on
        self._since = workflow.now()
        self._deadline = self._since + timedelta(seconds=deadline) if deadline is not None else None

    async def _wait(
        self,
        done: Callable[[], bool],
        *,
        reminders: Sequence[tuple[float, Callable[[], Awaitable[Any]]]] = (),
        deadline: float | None = None,
    ) -> bool:
        """Wait for `done`, running each reminder at its offset unless `done` came first.

        True when `done`, False at the deadline; raises ClosedError on withdraw or cancel.
        """
        start = workflow.now()

        def ready() -> bool:
            return done() or self._closure is not None

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
            self._raise_if_closed()
            if done():
                return True
            # Checked again after the timer: a decision in the same task wins over a reminder.
            await remind()
        await until(deadline)
        self._raise_if_closed()
        return done()

    def _raise_if_closed(self) -> None:
        if self._closure is not None:
            outcome, closure = self._closure
            raise ClosedError(outcome, closure.reason)

    def _store_candidates(self, found: list[CandidateInfo]) -> None:
        self._ranking = [c.organisation_id for c in found]
        for c in found:
            self._candidates.setdefault(
                c.organisation_id,
                CandidateState(
                    organisation_id=c.organisation_id,
                    name=c.name,
                    cluster=c.cluster,
                    score=c.score,
                    reasons=list(c.reasons),
                ),
            )

    def _waiting_side(self) -> str:
        if self._proposal is None:
            return REQUESTER
        return PARTNER if self._proposal.by == REQUESTER else REQUESTER

    def _side_audience(self, side: str) -> str:
        return REQUESTER if side == REQUESTER else partner_audience(self._partner or "")

    async def _announce_proposal(self, proposal: Proposal) -> None:
        other = PARTNER if proposal.by == REQUESTER else REQUESTER
        await self._record(
            "slots_proposed",
            by=proposal.by,
            round=proposal.round,
            slots=[s.start for s in proposal.slots],
        )
        await self._notify(
            "slots_proposed",
            [self._side_audience(other)],
            action="slots",
            step=f"slots_proposed:{proposal.number}",
            side=other,
        )

    async def _scheduling_reminder(self, side: str) -> None:
        if self._proposal is None:
            return
        await self._notify(
            "slots_reminder",
            [self._side_audience(side)],
            action="slots",
            step=f"slots_reminder:{self._proposal.round}",
            side=side,
        )

    async def _survey_reminder(self) -> None:
        missing = [s for s in (REQUESTER, PARTNER) if s not in self._survey]
        await self._notify(
            "survey_reminder", [self._side_audience(s) for s in missing], action="survey"
        )

    def _result(self) -> str | None:
        for side in (REQUESTER, PARTNER):
            if side in self._survey:
                return self._survey[side].outcome
        return None

    def _next_key(self, kind: str) -> str:
        self._seq += 1
        return f"exchange-{self._data.exchange_id}:{self._seq}:{kind}"

    async def _record(
        self,
        kind: str,
        *,
        actor: Actor | None = None,
        outcome: str | None = None,
        result: str | None = None,
        **detail: Any,
    ) -> None:
        await workflow.execute_activity(
            "record_event",
            RecordEventInput(
                exchange_id=self._data.exchange_id,
                event_key=self._next_key(kind),
                kind=kind,
                actor=actor.email if actor else "system",
                detail={k: v for k, v in detail.items() if v not in (None, "")},
                at=workflow.now(),
                status=self._stage.value,
                outcome=outcome,
                result=result,
            ),
            **RECORD_OPTIONS,
        )

    async def _notify(
        self,
        kind: str,
        audiences: list[str],
        *,
        action: str | None = None,
        step: str | None = None,
        invite: str | None = None,
        **extra: Any,
    ) -> None:
        """Send one e-mail kind to audiences; a mail that cannot go is recorded, not fatal."""
        if not audiences:
            return
        for audience in audiences:
            if audience not in self._contacted:
                self._contacted.append(audience)
        key = self._next_key(step or kind)
        try:
            await workflow.execute_activity(
                "notify",
                NotifyInput(
                    exchange_id=self._data.exchange_id,
                    kind=kind,
                    audiences=audiences,
                    step_key=key,
                    action=action,
                    invite=invite,
                    meeting=self._meeting,
                    proposal=self._proposal,
                    deadline=self._deadline,
                    since=self._since,
                    extra=extra,
                ),
                **NOTIFY_OPTIONS,
            )
        except ActivityError as err:
            workflow.logger.warning("e-mail %s to %s failed: %s", kind, audiences, err.cause)
            await self._record(
                "email_failed", email_kind=kind, audiences=audiences, error=str(err.cause)
            )

    async def _revoke(self, action: str | None) -> None:
        await workflow.execute_activity(
            "revoke_tokens",
            RevokeTokensInput(exchange_id=self._data.exchange_id, action=action),
            **RECORD_OPTIONS,
        )

    async def _update_candidate(self, organisation_id: str, **changes: Any) -> None:
        await workflow.execute_activity(
            "update_candidate",
            UpdateCandidateInput(
                exchange_id=self._data.exchange_id, organisation_id=organisation_id, **changes
            ),
            **RECORD_OPTIONS,
        )

    # ------------------------------------------------------------------ who may decide

    def _is_home_broker(self, actor: Actor) -> bool:
        return actor.role == "broker" and actor.cluster == self._data.home_cluster

    def _is_requester(self, actor: Actor) -> bool:
        return actor.user_id is not None and actor.user_id == self._data.requester_id

    def _side_of(self, actor: Actor) -> str | None:
        if self._is_requester(actor):
            return REQUESTER
        if actor.role == PARTNER and self._partner and actor.organisation_id == self._partner:
            return PARTNER
        return None

    def _require_stage(self, *stages: Stage) -> None:
        if self._stage not in stages:
            expected = " or ".join(s.value for s in stages)
            raise refuse(
                WRONG_STAGE, f"the exchange is at stage {self._stage.value}, not {expected}"
            )

    def _repeat(self, kind: str, value: Any) -> bool:
        return kind in self._applied and bool(self._applied[kind] == value)

    def _meeting_changed_since(self, version: int) -> bool:
        return self._meeting_version != version

    # ------------------------------------------------------------------ updates
    #
    # Each validator first acknowledges an exact repeat of the decision last applied (a double
    # click answers like the first), then checks the actor, the input and the stage.

    @workflow.update
    def vet(self, decision: VettingDecision) -> DecisionResult:
        if self._repeat("vet", decision):
            return self._already()
        self._vetting = decision
        self._applied["vet"] = decision
        return self._accepted()

    @vet.validator
    def _validate_vet(self, decision: VettingDecision) -> None:
        if self._repeat("vet", decision):
            return
        if not self._is_home_broker(decision.actor):
            raise refuse(WRONG_ACTOR, "only a broker of the requester's cluster vets a request")
        if decision.decision not in VETTING_DECISIONS:
            raise refuse(
                INVALID_DECISION,
                f"decision: {decision.decision!r} is not one of approve, reject, request_changes",
            )
        if decision.decision != "approve" and not decision.note.strip():
            raise refuse(INVALID_DECISION, "note: a reason is needed to reject or ask for changes")
        self._require_stage(Stage.VETTING)
        if self._vetting is not None:
            raise self._out_of_stage("the request has already been vetted")

    @workflow.update
    def amend(self, amendment: Amendment) -> DecisionResult:
        if self._repeat("amend", amendment):
            return self._already()
        self._amendment = amendment
        self._applied["amend"] = amendment
        return self._accepted()

    @amend.validator
    def _validate_amend(self, amendment: Amendment) -> None:
        if self._repeat("amend", amendment):
            return
        if not self._is_requester(amendment.actor):
            raise refuse(WRONG_ACTOR, "only the requester amends the request")
        self._require_stage(Stage.CHANGES_REQUESTED)
        if self._amendment is not None:
            raise self._out_of_stage("the request has already been amended")

    @workflow.update
    def set_shortlist(self, decision: ShortlistDecision) -> DecisionResult:
        if self._repeat("shortlist", decision):
            return self._already()
        self._shortlist = list(decision.organisation_ids)
        self._applied["shortlist"] = decision
        return self._accepted()

    @set_shortlist.validator
    def _validate_shortlist(self, decision: ShortlistDecision) -> None:
        if self._repeat("shortlist", decision):
            return
        if not self._is_home_broker(decision.actor):
            raise refuse(WRONG_ACTOR, "only a broker of the requester's cluster sets the shortlist")
        self._require_stage(Stage.MATCHING)
        if self._shortlist is not None:
            raise self._out_of_stage("the shortlist is already set")
        ids = decision.organisation_ids
        if not 1 <= len(ids) <= self._data.max_shortlist:
            raise refuse(
                INVALID_DECISION,
                f"organisation_ids: choose 1 to {self._data.max_shortlist} candidates",
            )
        if len(set(ids)) != len(ids):
            raise refuse(INVALID_DECISION, "organisation_ids: a candidate appears twice")
        unknown = [o for o in ids if o not in self._ranking]
        if unknown:
            raise refuse(
                INVALID_DECISION,
                f"organisation_ids: not candidates of this exchange: {', '.join(unknown)}",
            )

    @workflow.update
    def host_review(self, decision: HostReviewDecision) -> DecisionResult:
        candidate = self._candidates[decision.organisation_id]
        wanted = "endorsed" if decision.decision == "endorse" else "vetoed"
        if candidate.host_decision == wanted:
            return self._already()
        candidate.host_decision = wanted
        return self._accepted()

    @host_review.validator
    def _validate_host_review(self, decision: HostReviewDecision) -> None:
        if decision.decision not in ("endorse", "veto"):
            raise refuse(INVALID_DECISION, "decision: must be endorse or veto")
        candidate = self._candidates.get(decision.organisation_id)
        if candidate is None or decision.organisation_id not in (self._shortlist or []):
            raise refuse(
                INVALID_DECISION,
                f"organisation_id: {decision.organisation_id!r} is not on this exchange's "
                "shortlist",
            )
        if not (decision.actor.role == "broker" and decision.actor.cluster == candidate.cluster):
            raise refuse(
                WRONG_ACTOR, f"only a broker of {candidate.cluster} reviews this candidate"
            )
        wanted = "endorsed" if decision.decision == "endorse" else "vetoed"
        if candidate.host_decision == wanted:
            return
        self._require_stage(Stage.HOST_REVIEW)
        if candidate.host_decision is not None:
            raise self._out_of_stage(f"this candidate is already {candidate.host_decision}")

    @workflow.update
    def answer_introduction(self, answer: IntroductionAnswer) -> DecisionResult:
        if self._repeat("introduction", answer):
            return self._already()
        self._answer = answer
        self._applied["introduction"] = answer
        return self._accepted()

    @answer_introduction.validator
    def _validate_introduction(self, answer: IntroductionAnswer) -> None:
        if self._repeat("introduction", answer):
            return
        if answer.actor.role != PARTNER or answer.actor.organisation_id != answer.organisation_id:
            raise refuse(WRONG_ACTOR, "only the asked partner answers an introduction")
        self._require_stage(Stage.INTRODUCTION)
        if self._current != answer.organisation_id or self._answer is not None:
            raise self._out_of_stage("this introduction is no longer open")

    @workflow.update
    def propose_slots(self, proposal: SlotProposal) -> DecisionResult:
        if self._repeat("propose", proposal):
            return self._already()
        side = self._side_of(proposal.actor)
        assert side is not None
        if self._stage == Stage.MEETING_SCHEDULED and self._meeting is not None:
            # A new proposal while a meeting stands is a reschedule request.
            self._meeting.status = "rescheduling"
            self._previous_start = self._meeting.start
            self._applied.pop("pick", None)
            self._pick = None
            self._rounds = 0
        self._rounds += 1
        self._proposals += 1
        self._proposal = Proposal(
            by=side,
            slots=list(proposal.slots),
            timezone=proposal.timezone,
            mode=proposal.mode,
            location=proposal.location,
            round=self._rounds,
            number=self._proposals,
        )
        self._applied["propose"] = proposal
        self._meeting_version += 1
        return self._accepted()

    @propose_slots.validator
    def _validate_propose(self, proposal: SlotProposal) -> None:
        if self._repeat("propose", proposal):
            return
        side = self._side_of(proposal.actor)
        if side is None:
            raise refuse(WRONG_ACTOR, "only the requester or the introduced partner proposes slots")
        problem = _slot_problem(proposal.slots, self._data.max_slots)
        if problem:
            raise refuse(INVALID_DECISION, problem)
        self._require_stage(Stage.SCHEDULING, Stage.MEETING_SCHEDULED)
        if self._stage == Stage.MEETING_SCHEDULED:
            if self._meeting is None or self._meeting.status != "confirmed":
                raise self._out_of_stage("there is no confirmed meeting to reschedule")
            return
        if self._waiting_side() != side:
            raise self._out_of_stage("the other side has to answer the current proposal")
        if self._proposal is not None and self._rounds >= self._data.max_slot_rounds:
            raise refuse(
                WRONG_STAGE,
                f"at most {self._data.max_slot_rounds} rounds of proposals: "
                "pick one of the proposed slots",
            )

    @workflow.update
    def pick_slot(self, pick: SlotPick) -> DecisionResult:
        if self._repeat("pick", pick):
            return self._already()
        proposal = self._proposal
        assert proposal is not None
        slot = next(s for s in proposal.slots if _same_instant(s.start, pick.start))
        self._meeting = Meeting(
            start=slot.start,
            end=slot.end,
            timezone=proposal.timezone,
            mode=proposal.mode,
            location=proposal.location,
            sequence=self._invite_sequence,
        )
        self._pick = pick
        self._applied["pick"] = pick
        self._meeting_version += 1
        return self._accepted()

    @pick_slot.validator
    def _validate_pick(self, pick: SlotPick) -> None:
        if self._repeat("pick", pick):
            return
        side = self._side_of(pick.actor)
        if side is None:
            raise refuse(WRONG_ACTOR, "only the requester or the introduced partner picks a slot")
        self._require_stage(Stage.SCHEDULING)
        proposal = self._proposal
        if proposal is None or self._pick is not None:
            raise self._out_of_stage("there is no open proposal to pick from")
        if proposal.by == side:
            raise refuse(WRONG_ACTOR, "the other side picks from your proposal")
        if not any(_same_instant(s.start, pick.start) for s in proposal.slots):
            raise refuse(INVALID_DECISION, "start: not the start of a proposed slot")

    @workflow.update
    def cancel_meeting(self, cancellation: MeetingCancellation) -> DecisionResult:
        if self._repeat("cancel_meeting", cancellation):
            return self._already()
        assert self._meeting is not None
        self._meeting.status = "cancelled"
        self._applied["cancel_meeting"] = cancellation
        self._meeting_version += 1
        return self._accepted()

    @cancel_meeting.validator
    def _validate_cancel_meeting(self, cancellation: MeetingCancellation) -> None:
        if self._repeat("cancel_meeting", cancellation):
            return
        if self._side_of(cancellation.actor) is None:
            raise refuse(WRONG_ACTOR, "only the requester or the partner cancels the meeting")
        self._require_stage(Stage.MEETING_SCHEDULED)
        if self._meeting is None or self._meeting.status != "confirmed":
            raise self._out_of_stage("there is no confirmed meeting to cancel")

    @workflow.update
    def report_not_held(self, report: NotHeldReport) -> DecisionResult:
        if self._repeat("not_held", report):
            return self._already()
        self._not_held = report
        self._applied["not_held"] = report
        return self._accepted()

    @report_not_held.validator
    def _validate_not_held(self, report: NotHeldReport) -> None:
        if self._repeat("not_held", report):
            return
        if self._side_of(report.actor) is None:
            raise refuse(WRONG_ACTOR, "only the requester or the partner reports on the meeting")
        self._require_stage(Stage.FOLLOW_UP)
        if self._reopened or self._not_held is not None:
            raise self._out_of_stage("scheduling was already reopened once for this exchange")

    @workflow.update
    def answer_survey(self, answer: SurveyAnswer) -> DecisionResult:
        side = self._side_of(answer.actor)
        assert side is not None
        if self._survey.get(side) == answer:
            return self._already()
        self._survey[side] = answer
        self._waiting_on = [s for s in self._waiting_on if s != side]
        if answer.outcome == "did_not_take_place" and not self._reopened:
            self._not_held = NotHeldReport(actor=answer.actor, note=answer.comment)
        return self._accepted()

    @answer_survey.validator
    def _validate_survey(self, answer: SurveyAnswer) -> None:
        side = self._side_of(answer.actor)
        if side is None:
            raise refuse(WRONG_ACTOR, "only the requester or the partner answers the survey")
        if self._survey.get(side) == answer:
            return
        if answer.outcome not in SURVEY_OUTCOMES:
            raise refuse(
                INVALID_DECISION, f"outcome: must be one of {', '.join(sorted(SURVEY_OUTCOMES))}"
            )
        if answer.satisfaction is not None and not 1 <= answer.satisfaction <= 5:
            raise refuse(INVALID_DECISION, "satisfaction: must be 1 to 5")
        if answer.recommend is not None and not 0 <= answer.recommend <= 10:
            raise refuse(INVALID_DECISION, "recommend: must be 0 to 10")
        self._require_stage(Stage.FOLLOW_UP)
        if not self._survey_open:
            raise self._out_of_stage("the survey is not open yet")
        if side in self._survey:
            raise self._out_of_stage("this side has already answered the survey")

    @workflow.update
    def withdraw(self, closure: Closure) -> DecisionResult:
        if self._closure is None:
            self._closure = (Outcome.WITHDRAWN, closure)
        return self._accepted()

    @withdraw.validator
    def _validate_withdraw(self, closure: Closure) -> None:
        if not self._is_requester(closure.actor):
            raise refuse(WRONG_ACTOR, "only the requester withdraws the request")
        self._require_open(Outcome.WITHDRAWN)

    @workflow.update
    def cancel(self, closure: Closure) -> DecisionResult:
        if self._closure is None:
            self._closure = (Outcome.CANCELLED, closure)
        return self._accepted()

    @cancel.validator
    def _validate_cancel(self, closure: Closure) -> None:
        if closure.actor.role not in ("manager", "admin"):
            raise refuse(WRONG_ACTOR, "only a manager cancels an exchange")
        self._require_open(Outcome.CANCELLED)

    def _require_open(self, outcome: Outcome) -> None:
        if self._closure is not None and self._closure[0] == outcome:
            return  # the same click twice
        if self._stage == Stage.CLOSED or self._closure is not None or self._closing:
            raise refuse(
                WRONG_STAGE,
                f"the exchange is at stage {self._stage.value}: it is closed or closing",
            )

    def _out_of_stage(self, message: str) -> ApplicationError:
        if "stage" not in message:
            message = f"{message} (the exchange is at stage {self._stage.value})"
        return refuse(WRONG_STAGE, message)

    def _accepted(self) -> DecisionResult:
        return DecisionResult(stage=self._stage.value)

    def _already(self) -> DecisionResult:
        return DecisionResult(stage=self._stage.value, detail="already decided")

    # ------------------------------------------------------------------ query

    @workflow.query
    def state(self) -> ExchangeState:
        return ExchangeState(
            stage=self._stage.value,
            waiting_on=list(self._waiting_on),
            since=self._since.isoformat(),
            deadline=self._deadline.isoformat() if self._deadline else None,
            outcome=self._outcome.value if self._outcome else None,
            candidates=[self._candidates[o] for o in self._ranking if o in self._candidates],
            shortlist=list(self._shortlist or []),
            current_candidate=self._current,
            partner=self._partner,
            proposal=self._proposal,
            meeting=self._meeting,
            survey={side: answer.outcome for side, answer in self._survey.items()},
            matching_rounds=self._matching_rounds,
        )


def _slot_problem(slots: list[SlotData], most: int) -> str | None:
    """Why these slots cannot be proposed, or None. Times must carry an offset: a naive time
    would make the meeting's timers unreadable."""
    if not 1 <= len(slots) <= most:
        return f"slots: propose 1 to {most} slots"
    for number, slot in enumerate(slots):
        try:
            start, end = datetime.fromisoformat(slot.start), datetime.fromisoformat(slot.end)
        except ValueError:
            return f"slots.{number}: not an ISO 8601 date and time"
        if start.tzinfo is None or end.tzinfo is None:
            return f"slots.{number}: the time needs an offset or zone"
        if end <= start:
            return f"slots.{number}: the end must come after the start"
    return None


def _same_instant(a: str, b: str) -> bool:
    try:
        return datetime.fromisoformat(a) == datetime.fromisoformat(b)
    except ValueError:
        return False
