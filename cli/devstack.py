"""`ce4big dev`: the whole product on one machine with embedded defaults.

One process runs the web app, the worker and the SMTP sink on one event loop; the Temporal
dev server is its only child, in its own process group so that nothing outlives a stop.
"""

import asyncio
import contextlib
import errno
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import uvicorn
from sqlalchemy import Engine
from temporalio.service import RPCError

from api.main import create_app
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
from emails.previews import EmailPreviews
from emails.signin import SignInMailer

logger = logging.getLogger("ce4big.dev")
TEMPORAL_START_SECONDS = 60


class DevError(Exception):
    """A one-line reason why the stack cannot start."""


class _Server(uvicorn.Server):
    # The dev stack owns SIGINT/SIGTERM; uvicorn must not re-raise them after shutdown.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


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


async def wait_for_port(host: str, port: int, process: subprocess.Popen[bytes]) -> None:
    while True:
        if process.poll() is not None:
            raise DevError(f"the Temporal dev server exited with code {process.returncode}")
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError:
            await asyncio.sleep(0.2)
            continue
        writer.close()
        await writer.wait_closed()
        return


def start_temporal(settings: Settings) -> subprocess.Popen[bytes]:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    log = (settings.data_dir / "temporal.log").open("ab")
    command = [
        str(venv_binary("temporal")),
        "server",
        "start-dev",
        "--ip", "127.0.0.1",
        "--port", str(settings.temporal_dev_port),
        "--ui-port", str(settings.temporal_ui_port),
        "--db-filename", str(settings.data_dir / "temporal.db"),
        "--namespace", settings.temporal_namespace,
        "--log-level", "warn",
        # The exchange's search attributes, in a new data folder (see run_dev for an older one).
        *dev_server_arguments(),
    ]  # fmt: skip
    return subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip


def stop_process(process: subprocess.Popen[bytes], timeout: float = 10) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def prepare_database(settings: Settings) -> Engine:
    upgrade_database(settings.database_url)
    engine = make_engine(settings.database_url)
    with session_scope(engine) as session:
        if not is_seeded(session=session):
            print(seed_demo(session=session))
    return engine


def check_ports(settings: Settings) -> None:
    host = settings.ce4big_host
    check_port_free(host, settings.ce4big_port, "CE4BIG_PORT")
    if settings.embedded_temporal:
        check_port_free("127.0.0.1", settings.temporal_dev_port, "TEMPORAL_DEV_PORT")
        check_port_free("127.0.0.1", settings.temporal_ui_port, "TEMPORAL_UI_PORT")
    if settings.embedded_smtp:
        check_port_free("127.0.0.1", settings.smtp_port, "SMTP_PORT")


async def run_dev(settings: Settings) -> int:
    from worker import run_worker

    try:
        check_ports(settings)
    except DevError as exc:
        print(f"ce4big dev: {exc}", file=sys.stderr)
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    temporal: subprocess.Popen[bytes] | None = None
    sink: asyncio.Server | None = None
    try:
        engine = await asyncio.to_thread(prepare_database, settings)
        if settings.embedded_temporal:
            temporal = start_temporal(settings)
            try:
                async with asyncio.timeout(TEMPORAL_START_SECONDS):
                    await wait_for_port("127.0.0.1", settings.temporal_dev_port, temporal)
            except TimeoutError:
                raise DevError(
                    f"the Temporal dev server did not open port {settings.temporal_dev_port} "
                    f"within {TEMPORAL_START_SECONDS} s (see {settings.data_dir}/temporal.log)"
                ) from None
        if settings.embedded_smtp:
            sink = await start_sink(engine, "127.0.0.1", settings.smtp_port)
        client = await connect_temporal(settings)
        if settings.embedded_temporal:
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
        server = _Server(
            uvicorn.Config(
                create_app(
                    settings,
                    temporal_client=client,
                    mail_previews=EmailPreviews(),
                    sign_in_mailer=SignInMailer(settings),
                ),
                host=settings.ce4big_host,
                port=settings.ce4big_port,
                log_level="warning",
            )
        )
        worker_task = asyncio.create_task(run_worker(settings, stop, client))
        server_task = asyncio.create_task(server.serve())
        _print_urls(settings)
        await asyncio.wait(
            [asyncio.create_task(stop.wait()), worker_task, server_task],
            return_when=asyncio.FIRST_COMPLETED,
        )
        stop.set()
        server.should_exit = True
        await asyncio.gather(worker_task, server_task, return_exceptions=True)
        for task in (worker_task, server_task):
            if not task.cancelled() and task.exception() is not None:
                raise DevError(f"stopped after an error: {task.exception()}")
    except DevError as exc:
        print(f"ce4big dev: {exc}", file=sys.stderr)
        return 1
    finally:
        if sink is not None:
            sink.close()
        if temporal is not None:
            await asyncio.to_thread(stop_process, temporal)
    print("ce4big dev: stopped")
    return 0


def _print_urls(settings: Settings) -> None:
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
    lines.append("Press Ctrl-C to stop.")
    print("\n".join(lines), flush=True)
