import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from ce4big.exchanges import exchange_timings
from ce4big.lifecycle import Actor, ExchangeInput, ExchangeState, SlotData, SlotProposal
from tests.conftest import make_settings
from tests.workflows.fakes import FakeActivities, candidate
from workflows.exchange import ExchangeWorkflow
from workflows.outcome import OutcomeWaveWorkflow

DAY = 86400.0
HOME = "biowin"
REQUESTER_ID = 7
HOME_BROKER = Actor(email="broker@biowin.example", role="broker", user_id=2, cluster=HOME)
REQUESTER = Actor(
    email="sme@biowin.example",
    role="sme",
    user_id=REQUESTER_ID,
    cluster=HOME,
    organisation_id="bw-sme",
)
MANAGER = Actor(email="manager@ce4big.example", role="manager", user_id=3)


def host_broker(cluster: str) -> Actor:
    return Actor(email=f"broker@{cluster}.example", role="broker", user_id=10, cluster=cluster)


def partner(organisation_id: str) -> Actor:
    return Actor(
        email=f"contact@{organisation_id}.example",
        role="partner",
        organisation_id=organisation_id,
        side="partner",
    )


def exchange_input(exchange_id: int, **timing_overrides: float) -> ExchangeInput:
    timings = replace(exchange_timings(make_settings()), **timing_overrides)
    return ExchangeInput(
        exchange_id=exchange_id,
        requester_id=REQUESTER_ID,
        requester_organisation_id="bw-sme",
        home_cluster=HOME,
        timings=timings,
    )


@dataclass
class Harness:
    env: WorkflowEnvironment
    fakes: FakeActivities
    task_queue: str

    async def start(self, **timing_overrides: float) -> WorkflowHandle[ExchangeWorkflow, str]:
        exchange_id = uuid.uuid4().int % 1_000_000
        return await self.env.client.start_workflow(
            ExchangeWorkflow.run,
            exchange_input(exchange_id, **timing_overrides),
            id=f"exchange-{exchange_id}",
            task_queue=self.task_queue,
        )

    async def now(self) -> datetime:
        return await self.env.get_current_time()

    async def slots(self, *days_ahead: float) -> SlotProposal:
        now = await self.now()
        return SlotProposal(
            actor=REQUESTER,
            slots=[
                SlotData(
                    start=(now + timedelta(days=d)).isoformat(),
                    end=(now + timedelta(days=d, hours=1)).isoformat(),
                )
                for d in days_ahead
            ],
            timezone="Europe/Brussels",
        )


async def state_of(handle: WorkflowHandle[Any, Any]) -> ExchangeState:
    return await handle.query(ExchangeWorkflow.state)


async def wait_until(
    handle: WorkflowHandle[Any, Any], check: Callable[[ExchangeState], bool]
) -> ExchangeState:
    """Poll the query in real time (activities run for real) until `check` holds."""
    state = await state_of(handle)
    for _ in range(300):
        if check(state):
            return state
        await asyncio.sleep(0.05)
        state = await state_of(handle)
    raise AssertionError(f"the exchange did not get there; it is at {state}")


async def wait_stage(
    handle: WorkflowHandle[Any, Any], stage: str, waiting_on: list[str] | None = None
) -> ExchangeState:
    return await wait_until(
        handle,
        lambda s: s.stage == stage and (waiting_on is None or s.waiting_on == waiting_on),
    )


@pytest.fixture
async def harness(time_skipping_env: WorkflowEnvironment) -> AsyncIterator[Harness]:
    async with running_harness(time_skipping_env) as harness:
        yield harness


@contextlib.asynccontextmanager
async def running_harness(env: WorkflowEnvironment) -> AsyncIterator[Harness]:
    fakes = FakeActivities(
        rounds=[
            [
                candidate("bm-1", "biom", 3),
                candidate("kr-1", "klsk", 2),
                candidate("atl-1", "atlanpole", 1),
            ]
        ]
    )
    task_queue = f"test-{uuid.uuid4()}"
    async with Worker(
        env.client,
        task_queue=task_queue,
        workflows=[ExchangeWorkflow, OutcomeWaveWorkflow],
        activities=fakes.all(),
    ):
        yield Harness(env, fakes, task_queue)
