"""The one place the Temporal worker is assembled: client, activities with their dependencies,
workflows. Run it with `ce4big worker` or `python worker.py`."""

import asyncio
import gc
import logging
import pkgutil
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from sqlalchemy import Engine
from temporalio.client import Client
from temporalio.worker import (
    PollerBehaviorSimpleMaximum,
    UnsandboxedWorkflowRunner,
    Worker,
    WorkflowRunner,
)
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

import workflows
from activities.email import EmailActivities
from activities.exchange import ExchangeActivities
from activities.records import RecordActivities
from ce4big.db import engine_for
from ce4big.searchattributes import SearchAttributeError, check_search_attributes
from ce4big.settings import Settings, get_settings
from ce4big.temporal import connect_temporal
from workflows.exchange import ExchangeWorkflow
from workflows.outcome import OutcomeWaveWorkflow

logger = logging.getLogger("ce4big.worker")

# The stage, state and validator modules hold functions and constants only: imported once
# rather than again inside the sandbox for every workflow run (a fifth of a workflow's CPU,
# measured by replaying tests/workflows/histories/completed.json). The workflow tests' own
# workers (tests/workflows) and the replay test keep them sandboxed, so the sandbox still checks
# their determinism on every test run.
WORKFLOW_DEFINITIONS = frozenset({"exchange", "outcome"})
PASSED_THROUGH = tuple(
    f"workflows.{module.name}"
    for module in pkgutil.iter_modules(workflows.__path__)
    if module.name not in WORKFLOW_DEFINITIONS
)


def build_worker(
    client: Client, settings: Settings, engine: Engine, executor: ThreadPoolExecutor
) -> Worker:
    """The worker, tuned by the WORKER_* settings. A synchronous activity needs a thread of
    `executor` for its run: no more activities are taken at once than it has threads."""
    records = RecordActivities(engine)
    email = EmailActivities(settings=settings, engine=engine)
    exchange = ExchangeActivities(engine, settings, email)
    return Worker(
        client,
        task_queue=settings.temporal_task_queue,
        workflows=[ExchangeWorkflow, OutcomeWaveWorkflow],
        activities=[
            # No workflow schedules send_email: notify sends each e-mail through it in-process.
            records.record_event,
            exchange.find_candidates,
            exchange.update_candidate,
            exchange.revoke_tokens,
            exchange.notify,
            exchange.record_survey,
        ],
        activity_executor=executor,
        max_concurrent_activities=min(
            settings.worker_max_concurrent_activities, executor._max_workers
        ),
        max_concurrent_workflow_tasks=settings.worker_max_concurrent_workflow_tasks,
        max_cached_workflows=settings.worker_max_cached_workflows,
        workflow_task_poller_behavior=PollerBehaviorSimpleMaximum(
            settings.worker_workflow_task_pollers
        ),
        activity_task_poller_behavior=PollerBehaviorSimpleMaximum(
            settings.worker_activity_task_pollers
        ),
        graceful_shutdown_timeout=timedelta(seconds=10),
        workflow_runner=workflow_runner(settings),
    )


def workflow_runner(settings: Settings) -> WorkflowRunner:
    """The sandbox, unless WORKER_WORKFLOW_SANDBOX turns it off: it re-imports each workflow
    definition for every workflow it loads and enters itself again for every payload it converts
    (a fifth of a worker's CPU in a burst of decisions, measured with py-spy on bench/load.py).
    Off, nothing checks determinism at run time: the workflow tests' own workers and the replay
    test still do."""
    if not settings.worker_workflow_sandbox:
        return UnsandboxedWorkflowRunner()
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSED_THROUGH)
    )


async def run_worker(settings: Settings, stop: asyncio.Event, client: Client | None = None) -> None:
    """Run until `stop` is set, then let running activities finish within the grace period.

    Refuses to start (SearchAttributeError) on a namespace without the exchange's search
    attributes: every workflow task that upserts them would fail and be retried for ever.
    Its activity threads become the loop's default executor: the loop is the worker's own.
    """
    own_client = client is None
    client = client or await connect_temporal(settings)
    refusal = None
    try:
        await _serve(client, settings, stop)
    except SearchAttributeError as exc:
        refusal = str(exc)
    finally:
        if own_client:
            # Dropped while the loop runs, and with no traceback holding it: a client left to
            # the interpreter's exit can abort the process after a clean stop or a refusal
            # (temporalio/sdk-python#300).
            del client
            gc.collect()
    if refusal is not None:
        raise SearchAttributeError(refusal)


async def _serve(client: Client, settings: Settings, stop: asyncio.Event) -> None:
    await check_search_attributes(client)
    engine = engine_for(settings)
    threads = settings.worker_max_concurrent_activities
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="activity") as executor:
        # The async activities' SQL and rendering (asyncio.to_thread) share the synchronous
        # activities' threads: this process never holds more database connections than
        # activities run at once, and never more than the pool has.
        asyncio.get_running_loop().set_default_executor(executor)
        worker = build_worker(client, settings, engine, executor)
        async with worker:
            logger.info("worker polling task queue %s", settings.temporal_task_queue)
            await stop.wait()
    engine.dispose()


async def _main() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await run_worker(get_settings(), stop)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        asyncio.run(_main())
    except SearchAttributeError as exc:
        sys.exit(f"ce4big worker: {exc}")


if __name__ == "__main__":
    main()
