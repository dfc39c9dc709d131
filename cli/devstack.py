"""`ce4big dev`: the whole product on one machine with embedded defaults.

This process migrates and seeds the database, starts the Temporal dev server, registers what
its namespace needs, serves the SMTP sink, then runs what production runs: `ce4big api` (which
serves its port from WEB_PROCESSES processes of its own) and WORKER_PROCESSES times
`ce4big worker`. Each child is a process group of its own: the terminal's Ctrl-C reaches this
process only, which stops the children in order, and a child that exits stops the rest.
"""

import asyncio
import contextlib
import errno
import gc
import logging
import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine
from temporalio.service import RPCError

from api.main import serving_refusal
from ce4big.db import make_engine, session_scope, upgrade_database
from ce4big.searchattributes import (
    SearchAttributeError,
    dev_server_arguments,
    register_search_attributes,
)
from ce4big.seed import is_seeded, seed_demo
from ce4big.settings import Settings
from ce4big.temporal import connect_temporal, set_retention
from cli.mailsink import start_sink

logger = logging.getLogger("ce4big.dev")
TEMPORAL_START_SECONDS = 60
WEB_START_SECONDS = 60
# A worker lets its running activities finish for up to 10 s (worker.py) before it exits.
CHILD_STOP_SECONDS = 20
TEMPORAL_STOP_SECONDS = 10
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})
# The dev server's SQLite otherwise keeps a rollback journal and syncs the disk at every
# commit: about 12 activities a second on a machine whose fsync takes 3 ms, 67 with these. A
# commit survives a crash of the server; the last ones may be lost if the machine loses power.
TEMPORAL_SQLITE_PRAGMAS = ("journal_mode=wal", "synchronous=normal")


class DevError(Exception):
    """A one-line reason why the stack cannot start or had to stop."""


@dataclass
class Child:
    """A supervised command, leader of its own process group."""

    name: str
    process: asyncio.subprocess.Process
    # Where its output goes, when not to this terminal.
    log: Path | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def describe_exit(self) -> str:
        code = self.process.returncode
        if code is not None and code < 0:
            how = f"was killed by {signal.Signals(-code).name}"
        else:
            how = f"exited with code {code}"
        return f"{self.name} (pid {self.pid}) {how}{self._last_words()}"

    def _last_words(self) -> str:
        """The last line of its log, which says why, more often than not."""
        if self.log is None:
            return ""
        with contextlib.suppress(OSError):
            lines = self.log.read_text(errors="replace").strip().splitlines()
            if lines:
                return f" ({self.log}: {lines[-1][:300]})"
        return ""


def venv_binary(name: str) -> Path:
    """A console script installed next to this interpreter (PATH may not include the venv)."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise DevError(f"{path} is missing: reinstall the project (make dev does it)")
    return path


def check_port_free(host: str, port: int, setting: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As the servers themselves do: a connection of the last run still in TIME_WAIT
        # leaves the port free; only a socket that listens there makes it taken.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise DevError(
                    f"port {port} is already in use: set {setting} to another port"
                ) from None
            raise


def check_ports(settings: Settings) -> None:
    host = settings.ce4big_host
    check_port_free(host, settings.ce4big_port, "CE4BIG_PORT")
    if settings.embedded_temporal:
        check_port_free("127.0.0.1", settings.temporal_dev_port, "TEMPORAL_DEV_PORT")
        check_port_free("127.0.0.1", settings.temporal_ui_port, "TEMPORAL_UI_PORT")
    if settings.embedded_smtp:
        check_port_free("127.0.0.1", settings.smtp_port, "SMTP_PORT")


async def wait_for_port(host: str, port: int, child: Child) -> None:
    while True:
        if child.process.returncode is not None:
            raise DevError(f"{child.describe_exit()}: the stack is stopped")
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError:
            await asyncio.sleep(0.2)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return


async def spawn(name: str, *command: str, log: Path | None = None) -> Child:
    """`command` in a new session (so a process group of its own, out of the terminal's
    reach), its output on this terminal unless `log` names a file."""
    output = log.open("ab") if log is not None else None
    try:
        process = await asyncio.create_subprocess_exec(
            *command,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT if output is not None else None,
            start_new_session=True,
        )
    finally:
        if output is not None:
            output.close()
    return Child(name, process, log)


def _signal_group(child: Child, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, sig)


async def stop_child(child: Child, grace: float) -> None:
    """SIGTERM to the child's group, SIGKILL after `grace` seconds; then the group's stragglers (a
    killed `ce4big api` leaves its uvicorn processes behind) get SIGKILL too."""
    if child.process.returncode is None:
        _signal_group(child, signal.SIGTERM)
        try:
            await asyncio.wait_for(child.process.wait(), grace)
        except TimeoutError:
            _signal_group(child, signal.SIGKILL)
            await child.process.wait()
    _signal_group(child, signal.SIGKILL)


def temporal_sqlite_arguments() -> list[str]:
    return [argument for p in TEMPORAL_SQLITE_PRAGMAS for argument in ("--sqlite-pragma", p)]


def start_temporal_command(settings: Settings) -> list[str]:
    return [
        str(venv_binary("temporal")),
        "server",
        "start-dev",
        "--ip", "127.0.0.1",
        "--port", str(settings.temporal_dev_port),
        "--ui-port", str(settings.temporal_ui_port),
        "--db-filename", str(settings.data_dir / "temporal.db"),
        "--namespace", settings.temporal_namespace,
        "--log-level", "warn",
        *temporal_sqlite_arguments(),
        # The exchange's search attributes, in a new data folder (see prepare_temporal for an
        # older one).
        *dev_server_arguments(),
    ]  # fmt: skip


def prepare_database(settings: Settings) -> Engine:
    upgrade_database(settings.database_url)
    engine = make_engine(settings.database_url)
    with session_scope(engine) as session:
        if not is_seeded(session=session):
            print(seed_demo(session=session), flush=True)
    return engine


async def prepare_temporal(settings: Settings) -> None:
    client = await connect_temporal(settings)
    try:
        # The dev server applies its --search-attribute flags to a new database only: a data
        # folder from before the attributes gets them here (a no-op once they are there).
        try:
            await register_search_attributes(client)
        except SearchAttributeError as exc:
            raise DevError(str(exc)) from None
        # start-dev makes its namespaces with a retention of one day.
        try:
            await set_retention(client, settings.temporal_retention_days)
        except RPCError as exc:
            raise DevError(f"Temporal retention: {exc}") from None
    finally:
        # Dropped while the loop runs: a client left to the interpreter's exit can abort the
        # process (temporalio/sdk-python#300). The children connect on their own.
        del client
        gc.collect()


class DevStack:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.temporal: Child | None = None
        self.children: list[Child] = []
        self.sink: asyncio.Server | None = None
        self.engine: Engine | None = None

    async def start(self) -> None:
        settings = self.settings
        self.engine = await asyncio.to_thread(prepare_database, settings)
        if settings.embedded_temporal:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            self.temporal = await spawn(
                "the Temporal dev server",
                *start_temporal_command(settings),
                log=settings.data_dir / "temporal.log",
            )
            try:
                async with asyncio.timeout(TEMPORAL_START_SECONDS):
                    await wait_for_port("127.0.0.1", settings.temporal_dev_port, self.temporal)
            except TimeoutError:
                raise DevError(
                    f"the Temporal dev server did not open port {settings.temporal_dev_port} "
                    f"within {TEMPORAL_START_SECONDS} s (see {settings.data_dir}/temporal.log)"
                ) from None
            await prepare_temporal(settings)
        if settings.embedded_smtp:
            self.sink = await start_sink(self.engine, "127.0.0.1", settings.smtp_port)
        ce4big = str(venv_binary("ce4big"))
        web = await spawn("the web app", ce4big, "api")
        self.children.append(web)
        count = settings.worker_processes
        for number in range(1, count + 1):
            name = "the worker" if count == 1 else f"worker {number}"
            self.children.append(await spawn(name, ce4big, "worker"))
        host = settings.ce4big_host
        try:
            async with asyncio.timeout(WEB_START_SECONDS):
                await wait_for_port(
                    "127.0.0.1" if host in WILDCARD_HOSTS else host, settings.ce4big_port, web
                )
        except TimeoutError:
            raise DevError(
                f"the web app did not open port {settings.ce4big_port} within {WEB_START_SECONDS} s"
            ) from None

    def watched(self) -> list[Child]:
        return [*self.children, *([self.temporal] if self.temporal else [])]

    async def first_exit(self) -> Child:
        waits = {asyncio.ensure_future(c.process.wait()): c for c in self.watched()}
        try:
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
        return waits[next(iter(done))]

    async def stop(self) -> None:
        """The web app and the workers first (a worker finishing its activities still needs
        Temporal and the sink), then the sink, then Temporal."""
        await asyncio.gather(*(stop_child(c, CHILD_STOP_SECONDS) for c in self.children))
        if self.sink is not None:
            self.sink.close()
            await self.sink.wait_closed()
        if self.temporal is not None:
            await stop_child(self.temporal, TEMPORAL_STOP_SECONDS)
        if self.engine is not None:
            self.engine.dispose()


async def run_dev(settings: Settings) -> int:
    refusal = serving_refusal(settings, settings.ce4big_host)
    try:
        if refusal is not None:
            raise DevError(refusal)
        check_ports(settings)
    except DevError as exc:
        print(f"ce4big dev: {exc}", file=sys.stderr)
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    stack = DevStack(settings)
    stopping = asyncio.create_task(stop.wait())
    failure: str | None = None
    try:
        starting = asyncio.create_task(stack.start())
        await asyncio.wait([starting, stopping], return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
        else:
            await starting
            _print_urls(settings, stack)
            exited = asyncio.create_task(stack.first_exit())
            await asyncio.wait([exited, stopping], return_when=asyncio.FIRST_COMPLETED)
            if exited.done():
                failure = f"{exited.result().describe_exit()}: the stack is stopped"
            exited.cancel()
    except DevError as exc:
        failure = str(exc)
    finally:
        stopping.cancel()
        await stack.stop()
    # Last, after the children's own lines about stopping.
    if failure is not None:
        print(f"ce4big dev: {failure}", file=sys.stderr, flush=True)
        return 1
    print("ce4big dev: stopped", flush=True)
    return 0


def _print_urls(settings: Settings, stack: DevStack) -> None:
    web = f"http://{settings.ce4big_host}:{settings.ce4big_port}"
    lines = [
        "CE4BIG Exchange is running:",
        f"  web app and API   {web}   (OpenAPI: {web}/docs)",
        f"  health            {web}/healthz",
    ]
    if settings.embedded_smtp:
        lines.append(
            f"  dev mailbox       {web}/dev/mailbox   (SMTP sink on 127.0.0.1:{settings.smtp_port})"
        )
    if settings.embedded_temporal:
        lines.append(f"  Temporal UI       http://127.0.0.1:{settings.temporal_ui_port}")
        lines.append(f"  Temporal gRPC     127.0.0.1:{settings.temporal_dev_port}")
    else:
        lines.append(f"  Temporal          {settings.temporal_address}")
    processes = ", ".join(f"{c.name} (pid {c.pid})" for c in stack.watched())
    lines.append(f"  processes         {processes}")
    lines.append("Press Ctrl-C to stop.")
    print("\n".join(lines), flush=True)
