"""`ce4big temporal setup` and the worker's start-up check, against a namespace of the test's own
on the dev server (the shared `default` namespace has the attributes from the start)."""

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from google.protobuf.duration_pb2 import Duration
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.api.workflowservice.v1 import RegisterNamespaceRequest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from ce4big.searchattributes import SearchAttributeError, check_search_attributes

CE4BIG = str(Path(sys.executable).parent / "ce4big")


@pytest.fixture
async def namespace(dev_server_env: WorkflowEnvironment) -> AsyncIterator[Client]:
    name = f"setup-{uuid.uuid4().hex[:12]}"
    await dev_server_env.client.workflow_service.register_namespace(
        RegisterNamespaceRequest(
            namespace=name, workflow_execution_retention_period=Duration(seconds=86400)
        )
    )
    yield await Client.connect(
        dev_server_env.client.service_client.config.target_host, namespace=name
    )


def run_cli(client: Client, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "CE4BIG_ENV": "test",
        "SECRET_KEY": "cli-test-secret-0123456789",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'app.db'}",
        "TEMPORAL_ADDRESS": client.service_client.config.target_host,
        "TEMPORAL_NAMESPACE": client.namespace,
    }
    return subprocess.run(
        [CE4BIG, *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )


@pytest.mark.devserver
class TestTemporalSetup:
    async def test_the_worker_refuses_to_start_until_setup_registered_the_attributes(
        self, namespace: Client, tmp_path: Path
    ) -> None:
        refused = run_cli(namespace, tmp_path, "worker")
        assert refused.returncode == 1, refused.stderr
        assert refused.stderr.strip().count("\n") == 0, refused.stderr
        assert "ExchangeStage" in refused.stderr and "ce4big temporal setup" in refused.stderr

        first = run_cli(namespace, tmp_path, "temporal", "setup")
        again = run_cli(namespace, tmp_path, "temporal", "setup")

        assert first.returncode == 0, first.stderr
        assert "ExchangeStage (Keyword): registered" in first.stdout
        assert "WaitingOn (KeywordList): registered" in first.stdout
        assert again.returncode == 0, again.stderr
        assert again.stdout.count("already registered") == 4
        await check_search_attributes(namespace)

    async def test_an_attribute_of_another_type_is_one_line_and_registers_nothing(
        self, namespace: Client, tmp_path: Path
    ) -> None:
        await namespace.operator_service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace=namespace.namespace,
                search_attributes={"ExchangeStage": IndexedValueType.INDEXED_VALUE_TYPE_TEXT},
            )
        )

        result = run_cli(namespace, tmp_path, "temporal", "setup")

        assert result.returncode == 1
        assert result.stderr.strip().count("\n") == 0, result.stderr
        assert "ExchangeStage is a Text, not a Keyword" in result.stderr
        with pytest.raises(SearchAttributeError, match="HomeCluster"):
            await check_search_attributes(namespace)
