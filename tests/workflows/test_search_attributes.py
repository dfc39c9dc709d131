"""The exchange in Temporal visibility: what each stage entry upserts, and the list query the
README shows, on the dev server (the time-skipping test server answers `describe` with
datetimes the SDK cannot read, and has no list query)."""

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import datetime

import pytest
from temporalio.client import Client, WorkflowHandle
from temporalio.common import TypedSearchAttributes
from temporalio.testing import WorkflowEnvironment

from ce4big.domain import HostVerdict, VettingVerdict
from ce4big.lifecycle import Closure, HostReviewDecision, ShortlistDecision, VettingDecision
from ce4big.searchattributes import (
    HOME_CLUSTER,
    STAGE,
    STAGE_DEADLINE,
    WAITING_ON,
    parties,
    stage_updates,
)
from tests.workflows.conftest import (
    HOME_BROKER,
    MANAGER,
    Harness,
    host_broker,
    running_harness,
    state_of,
    wait_until,
)
from workflows.exchange import ExchangeWorkflow

Handle = WorkflowHandle[ExchangeWorkflow, str]
VISIBILITY_SECONDS = 30.0


@pytest.fixture
async def dev_harness(dev_server_env: WorkflowEnvironment) -> AsyncIterator[Harness]:
    async with running_harness(dev_server_env) as harness:
        yield harness


async def attributes_when(
    handle: Handle, stage: str, waiting_on: list[str] | None
) -> TypedSearchAttributes:
    """The attributes once the upsert of `stage` is visible (visibility is eventually
    consistent); fails after VISIBILITY_SECONDS naming what it saw last."""
    deadline = time.monotonic() + VISIBILITY_SECONDS
    while True:
        seen = (await handle.describe()).typed_search_attributes
        if seen.get(STAGE) == stage and seen.get(WAITING_ON) == waiting_on:
            return seen
        if time.monotonic() > deadline:
            raise AssertionError(f"{handle.id} is still listed with {seen}")
        await asyncio.sleep(0.1)


async def listed(client: Client, query: str, workflow_id: str) -> bool:
    async for execution in client.list_workflows(query):
        if execution.id == workflow_id:
            return True
    return False


@pytest.mark.devserver
class TestSearchAttributes:
    async def test_every_stage_entry_upserts_stage_cluster_parties_and_deadline(
        self, dev_harness: Harness
    ) -> None:
        handle = await dev_harness.start()

        seen = await attributes_when(handle, "vetting", ["home_broker"])
        state = await state_of(handle)
        assert seen.get(HOME_CLUSTER) == "biowin"
        assert state.deadline is not None
        assert seen.get(STAGE_DEADLINE) == datetime.fromisoformat(state.deadline)

        await handle.execute_update(
            ExchangeWorkflow.vet, VettingDecision(HOME_BROKER, VettingVerdict.APPROVE)
        )
        await wait_until(handle, lambda s: s.stage == "matching" and bool(s.candidates))
        await handle.execute_update(
            ExchangeWorkflow.set_shortlist, ShortlistDecision(HOME_BROKER, ["bm-1"])
        )
        # The stage waits on host_broker:biom and then partner:bm-1: only the parties show.
        await attributes_when(handle, "host_review", ["host_broker"])
        await handle.execute_update(
            ExchangeWorkflow.host_review,
            HostReviewDecision(host_broker("biom"), "bm-1", HostVerdict.ENDORSE),
        )
        await attributes_when(handle, "introduction", ["partner"])

        await handle.execute_update(ExchangeWorkflow.cancel, Closure(MANAGER, "duplicate"))
        assert await handle.result() == "cancelled"
        closed = await attributes_when(handle, "closed", None)
        assert closed.get(HOME_CLUSTER) == "biowin"
        assert closed.get(STAGE_DEADLINE) is None

    async def test_a_list_query_finds_the_exchange_by_stage_and_home_cluster(
        self, dev_harness: Harness
    ) -> None:
        handle = await dev_harness.start()
        client = dev_harness.env.client
        deadline = time.monotonic() + VISIBILITY_SECONDS
        while not await listed(
            client, "ExchangeStage='vetting' AND HomeCluster='biowin'", handle.id
        ):
            assert time.monotonic() < deadline, f"{handle.id} is not listed at vetting"
            await asyncio.sleep(0.1)

        assert not await listed(client, "ExchangeStage='vetting' AND HomeCluster='biom'", handle.id)
        assert await listed(
            client, "WaitingOn='home_broker' AND StageDeadline > '2000-01-01T00:00:00Z'", handle.id
        )
        await handle.execute_update(ExchangeWorkflow.cancel, Closure(MANAGER))
        await handle.result()


class TestParties:
    def test_only_the_party_of_each_entry_is_kept_in_a_fixed_order(self) -> None:
        waiting = ["partner:bm-1", "host_broker:biom", "requester", "host_broker:klsk"]

        assert parties(waiting) == ["requester", "partner", "host_broker"]

    def test_nobody_waited_on_and_no_deadline_unset_the_attributes(self) -> None:
        updates = stage_updates(stage="closed", home_cluster="biom", waiting_on=[], deadline=None)

        assert [(u.key.name, u.value) for u in updates] == [
            ("ExchangeStage", "closed"),
            ("HomeCluster", "biom"),
            ("WaitingOn", None),
            ("StageDeadline", None),
        ]
