"""The later outcome wave: months after an exchange closed, ask both sides what came of it.

Its own durable workflow, started by the exchange as an abandoned child, so the exchange stays
closed while this one waits; answers update the exchange's recorded result.
"""

import contextlib
from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.exchange import (
        NOTIFY_OPTIONS,
        RECORD_SURVEY_OPTIONS,
        REVOKE_TOKENS_OPTIONS,
        ExchangeActivities,
    )
    from activities.records import RECORD_EVENT_OPTIONS, RecordActivities, RecordEventInput
    from activities.types import (
        NotifyInput,
        OutcomeWaveEmail,
        RecordSurveyInput,
        RevokeTokensInput,
    )
    from ce4big.domain import Stage, WaveOutcome
    from ce4big.lifecycle import (
        INVALID_DECISION,
        PARTNER,
        REQUESTER,
        WRONG_ACTOR,
        WRONG_STAGE,
        DecisionResult,
        OutcomeAnswer,
        OutcomeWaveInput,
    )

from workflows.state import partner_audience
from workflows.validators import one_of, refuse

# The later the stage, the more it says: the recorded result is the furthest either side reached
# (WaveOutcome lists them in order of progress).
PROGRESS: tuple[str, ...] = tuple(o.value for o in WaveOutcome)


@workflow.defn
class OutcomeWaveWorkflow:
    @workflow.init
    def __init__(self, data: OutcomeWaveInput) -> None:
        self._data = data
        self._open = False
        self._answers: dict[str, OutcomeAnswer] = {}

    @workflow.run
    async def run(self, data: OutcomeWaveInput) -> str | None:
        t = data.timings
        await workflow.sleep(timedelta(seconds=t.outcome_wave))
        self._open = True
        months = max(1, round(t.outcome_wave * t.time_scale / (30 * 86400)))
        await workflow.execute_activity_method(
            ExchangeActivities.notify,
            NotifyInput(
                exchange_id=data.exchange_id,
                kind="outcome_wave",
                audiences=[REQUESTER, partner_audience(data.partner_organisation_id)],
                step_key=f"exchange-{data.exchange_id}:outcome_wave",
                action="outcome",
                email=OutcomeWaveEmail(organisation_id=data.partner_organisation_id, months=months),
            ),
            **NOTIFY_OPTIONS,
        )
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(
                lambda: len(self._answers) == 2, timeout=timedelta(seconds=t.outcome_wave_close)
            )
        self._open = False
        await workflow.execute_activity_method(
            ExchangeActivities.revoke_tokens,
            RevokeTokensInput(exchange_id=data.exchange_id, action="outcome"),
            **REVOKE_TOKENS_OPTIONS,
        )
        # An answer's record activity may still run: let it finish before the workflow does.
        await workflow.wait_condition(workflow.all_handlers_finished)
        if not self._answers:
            return None
        furthest = max(self._answers.values(), key=lambda a: PROGRESS.index(a.outcome))
        await workflow.execute_activity_method(
            RecordActivities.record_event,
            RecordEventInput(
                exchange_id=data.exchange_id,
                event_key=f"exchange-{data.exchange_id}:outcome_wave:recorded",
                kind="outcome_recorded",
                detail={side: a.outcome for side, a in sorted(self._answers.items())},
                at=workflow.now(),
                result=furthest.outcome,
                agreement_type=furthest.agreement_type,
            ),
            **RECORD_EVENT_OPTIONS,
        )
        return furthest.outcome

    @workflow.update
    async def answer_outcome(self, answer: OutcomeAnswer) -> DecisionResult:
        side = self._side(answer)
        assert side is not None
        if self._answers.get(side) == answer:
            return DecisionResult(stage=Stage.CLOSED, detail="already answered")
        self._answers[side] = answer
        await workflow.execute_activity_method(
            ExchangeActivities.record_survey,
            RecordSurveyInput(
                exchange_id=self._data.exchange_id,
                respondent=side,
                wave="outcome",
                outcome=answer.outcome,
                agreement_type=answer.agreement_type,
                comment=answer.comment,
            ),
            **RECORD_SURVEY_OPTIONS,
        )
        return DecisionResult(stage=Stage.CLOSED)

    @answer_outcome.validator
    def _validate(self, answer: OutcomeAnswer) -> None:
        side = self._side(answer)
        if side is None:
            raise refuse(WRONG_ACTOR, "only the requester or the partner reports the outcome")
        if not one_of(WaveOutcome, answer.outcome):
            raise refuse(INVALID_DECISION, f"outcome: must be one of {', '.join(PROGRESS)}")
        if self._answers.get(side) == answer:
            return
        if not self._open:
            raise refuse(WRONG_STAGE, "the outcome survey is not open")
        if side in self._answers:
            raise refuse(WRONG_STAGE, "this side has already reported the outcome")

    def _side(self, answer: OutcomeAnswer) -> str | None:
        actor = answer.actor
        if actor.user_id is not None and actor.user_id == self._data.requester_id:
            return REQUESTER
        if actor.role == PARTNER and actor.organisation_id == self._data.partner_organisation_id:
            return PARTNER
        return None
