import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, col, select
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from ce4big.domain import HostVerdict, SurveyOutcome, VettingVerdict
from ce4big.exchanges import start_exchange_workflow
from ce4big.lifecycle import (
    Actor,
    ExchangeState,
    HostReviewDecision,
    IntroductionAnswer,
    ShortlistDecision,
    SlotData,
    SlotPick,
    SlotProposal,
    SurveyAnswer,
    VettingDecision,
)
from ce4big.models import ActionToken, EmailLog, Exchange, ExchangeEvent
from ce4big.settings import Settings
from tests.conftest import make_settings
from tests.emails.mailserver import RecordingHandler, smtp_server
from tests.exchange_world import (
    HOME,
    HOST_BROKER,
    PARTNER_EMAIL,
    PARTNER_ID,
    REQUESTER_EMAIL,
    ExchangeWorld,
    add_world,
)
from tests.polling import eventually
from worker import build_worker
from workflows.exchange import ExchangeWorkflow

Handle = WorkflowHandle[Any, str]

# A day of the lifecycle lasts a second. Every wait the test does not want to reach is far away,
# so that the e-mails sent depend on the decisions alone, not on how fast the machine is.
TIMINGS = {
    "ce4big_time_scale": 86400.0,
    "vetting_reminder_days": 30,
    "vetting_escalation_days": 60,
    "shortlist_reminder_days": 30,
    "shortlist_escalation_days": 60,
    "host_review_consent_days": 60,
    "partner_reminder_days": 30,
    "partner_deadline_days": 60,
    "scheduling_reminder_days": 30,
    "scheduling_deadline_days": 60,
    "survey_delay_days": 1,
    "survey_reminder_days": 30,
    "survey_close_days": 60,
    "outcome_wave_days": 0,
}


async def wait_until(handle: Handle, check: Callable[[ExchangeState], bool]) -> ExchangeState:
    deadline = time.monotonic() + 20
    while True:
        try:
            state: ExchangeState = await handle.query(ExchangeWorkflow.state)
        except RPCError as err:
            # A worker that has just started may not have polled yet: nobody answers queries.
            if err.status != RPCStatusCode.FAILED_PRECONDITION or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)
            continue
        if check(state):
            return state
        if time.monotonic() > deadline:
            raise AssertionError(f"the exchange did not get there; it is at {state}")
        await asyncio.sleep(0.1)


async def wait_stage(handle: Handle, stage: str, waiting_on: list[str] | None = None) -> None:
    await wait_until(
        handle,
        lambda s: s.stage == stage and (waiting_on is None or s.waiting_on == waiting_on),
    )


@asynccontextmanager
async def running_worker(client: Client, settings: Settings, db: Engine) -> AsyncIterator[None]:
    """One worker process's worth: its own executor and Worker, stopped gracefully on exit."""
    with ThreadPoolExecutor(max_workers=8) as executor:
        async with build_worker(client, settings, db, executor):
            yield


def sent_kinds(db: Engine) -> list[str]:
    with Session(db) as session:
        return [log.kind for log in session.exec(select(EmailLog)) if log.status == "sent"]


@pytest.mark.slow
@pytest.mark.devserver
class TestWorkerRestart:
    # The second worker also runs with the sandbox off (WORKER_WORKFLOW_SANDBOX=false): an
    # operator who turns it off and restarts the workers keeps every exchange in flight.
    @pytest.mark.parametrize("sandbox_after", [True, False], ids=["sandboxed", "unsandboxed"])
    async def test_new_worker_finishes_the_exchange_without_losing_or_repeating_anything(
        self,
        db: Engine,
        session: Session,
        dev_server_env: WorkflowEnvironment,
        sandbox_after: bool,
    ) -> None:
        # Workflow ids outlive the database on the shared dev server: exchange-1 of an earlier
        # test is still there, and starting it again would find that closed workflow.
        world = add_world(session, exchange_id=uuid.uuid4().int % 1_000_000_000)
        actors = Actors(world)
        exchange = session.get(Exchange, world.exchange_id)
        assert exchange is not None
        client = dev_server_env.client
        handler = RecordingHandler()
        async with smtp_server(handler) as port:
            settings = make_settings(
                db.url.render_as_string(hide_password=False),
                smtp_host="127.0.0.1",
                smtp_port=port,
                **TIMINGS,
            )
            async with running_worker(client, settings, db):
                handle = await start_exchange_workflow(
                    client=client, settings=settings, exchange=exchange
                )
                await actors.up_to_the_introduction(handle)
                await eventually(
                    lambda: "introduction_request" in sent_kinds(db),
                    what="introduction_request sent",
                )
            # Worker A is gone while the partner has yet to answer.
            before_restart = sent_kinds(db)
            after = settings.model_copy(update={"worker_workflow_sandbox": sandbox_after})
            async with running_worker(client, after, db):
                await actors.from_the_answer_to_the_survey(handle)
                assert await handle.result() == "completed"

        assert "introduction_request" in before_restart
        assert "introduction_made" not in before_restart
        with Session(db) as fresh:
            logs = fresh.exec(select(EmailLog)).all()
            closed = fresh.get(Exchange, world.exchange_id)
            open_tokens = fresh.exec(
                select(ActionToken).where(
                    col(ActionToken.revoked_at).is_(None), col(ActionToken.used_at).is_(None)
                )
            ).all()
            timeline = fresh.exec(
                select(ExchangeEvent.kind).where(ExchangeEvent.exchange_id == world.exchange_id)
            ).all()
        assert closed is not None and (closed.status, closed.outcome) == ("closed", "completed")
        for kind in ("vetting_approve", "introduction_accepted", "meeting_held", "closed"):
            assert timeline.count(kind) == 1, kind
        assert open_tokens == []
        assert {log.status for log in logs} == {"sent"}
        assert len({log.idempotency_key for log in logs}) == len(logs)
        assert len(handler.received) == len(logs)
        message_ids = [r.parsed()["Message-ID"] for r in handler.received]
        assert len(set(message_ids)) == len(message_ids)
        assert set(message_ids) == {log.message_id for log in logs}
        kinds = {log.kind for log in logs}
        for kind in (
            "request_received",
            "vetting_needed",
            "request_approved",
            "shortlist_needed",
            "host_review_request",
            "introduction_request",
            "introduction_made",
            "slots_proposed",
            "meeting_confirmed",
            "survey_invitation",
        ):
            assert kind in kinds, kind
        partner_mail = [r for r in handler.received if r.recipients == [PARTNER_EMAIL]]
        assert len(partner_mail) >= 4


class Actors:
    """The people of the exchange, deciding through the workflow's updates as the API would."""

    def __init__(self, world: ExchangeWorld) -> None:
        self.requester = Actor(
            email=REQUESTER_EMAIL,
            role="sme",
            user_id=world.requester_id,
            cluster=HOME,
            organisation_id="bw-sme",
        )
        self.home_broker = Actor(
            email="broker@biowin.example",
            role="broker",
            user_id=world.home_broker_ids[0],
            cluster=HOME,
        )
        self.host_broker = Actor(
            email=HOST_BROKER, role="broker", user_id=world.host_broker_id, cluster="biom"
        )
        self.partner = Actor(
            email=PARTNER_EMAIL, role="partner", organisation_id=PARTNER_ID, side="partner"
        )

    async def up_to_the_introduction(self, handle: Handle) -> None:
        await wait_stage(handle, "vetting")
        await handle.execute_update(
            ExchangeWorkflow.vet, VettingDecision(self.home_broker, VettingVerdict.APPROVE)
        )
        state = await wait_until(handle, lambda s: s.stage == "matching" and bool(s.candidates))
        assert PARTNER_ID in [c.organisation_id for c in state.candidates]
        await handle.execute_update(
            ExchangeWorkflow.set_shortlist, ShortlistDecision(self.home_broker, [PARTNER_ID])
        )
        await wait_stage(handle, "host_review")
        await handle.execute_update(
            ExchangeWorkflow.host_review,
            HostReviewDecision(self.host_broker, PARTNER_ID, HostVerdict.ENDORSE),
        )
        await wait_stage(handle, "introduction", [f"partner:{PARTNER_ID}"])

    async def from_the_answer_to_the_survey(self, handle: Handle) -> None:
        await handle.execute_update(
            ExchangeWorkflow.answer_introduction,
            IntroductionAnswer(self.partner, PARTNER_ID, accept=True),
        )
        await wait_stage(handle, "scheduling", ["requester"])
        # Meeting times are real: an hour from now is a few hundredths of a second here.
        now = datetime.now(UTC)
        slots = [slot_in(now, hours) for hours in (1, 3)]
        await handle.execute_update(
            ExchangeWorkflow.propose_slots,
            SlotProposal(self.requester, slots, "Europe/Brussels"),
        )
        await wait_stage(handle, "scheduling", ["partner"])
        await handle.execute_update(
            ExchangeWorkflow.pick_slot, SlotPick(self.partner, slots[0].start)
        )
        await wait_stage(handle, "follow_up", ["requester", "partner"])
        for actor in (self.requester, self.partner):
            await handle.execute_update(
                ExchangeWorkflow.answer_survey,
                SurveyAnswer(
                    actor, SurveyOutcome.COOPERATION_POSSIBLE, satisfaction=5, recommend=9
                ),
            )


def slot_in(now: datetime, hours: float) -> SlotData:
    start = now + timedelta(hours=hours)
    return SlotData(start=start.isoformat(), end=(start + timedelta(hours=1)).isoformat())
