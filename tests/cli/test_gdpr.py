"""`ce4big gdpr export` and `ce4big gdpr erase` as an operator runs them, and the retention of
closed workflows that `ce4big temporal setup` sets (what erasure cannot reach in Temporal)."""

import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from google.protobuf.duration_pb2 import Duration
from sqlalchemy import Engine
from sqlmodel import Session
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest, RegisterNamespaceRequest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from ce4big.gdpr import pseudonym_for
from ce4big.models import EmailLog, User
from ce4big.security import get_user_by_email
from ce4big.users import add_user
from tests.factories import add_organisation

CE4BIG = str(Path(sys.executable).parent / "ce4big")
SECRET = "cli-test-secret-0123456789"
ADDRESS = "eva@bm-sme.example"


def run_cli(engine: Engine, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DATABASE_URL": engine.url.render_as_string(hide_password=False),
        "CE4BIG_ENV": "test",
        "SECRET_KEY": SECRET,
    }
    return subprocess.run(
        [CE4BIG, *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.stderr.strip().count("\n") == 0, result.stderr
    return result.stderr.strip()


@pytest.fixture
def eva(session: Session) -> User:
    add_organisation(session, "bm-sme", "biom", country="DE")
    user = add_user(
        session=session, email=ADDRESS, role="sme", organisation_id="bm-sme", name="Eva Example"
    )
    session.add(EmailLog(idempotency_key=f"welcome:{ADDRESS}", recipient=ADDRESS, kind="welcome"))
    session.commit()
    return user


def reread(session: Session, user: User) -> User:
    session.expire_all()
    found = session.get(User, user.id)
    assert found is not None
    return found


class TestGdprExport:
    def test_prints_the_json_or_writes_it_to_the_file(
        self, db: Engine, eva: User, tmp_path: Path
    ) -> None:
        printed = run_cli(db, "gdpr", "export", "--user", ADDRESS.upper())
        out = tmp_path / "eva.json"
        written = run_cli(db, "gdpr", "export", "--user", ADDRESS, "--out", str(out))

        assert printed.returncode == 0, printed.stderr
        data = json.loads(printed.stdout)
        assert (data["address"], data["user"]["name"]) == (ADDRESS, "Eva Example")
        assert [m["kind"] for m in data["emails"]] == ["welcome"]
        assert written.returncode == 0, written.stderr
        assert written.stdout == ""
        assert str(out) in one_line(written)
        from_file = json.loads(out.read_text(encoding="utf-8"))
        assert {**from_file, "exported_at": None} == {**data, "exported_at": None}

    def test_an_unknown_address_or_an_unwritable_file_is_one_line_and_exit_1(
        self, db: Engine, eva: User, tmp_path: Path
    ) -> None:
        unknown = run_cli(db, "gdpr", "export", "--user", "nobody@x.example")
        unwritable = run_cli(
            db, "gdpr", "export", "--user", ADDRESS, "--out", str(tmp_path / "no" / "eva.json")
        )

        assert unknown.returncode == 1
        assert "no personal data is held for nobody@x.example" in one_line(unknown)
        assert unknown.stdout == ""
        assert unwritable.returncode == 1
        assert "--out" in one_line(unwritable)

    def test_without_an_address_exits_2(self, db: Engine) -> None:
        result = run_cli(db, "gdpr", "export")

        assert result.returncode == 2
        assert "--user" in one_line(result)


class TestGdprErase:
    def test_a_dry_run_says_what_would_change_and_changes_nothing(
        self, db: Engine, session: Session, eva: User
    ) -> None:
        result = run_cli(db, "gdpr", "erase", "--user", ADDRESS, "--dry-run")

        assert result.returncode == 0, result.stderr
        pseudonym = pseudonym_for(address=ADDRESS, secret=SECRET)
        assert f"dry run: erasing {ADDRESS} would make it {pseudonym}" in result.stdout
        assert "address replaced in emaillog.recipient: 1" in result.stdout
        assert result.stdout.rstrip().endswith("nothing was changed (dry run)")
        user = reread(session, eva)
        assert (user.email, user.name, user.is_active) == (ADDRESS, "Eva Example", True)

    def test_erases_then_finds_nothing_left_and_the_export_says_it_was_erased(
        self, db: Engine, session: Session, eva: User
    ) -> None:
        first = run_cli(db, "gdpr", "erase", "--user", ADDRESS)
        again = run_cli(db, "gdpr", "erase", "--user", ADDRESS)
        export = run_cli(db, "gdpr", "export", "--user", ADDRESS)

        pseudonym = pseudonym_for(address=ADDRESS, secret=SECRET)
        assert first.returncode == 0, first.stderr
        assert first.stdout.startswith(f"erased {ADDRESS}; now {pseudonym}:")
        assert "user accounts deactivated" in first.stdout
        assert "address replaced in emaillog.recipient: 1" in first.stdout
        user = reread(session, eva)
        assert (user.email, user.name, user.is_active) == (pseudonym, "", False)
        assert get_user_by_email(session=session, email=ADDRESS) is None
        assert again.returncode == 0, again.stderr
        assert f"{ADDRESS} was erased before" in again.stdout
        assert "nothing left to change" in again.stdout
        assert export.returncode == 1
        assert f"{ADDRESS} has been erased" in one_line(export)

    def test_an_unknown_or_malformed_address_is_one_line_and_exit_1(self, db: Engine) -> None:
        unknown = run_cli(db, "gdpr", "erase", "--user", "nobody@x.example")
        malformed = run_cli(db, "gdpr", "erase", "--user", "nobody")

        assert unknown.returncode == malformed.returncode == 1
        assert "no personal data is held for nobody@x.example" in one_line(unknown)
        assert "is not an e-mail address" in one_line(malformed)


@pytest.fixture
async def namespace(dev_server_env: WorkflowEnvironment) -> AsyncIterator[Client]:
    """A namespace of the test's own, registered with a retention of one day."""
    name = f"retention-{uuid.uuid4().hex[:12]}"
    await dev_server_env.client.workflow_service.register_namespace(
        RegisterNamespaceRequest(
            namespace=name, workflow_execution_retention_period=Duration(seconds=86400)
        )
    )
    yield await Client.connect(
        dev_server_env.client.service_client.config.target_host, namespace=name
    )


async def retention(client: Client) -> timedelta:
    described = await client.workflow_service.describe_namespace(
        DescribeNamespaceRequest(namespace=client.namespace)
    )
    return described.config.workflow_execution_retention_ttl.ToTimedelta()


def setup(client: Client, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ,
        "CE4BIG_ENV": "test",
        "SECRET_KEY": SECRET,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'app.db'}",
        "TEMPORAL_ADDRESS": client.service_client.config.target_host,
        "TEMPORAL_NAMESPACE": client.namespace,
        **env,
    }
    return subprocess.run(
        [CE4BIG, "temporal", "setup"], capture_output=True, text=True, env=environment,
        timeout=60, check=False,
    )  # fmt: skip


@pytest.mark.devserver
class TestRetention:
    async def test_temporal_setup_sets_the_retention_of_closed_workflows_once(
        self, namespace: Client, tmp_path: Path
    ) -> None:
        first = setup(namespace, tmp_path)
        after_first = await retention(namespace)
        again = setup(namespace, tmp_path)
        shorter = setup(namespace, tmp_path, TEMPORAL_RETENTION_DAYS="7")

        assert first.returncode == 0, first.stderr
        assert "closed workflows kept 30 days: set" in first.stdout
        assert after_first == timedelta(days=30)
        assert again.returncode == 0, again.stderr
        assert "closed workflows kept 30 days: already set" in again.stdout
        assert shorter.returncode == 0, shorter.stderr
        assert await retention(namespace) == timedelta(days=7)

    def test_a_retention_under_a_day_is_refused_in_one_line(
        self, namespace: Client, tmp_path: Path
    ) -> None:
        result = setup(namespace, tmp_path, TEMPORAL_RETENTION_DAYS="0")

        assert result.returncode == 1
        assert "temporal_retention_days" in one_line(result)
