"""The product as it runs in production (bench/stack.py), for the fault suite: the Temporal
dev server, `ce4big worker` and `ce4big api` as processes of their own on a time scale where an
exchange runs in seconds, the SMTP server on the test's event loop, and PostgreSQL: a database
of the test's own on the server that TEST_POSTGRES_URL names, or an instance the test starts
itself (initdb, pg_ctl) when the fault is to stop it.
"""

import asyncio
import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.drive import FAST_SCALE, Mailbox, driven_settings
from bench.stack import (
    LEFT_RUNNING,
    START_SECONDS,
    Child,
    MailServer,
    ProductProcesses,
    TemporalServer,
    free_port,
)

# ---------------------------------------------------------------------- PostgreSQL


def postgres_binaries() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    if not found:
        if os.environ.get("CE4BIG_REQUIRE_POSTGRES") or os.environ.get("CI"):
            raise AssertionError("no PostgreSQL binaries under /usr/lib/postgresql/*/bin")
        pytest.skip("no PostgreSQL binaries under /usr/lib/postgresql/*/bin")
    return found[-1].parent


class OwnPostgres:
    """A PostgreSQL instance of the test's own (initdb in a temporary folder, pg_ctl), which a
    fault may stop and start; the machine's server is never touched. PostgreSQL refuses to run
    as root, so as root its commands run as the `postgres` account."""

    def __init__(self) -> None:
        self.bin = postgres_binaries()
        self.folder = Path(tempfile.mkdtemp(prefix="ce4big-faults-pg-"))
        self.data = self.folder / "data"
        self.port = free_port()
        self._user: str | None = None
        if os.geteuid() == 0:
            account = pwd.getpwnam("postgres")
            os.chown(self.folder, account.pw_uid, account.pw_gid)
            self._user = "postgres"
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *arguments: str) -> None:
        result = subprocess.run(
            [str(self.bin / arguments[0]), *arguments[1:]],
            user=self._user,
            cwd=self.folder,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=START_SECONDS,
            check=False,
        )
        if result.returncode != 0:
            raise AssertionError(
                f"{' '.join(arguments[:2])} failed ({result.returncode}): "
                f"{result.stdout[-800:]}{result.stderr[-800:]}\n{self.log_tail()}"
            )

    def log_tail(self, lines: int = 15) -> str:
        try:
            log = (self.folder / "postgres.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(log.splitlines()[-lines:])

    def init(self) -> None:
        self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
            "--no-locale", "--no-sync",
        )  # fmt: skip

    def start(self) -> None:
        LEFT_RUNNING.add(self)
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.folder}"
            " -c fsync=off -c max_connections=60"
        )
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.folder / "postgres.log"),
            "-o", options, "-w", "-t", str(int(START_SECONDS)), "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def remove(self) -> None:
        if self.running():
            with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
                self.stop("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)
        LEFT_RUNNING.discard(self)

    def stop_left(self) -> None:
        self.remove()


# ---------------------------------------------------------------------- the stack


@dataclass
class Stack:
    temporal: TemporalServer
    processes: ProductProcesses
    mail: MailServer
    mailbox: Mailbox
    base_url: str

    @property
    def worker(self) -> Child:
        return self.processes.workers[0]

    @property
    def api(self) -> Child:
        return self.processes.api

    def check_running(self) -> None:
        self.processes.check()
        reason = self.temporal.child.exited()
        assert reason is None, reason

    def logs(self) -> str:
        children = [*self.processes.children(), self.temporal.child]
        return "\n".join(f"--- {c.name} ({c.log.name})\n{c.tail()}" for c in children)


@contextlib.asynccontextmanager
async def running_stack(
    folder: Path, database_url: str, *, temporal_file: bool = False
) -> AsyncIterator[Stack]:
    """Dev server, worker, web app and SMTP server up; everything killed on the way out.

    The dev server keeps its state in memory unless `temporal_file`: its SQLite file, which a
    restart needs, costs it twice the CPU. The file is written ahead (WAL) and synced at
    checkpoints only, as `ce4big dev` runs it: a SIGKILL loses nothing committed that way
    (only a power cut could)."""
    mailbox = Mailbox()
    mail = MailServer(mailbox, hostname="faults-mx")
    temporal = TemporalServer(folder, persisted=temporal_file)
    settings = driven_settings(
        database_url,
        web_port=free_port(),
        smtp_port=mail.port,
        scale=FAST_SCALE,
        ce4big_env="test",
        secret_key="faults-" + uuid.uuid4().hex,
        # Two processes on a server that other test runs share: a small pool each.
        db_pool_size=4,
        db_max_overflow=12,
        temporal_address=temporal.target,
        temporal_task_queue=f"faults-{uuid.uuid4().hex[:8]}",
        smtp_timeout_seconds=10,
        data_dir=folder / "data",
    )
    processes = ProductProcesses(folder, settings)
    stack = Stack(temporal, processes, mail, mailbox, settings.base_url)
    try:
        await mail.open()

        async def temporal_then_worker() -> None:
            # The worker checks the search attributes at start; the web app connects lazily.
            await temporal.start()
            await processes.start_workers(1)

        await asyncio.gather(temporal_then_worker(), processes.start_api())
        yield stack
    finally:
        await processes.stop()
        await asyncio.to_thread(temporal.child.stop)
        await mail.close()
