"""Shared fixtures: databases (SQLite and PostgreSQL), Temporal environments, settings."""

import contextlib
import os
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, SQLModel
from temporalio.testing import WorkflowEnvironment

import ce4big.models  # noqa: F401  (registers the tables)
from bench.stack import MissingError, postgres_database
from ce4big.db import make_engine, upgrade_database
from ce4big.searchattributes import SEARCH_ATTRIBUTES, add_request
from ce4big.settings import Settings

# Reference data that migrations insert; everything else is emptied between tests.
KEEP_TABLES = frozenset({"cluster", "alembic_version"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """History recorders run only on request (CE4BIG_RECORD_HISTORIES=1), and then alone:
    replaying what is being rewritten would prove nothing."""
    recording = bool(os.environ.get("CE4BIG_RECORD_HISTORIES"))
    unwanted = "replay" if recording else "record_histories"
    kept = [i for i in items if i.get_closest_marker(unwanted) is None]
    if len(kept) != len(items):
        config.hook.pytest_deselected(items=[i for i in items if i not in kept])
        items[:] = kept


def venv_binary(name: str) -> str:
    """A binary that pip put next to the interpreter; the SDK must never download one."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise RuntimeError(f"{path} is missing: install the dev extra (make test does it)")
    return str(path)


def make_settings(database_url: str = "sqlite://", **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "ce4big_env": "test",
        "database_url": database_url,
        "secret_key": "test-secret-" + uuid.uuid4().hex,
        "base_url": "http://testserver",
        "temporal_task_queue": f"test-{uuid.uuid4()}",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


@contextlib.contextmanager
def own_postgres_database(prefix: str) -> Iterator[str]:
    """A database of its own on the PostgreSQL server TEST_POSTGRES_URL names, dropped at the
    end (bench/stack.py); the test is skipped when no server answers, unless
    CE4BIG_REQUIRE_POSTGRES says that is a failure."""
    with contextlib.ExitStack() as stack:
        try:
            url = stack.enter_context(postgres_database(prefix))
        except MissingError as exc:
            if os.environ.get("CE4BIG_REQUIRE_POSTGRES"):
                raise
            pytest.skip(str(exc))
        yield url


def _empty_database(kind: str, folder: Path) -> Iterator[str]:
    """SQLite in a file of `folder`, or a PostgreSQL database of its own on the server that
    TEST_POSTGRES_URL names, dropped at the end."""
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'app.db'}"
        return
    with own_postgres_database("ce4big_test") as url:
        yield url


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The run's migrated database, on SQLite and on PostgreSQL."""
    for url in _empty_database(request.param, tmp_path_factory.mktemp("db")):
        upgrade_database(url)
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database of this test's own, not migrated (for migration tests)."""
    yield from _empty_database(request.param, tmp_path)


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def db(engine: Engine) -> Iterator[Engine]:
    """The migrated database, emptied of everything but reference data after the test."""
    yield engine
    tables = [t for t in reversed(SQLModel.metadata.sorted_tables) if t.name not in KEEP_TABLES]
    with engine.begin() as connection:
        for table in tables:
            connection.execute(table.delete())


@pytest.fixture
def session(db: Engine) -> Iterator[Session]:
    with Session(db, expire_on_commit=False) as session:
        yield session


@pytest.fixture
def settings(db: Engine) -> Settings:
    return make_settings(str(db.url.render_as_string(hide_password=False)))


@pytest.fixture
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """A test server of the test's own: one clock per test, and nothing left running by another
    test can stop it from skipping time."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=venv_binary("temporal-test-server")
    )
    # The test server refuses an upsert of an attribute it does not know, as a real one does.
    await env.client.operator_service.add_search_attributes(add_request(env.client.namespace))
    yield env
    await env.shutdown()


@pytest.fixture(scope="session")
async def dev_server_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=venv_binary("temporal"),
        dev_server_extra_args=["--log-level", "error"],
        search_attributes=SEARCH_ATTRIBUTES,
    )
    yield env
    await env.shutdown()
