"""worker.py: the worker takes its tuning from the settings."""

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from temporalio.testing import WorkflowEnvironment
from temporalio.worker import PollerBehaviorSimpleMaximum, UnsandboxedWorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from ce4big.db import make_engine
from tests.conftest import make_settings
from worker import build_worker


def _config(env: WorkflowEnvironment, threads: int, **settings: Any) -> dict[str, Any]:
    engine = make_engine("sqlite://")
    try:
        with ThreadPoolExecutor(max_workers=threads) as executor:
            worker = build_worker(env.client, make_settings(**settings), engine, executor)
            return dict(worker.config())
    finally:
        engine.dispose()


class TestBuildWorker:
    async def test_the_worker_settings_tune_the_worker(
        self, dev_server_env: WorkflowEnvironment
    ) -> None:
        config = _config(
            dev_server_env,
            12,
            worker_max_concurrent_activities=12,
            worker_max_concurrent_workflow_tasks=7,
            worker_max_cached_workflows=50,
            worker_workflow_task_pollers=3,
            worker_activity_task_pollers=2,
            worker_workflow_sandbox=False,
        )

        assert config["max_concurrent_activities"] == 12
        assert config["max_concurrent_workflow_tasks"] == 7
        assert config["max_cached_workflows"] == 50
        assert config["workflow_task_poller_behavior"] == PollerBehaviorSimpleMaximum(3)
        assert config["activity_task_poller_behavior"] == PollerBehaviorSimpleMaximum(2)
        assert isinstance(config["workflow_runner"], UnsandboxedWorkflowRunner)

    async def test_the_defaults_are_the_documented_ones(
        self, dev_server_env: WorkflowEnvironment
    ) -> None:
        config = _config(dev_server_env, 40)

        assert config["max_concurrent_activities"] == 40
        assert config["max_concurrent_workflow_tasks"] == 8
        assert config["max_cached_workflows"] == 4000
        assert config["workflow_task_poller_behavior"] == PollerBehaviorSimpleMaximum(5)
        assert config["activity_task_poller_behavior"] == PollerBehaviorSimpleMaximum(5)
        assert isinstance(config["workflow_runner"], SandboxedWorkflowRunner)

    async def test_an_executor_with_fewer_threads_bounds_the_activities(
        self, dev_server_env: WorkflowEnvironment
    ) -> None:
        # The SDK warns (an error in these tests) when activities could outnumber the threads.
        config = _config(dev_server_env, 8)

        assert config["max_concurrent_activities"] == 8
