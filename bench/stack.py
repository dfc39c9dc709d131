"""The product as production runs it, one process each, on free ports of this machine.

The Temporal dev server (the venv's `temporal`), `ce4big api` and `ce4big worker` are
subprocesses, each leading a process group of its own so that it can be killed whole; an SMTP
server (aiosmtpd) runs on the caller's event loop and hands every message to the caller's
handler. The app database is SQLite in the run's folder or a PostgreSQL database of the run's
own. Used by the benchmarks (bench/lifecycle.py, bench/load.py) and the fault suite
(tests/faults/), which import this module and never the other way round.
"""

import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, Protocol

import httpx
from aiosmtpd.smtp import SMTP
from pydantic import SecretStr
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.exc import OperationalError
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from ce4big.searchattributes import dev_server_arguments
from ce4big.settings import Settings
from cli.devstack import temporal_sqlite_arguments

START_SECONDS = 90.0
STOP_SECONDS = 15.0
# How long a client keeps an idle connection to `ce4big api`: below uvicorn's 5 s, so that a
# connection the server is closing as idle is not reused (a ReadError no answer caused).
KEEPALIVE_SECONDS = 4.0
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def connection_limits(connections: int) -> httpx.Limits:
    """A client's limits towards `ce4big api`: `connections` at once, all of them kept while
    idle for KEEPALIVE_SECONDS."""
    return httpx.Limits(
        max_connections=connections,
        max_keepalive_connections=connections,
        keepalive_expiry=KEEPALIVE_SECONDS,
    )


class MissingError(Exception):
    """Something the run needs is not there: said in one line (a benchmark exits 2)."""


# ---------------------------------------------------------------------- ports

# Linux's default, where /proc does not say.
EPHEMERAL_LOW = 32768
LOWEST_PORT = 10000
_handed_out: set[int] = set()


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return EPHEMERAL_LOW


def free_port() -> int:
    """A port nothing listens on, below the kernel's ephemeral range and not handed out before
    by this process. A port the kernel picks for `bind(0)` comes from that range, where the
    Temporal dev server's internal services and outgoing connections take theirs too: one of
    them can take it before the server it was meant for binds it."""
    high = max(_ephemeral_low(), LOWEST_PORT + 1000)
    for _ in range(200):
        port = random.randrange(LOWEST_PORT, high)
        if port in _handed_out:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port between {LOWEST_PORT} and {high}")


async def port_open(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


# ---------------------------------------------------------------------- processes


class Leftover(Protocol):
    def stop_left(self) -> None: ...


# Whatever was started and not stopped yet: a test's teardown stops what is left, even when
# the coroutine that would have stopped it was abandoned (a pytest-timeout, say).
LEFT_RUNNING: set[Leftover] = set()


def venv_binary(name: str) -> str:
    """A binary that pip put next to the interpreter; nothing is ever downloaded."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise MissingError(f"{path} is missing: install the project (make dev does it)")
    return str(path)


class Child:
    """A command leading a process group of its own, its output in a log file per start."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], folder: Path) -> None:
        self.name = name
        self._command = command
        self._env = env
        self._folder = folder
        self._popen: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.log = folder / f"{name}.log"

    def start(self) -> None:
        assert not self.running, f"{self.name} runs"
        self.starts += 1
        self.log = self._folder / f"{self.name}-{self.starts}.log"
        with self.log.open("wb") as out:
            self._popen = subprocess.Popen(
                self._command, env=self._env, cwd=self._folder, stdin=subprocess.DEVNULL,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        LEFT_RUNNING.add(self)

    @property
    def pid(self) -> int:
        assert self._popen is not None, f"{self.name} was not started"
        return self._popen.pid

    @property
    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def exited(self) -> str | None:
        """Why the process is not running, or None while it runs."""
        if self._popen is None:
            return f"{self.name} was not started"
        code = self._popen.poll()
        if code is None:
            return None
        return f"{self.name} exited with code {code}; the end of {self.log}:\n{self.tail()}"

    def _signal_group(self, sig: signal.Signals) -> None:
        assert self._popen is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._popen.pid, sig)

    def kill(self) -> None:
        """SIGKILL to the whole group: nothing of it gets to clean up."""
        if self._popen is None:
            return
        self._signal_group(signal.SIGKILL)
        self._popen.wait()

    def stop(self, grace: float = STOP_SECONDS) -> None:
        """SIGTERM to the group, SIGKILL after `grace` seconds, then to the group's stragglers."""
        if self._popen is not None:
            if self._popen.poll() is None:
                self._signal_group(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._popen.wait(grace)
            self._signal_group(signal.SIGKILL)
            self._popen.wait()
        LEFT_RUNNING.discard(self)

    def stop_left(self) -> None:
        self.stop()

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def count_in_logs(self, needle: str) -> int:
        """Occurrences of `needle` in the logs of every start."""
        return sum(
            log.read_text(errors="replace").count(needle)
            for log in sorted(self._folder.glob(f"{self.name}-*.log"))
        )


async def wait_until(
    check: Callable[[], Awaitable[bool]],
    what: str,
    children: list[Child],
    seconds: float = START_SECONDS,
) -> None:
    """Polls `check` while every child runs; fails with their logs otherwise."""
    deadline = time.monotonic() + seconds
    while True:
        for child in children:
            reason = child.exited()
            if reason is not None:
                raise RuntimeError(f"{what}: {reason}")
        if await check():
            return
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {c.name}\n{c.tail()}" for c in children)
            raise RuntimeError(f"{what}: not within {seconds:.0f} s\n{tails}")
        await asyncio.sleep(0.1)


def settings_env(settings: Settings) -> dict[str, str]:
    """This process's environment without any setting of its own, and `settings` as the
    variables the README names: what a child process reads is exactly `settings`."""
    names = {name.upper() for name in Settings.model_fields}
    env = {k: v for k, v in os.environ.items() if k.upper() not in names}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        elif isinstance(value, bool):
            value = "true" if value else "false"
        env[name.upper()] = str(value)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class TemporalServer:
    """The venv's `temporal server start-dev`, headless, with the search attributes the product
    needs; persisted in a SQLite file in `folder` with the dev stack's pragmas (a restart finds
    its workflows there), or in memory, which costs it half the CPU."""

    def __init__(self, folder: Path, *, persisted: bool = True) -> None:
        self.port = free_port()
        self.database = folder / "temporal.db" if persisted else None
        stored = (
            ["--db-filename", str(self.database), *temporal_sqlite_arguments()]
            if self.database is not None
            else []
        )
        self.child = Child(
            "temporal",
            [
                venv_binary("temporal"), "server", "start-dev", "--headless",
                "--ip", "127.0.0.1",
                "--port", str(self.port),
                "--http-port", str(free_port()),
                *stored,
                "--namespace", "default",
                "--log-level", "error",
                *dev_server_arguments(),
            ],
            {**os.environ},
            folder,
        )  # fmt: skip

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Started, or started again on the same port and file, until its port answers."""
        self.child.start()
        await wait_until(lambda: port_open(self.port), "the Temporal dev server", [self.child])

    async def connect(self) -> Client:
        return await Client.connect(self.target)

    def database_bytes(self) -> int:
        if self.database is None:
            return 0
        return sum(
            Path(f"{self.database}{suffix}").stat().st_size
            for suffix in ("", "-wal")
            if Path(f"{self.database}{suffix}").exists()
        )


async def _polling_pids(client: Client, task_queue: str) -> set[int]:
    """Process ids with a poller on both of the task queue's kinds (identity `pid@host`)."""
    found: list[set[int]] = []
    for kind in (TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY):
        described = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=client.namespace,
                task_queue=TaskQueue(name=task_queue),
                task_queue_type=kind,
            )
        )
        found.append(
            {int(p.identity.split("@")[0]) for p in described.pollers if p.identity[:1].isdigit()}
        )
    return found[0] & found[1]


class ProductProcesses:
    """`ce4big api` (WEB_PROCESSES of its own) and `ce4big worker` processes, as production
    runs them, with `settings` for their environment. A worker counts as started once Temporal
    has seen it poll both kinds of task."""

    def __init__(self, folder: Path, settings: Settings) -> None:
        self._binary = venv_binary("ce4big")
        self._folder = folder
        self._env = settings_env(settings)
        self._settings = settings
        self._client: Client | None = None
        self.api = Child("api", [self._binary, "api"], self._env, folder)
        self.workers: list[Child] = []
        self._named = 0

    async def start_api(self) -> None:
        """Started, or started again, until it answers /healthz; Temporal need not run yet."""
        self.api.start()
        url = f"{self._settings.base_url}/healthz"

        async def healthy() -> bool:
            try:
                async with httpx.AsyncClient(timeout=3) as http:
                    return (await http.get(url)).status_code == 200
            except httpx.TransportError:
                return False

        await wait_until(healthy, "ce4big api /healthz", [self.api])

    async def start_workers(self, count: int) -> None:
        started = []
        for _ in range(count):
            self._named += 1
            name = f"worker-{self._named}"
            started.append(Child(name, [self._binary, "worker"], self._env, self._folder))
        self.workers += started
        await self._start(started)

    async def restart_worker(self, worker: Child) -> None:
        await self._start([worker])

    async def _start(self, workers: list[Child]) -> None:
        for worker in workers:
            worker.start()
        pids = {w.pid for w in workers}
        if self._client is None:
            self._client = await Client.connect(self._settings.temporal_address or "")
        client, queue = self._client, self._settings.temporal_task_queue

        async def polling() -> bool:
            return pids <= await _polling_pids(client, queue)

        count = len(workers)
        await wait_until(polling, f"{count} ce4big worker{'s' * (count > 1)} polling", workers)

    async def stop_workers(self) -> None:
        await asyncio.gather(*(asyncio.to_thread(w.stop) for w in self.workers))
        self.workers = []

    async def stop(self) -> None:
        await self.stop_workers()
        await asyncio.to_thread(self.api.stop)

    def children(self) -> list[Child]:
        return [self.api, *self.workers]

    def check(self) -> None:
        for child in self.children():
            reason = child.exited()
            if reason is not None:
                raise RuntimeError(reason)

    def usage(self) -> dict[str, tuple[float, int]]:
        return {
            "web": group_usage(self.api.pid),
            "workers": group_usage(*(w.pid for w in self.workers)),
        }


class MailServer:
    """aiosmtpd on a port of this process's loop, handing each message to `handler`; the
    listener can be closed (connections refused) and opened again on the same port."""

    def __init__(self, handler: Any, hostname: str = "bench-mx") -> None:
        self.handler = handler
        self.port = free_port()
        self._hostname = hostname
        self._server: asyncio.Server | None = None

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: SMTP(self.handler, hostname=self._hostname, loop=loop),
            host="127.0.0.1",
            port=self.port,
            reuse_address=True,
        )

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None


# ---------------------------------------------------------------------- databases


def _on_server(server_url: str, statement: str) -> None:
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(statement))
    finally:
        admin.dispose()


@contextlib.contextmanager
def postgres_database(prefix: str) -> Iterator[str]:
    """A database of its own (`<prefix>_<random>`) on the PostgreSQL server that
    TEST_POSTGRES_URL names, dropped at the end; MissingError when the server does not answer."""
    server_url = os.environ.get("TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        _on_server(server_url, f'CREATE DATABASE "{name}"')
    except OperationalError as exc:
        shown = make_url(server_url).render_as_string(hide_password=True)
        reason = " ".join(str(exc.orig).split())
        raise MissingError(
            f"PostgreSQL does not answer at {shown} ({reason}): start it, or name another "
            "server in TEST_POSTGRES_URL"
        ) from None
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        _on_server(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def app_database(kind: str, folder: str) -> Iterator[str]:
    """SQLite in `folder`, or a PostgreSQL database of the run's own."""
    if kind == "sqlite":
        yield f"sqlite:///{folder}/app.db"
        return
    with postgres_database("ce4big_bench") as url:
        yield url


def database_bytes(database_url: str) -> int:
    """The app database's size on disk: the SQLite file with its WAL, or PostgreSQL's own."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        return sum(
            Path(f"{url.database}{suffix}").stat().st_size
            for suffix in ("", "-wal")
            if Path(f"{url.database}{suffix}").exists()
        )
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return int(
                connection.execute(text("SELECT pg_database_size(current_database())")).one()[0]
            )
    finally:
        engine.dispose()


# ---------------------------------------------------------------------- figures


def process_stats() -> Iterator[tuple[int, list[str]]]:
    """Every process's pid and the fields of its /proc/<pid>/stat after the command name:
    state, ppid, pgrp, ... utime, stime, cutime, cstime (11 to 14), ... rss in pages (21)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name is in parentheses and may hold spaces: the fields follow the last.
        yield int(entry.name), stat[stat.rindex(")") + 2 :].split()


def group_usage(*groups: int) -> tuple[float, int]:
    """CPU seconds (of the live members, and of the children they reaped) and resident bytes
    of the processes in these process groups."""
    tick, page = os.sysconf("SC_CLK_TCK"), os.sysconf("SC_PAGE_SIZE")
    wanted = set(groups)
    cpu, rss = 0.0, 0
    for _, fields in process_stats():
        if int(fields[2]) in wanted:
            cpu += sum(int(f) for f in fields[11:15]) / tick
            rss += int(fields[21]) * page
    return cpu, rss


def p50_p95_ms(values: list[float]) -> tuple[float, float]:
    if not values:
        return float("nan"), float("nan")
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered) * 1000, p95 * 1000


def run_bench(
    name: str,
    args: Any,
    bench: Callable[[Any], Coroutine[Any, Any, dict[str, Any]]],
    report: Callable[[Any, dict[str, Any]], dict[str, Any]],
) -> None:
    """Runs a benchmark and prints its report, the JSON object last; what it misses is one line
    and exit 2. SIGTERM stops it as Ctrl-C does, so that what it started is stopped too."""

    def interrupt(_signal: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    started = time.perf_counter()
    try:
        result = asyncio.run(bench(args))
    except MissingError as exc:
        print(f"{name}: cannot run: {exc}", file=sys.stderr, flush=True)
        print(json.dumps({"bench": name, "error": str(exc)}))
        sys.exit(2)
    figures = report(args, result)
    figures["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(figures))
