"""The product as it runs in production, one process each, on free ports of this machine.

The Temporal dev server (the venv's `temporal`, on a SQLite file), `ce4big worker` and
`ce4big api` are subprocesses, each in a process group of its own so that a fault can SIGKILL
one and the end of a test kills whatever is left; PostgreSQL is a database of the test's own on
the server that TEST_POSTGRES_URL names, or an instance the test starts itself (initdb, pg_ctl)
when the fault is to stop it. The SMTP server (aiosmtpd) runs on the test's event loop: the
worker delivers to it over TCP like to any relay.
"""

import asyncio
import contextlib
import email
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.smtp import SMTP
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.exc import OperationalError

from ce4big.searchattributes import dev_server_arguments
from ce4big.settings import Settings
from tests.conftest import DEFAULT_POSTGRES_URL, venv_binary
from tests.ports import free_port

START_SECONDS = 90.0
STOP_SECONDS = 10.0
DAY = 86400.0
# A day of the lifecycle lasts 25 ms: the meeting a day ahead and the survey's delay pass in
# well under a second, so an exchange runs from request to outcome in seconds.
TIME_SCALE = DAY * 40
# Reminders and deadlines of the human steps, in real seconds: beyond any test, so that no
# reminder joins the e-mails an exchange is expected to send, even when a fault holds it up.
HUMAN_HOLD_SECONDS = 3600.0
HUMAN_REMINDERS = (
    "VETTING_REMINDER_DAYS",
    "CHANGES_REMINDER_DAYS",
    "SHORTLIST_REMINDER_DAYS",
    "HOST_REVIEW_CONSENT_DAYS",
    "PARTNER_REMINDER_DAYS",
    "SCHEDULING_REMINDER_DAYS",
    "SURVEY_REMINDER_DAYS",
)
HUMAN_DEADLINES = (
    "VETTING_ESCALATION_DAYS",
    "CHANGES_EXPIRY_DAYS",
    "SHORTLIST_ESCALATION_DAYS",
    "PARTNER_DEADLINE_DAYS",
    "SCHEDULING_DEADLINE_DAYS",
    "SURVEY_CLOSE_DAYS",
)
SETTING_NAMES = frozenset(name.upper() for name in Settings.model_fields)

LINK = re.compile(r"^https?://\S+/t/(\S+?)\r?$", re.MULTILINE)
MARKER = re.compile(r"\[(fault-[0-9a-f]+-\d+)\]")


# ---------------------------------------------------------------------- processes


# Whatever a test started and has not stopped yet: tests/faults/conftest.py kills what is left
# after each test, even one whose coroutine was abandoned (a pytest-timeout, say).
LEFT_RUNNING: set["Process | OwnPostgres"] = set()


class Process:
    """One command in a process group of its own, its output in a log file per start."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], folder: Path) -> None:
        self.name = name
        self._command = command
        self._env = env
        self._folder = folder
        self._popen: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.log = folder / f"{name}.log"

    def start(self) -> None:
        assert self._popen is None or self._popen.poll() is not None, f"{self.name} runs"
        self.starts += 1
        self.log = self._folder / f"{self.name}-{self.starts}.log"
        with self.log.open("wb") as out:
            self._popen = subprocess.Popen(
                self._command,
                env=self._env,
                cwd=self._folder,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        LEFT_RUNNING.add(self)

    @property
    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def exited(self) -> str | None:
        """Why the process is not running, or None while it runs."""
        if self._popen is None:
            return f"{self.name} was never started"
        code = self._popen.poll()
        return None if code is None else f"{self.name} exited with {code}: {self.tail()}"

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

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after the grace period; the group's stragglers too."""
        if self._popen is None:
            return
        if self._popen.poll() is None:
            self._signal_group(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._popen.wait(STOP_SECONDS)
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

    def log_has(self, needle: str) -> bool:
        try:
            return needle in self.log.read_text(errors="replace")
        except OSError:
            return False

    def count_in_logs(self, needle: str) -> int:
        """Lines holding `needle` in the logs of every start."""
        return sum(
            line.count(needle)
            for log in sorted(self._folder.glob(f"{self.name}-*.log"))
            for line in log.read_text(errors="replace").splitlines()
        )


async def wait_until(
    check: Any, what: str, process: Process, seconds: float = START_SECONDS
) -> None:
    """Polls an async `check` while `process` runs; fails with the process's log otherwise."""
    deadline = time.monotonic() + seconds
    while True:
        reason = process.exited()
        if reason is not None:
            raise AssertionError(f"{what}: {reason}")
        if await check():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {seconds:.0f} s\n{process.tail()}")
        await asyncio.sleep(0.1)


async def port_open(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


# ---------------------------------------------------------------------- PostgreSQL


def _on_server(server_url: str, statement: str) -> None:
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(statement))
    finally:
        admin.dispose()


@contextlib.contextmanager
def shared_database() -> Iterator[str]:
    """A database of this test's own on the server TEST_POSTGRES_URL names, dropped after."""
    server_url = os.environ.get("TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    name = f"ce4big_faults_{uuid.uuid4().hex[:12]}"
    try:
        _on_server(server_url, f'CREATE DATABASE "{name}"')
    except OperationalError as exc:
        if os.environ.get("CE4BIG_REQUIRE_POSTGRES"):
            raise
        pytest.skip(f"no PostgreSQL answers at {server_url}: {exc.orig}")
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        _on_server(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


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


# ---------------------------------------------------------------------- SMTP


@dataclass(frozen=True)
class Delivery:
    message_id: str
    kind: str
    recipient: str
    marker: str | None
    token: str | None


@dataclass
class Mailbox:
    """The SMTP server's handler: every accepted message by exchange marker, kind and
    recipient. While `deferring`, every message is answered 451 after its data (the sender
    must keep it and try again); refused connections are the listener's business."""

    deliveries: list[Delivery] = field(default_factory=list)
    deferring: bool = False
    deferred: int = 0
    _index: dict[tuple[str, str, str], Delivery] = field(default_factory=dict)

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
        if self.deferring:
            self.deferred += 1
            return "451 4.3.0 Mailbox busy, try again later"
        raw = envelope.original_content or envelope.content or b""
        # The legacy parser: a tenth of the CPU of policy.default, on the test's own loop.
        message = email.message_from_bytes(raw)
        text_part = ""
        for part in message.walk():
            if part.get_content_type() == "text/plain":
                payload = part.get_payload(decode=True)
                if isinstance(payload, bytes):
                    text_part = payload.decode(part.get_content_charset() or "utf-8")
                break
        marker = MARKER.search(text_part)
        links = LINK.findall(text_part)
        for recipient in envelope.rcpt_tos:
            delivery = Delivery(
                message_id=str(message["Message-ID"] or "").strip(),
                kind=str(message["X-CE4BIG-Kind"] or ""),
                recipient=str(recipient).lower(),
                marker=marker.group(1) if marker else None,
                token=links[0] if links else None,
            )
            self.deliveries.append(delivery)
            if delivery.marker is not None:
                key = (delivery.marker, delivery.kind, delivery.recipient)
                self._index.setdefault(key, delivery)
        return "250 2.0.0 Accepted"

    def find(self, marker: str, kind: str, recipient: str) -> Delivery | None:
        return self._index.get((marker, kind, recipient.lower()))

    def copies(self) -> Counter[str]:
        return Counter(d.message_id for d in self.deliveries)


class MailServer:
    """aiosmtpd on a fixed port of the test's loop; the listener can be closed (connections
    refused) and opened again on the same port."""

    def __init__(self, mailbox: Mailbox) -> None:
        self.mailbox = mailbox
        self.port = free_port()
        self._server: asyncio.Server | None = None

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: SMTP(self.mailbox, hostname="faults-mx", loop=loop),
            host="127.0.0.1",
            port=self.port,
            reuse_address=True,
        )

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None


# ---------------------------------------------------------------------- the stack


@dataclass
class Stack:
    folder: Path
    database_url: str
    mail: MailServer
    temporal_port: int
    api_port: int
    temporal: Process
    worker: Process
    api: Process
    env: dict[str, str]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def mailbox(self) -> Mailbox:
        return self.mail.mailbox

    async def start_temporal(self) -> None:
        self.temporal.start()
        await wait_until(
            lambda: port_open(self.temporal_port), "the Temporal dev server", self.temporal
        )

    async def start_worker(self) -> None:
        self.worker.start()

        async def polling() -> bool:
            return self.worker.log_has("worker polling task queue")

        await wait_until(polling, "ce4big worker", self.worker)

    async def start_api(self) -> None:
        self.api.start()

        async def healthy() -> bool:
            try:
                async with httpx.AsyncClient(timeout=3) as client:
                    response = await client.get(f"{self.base_url}/healthz")
            except httpx.TransportError:
                return False
            return response.status_code == 200

        await wait_until(healthy, "ce4big api /healthz", self.api)

    def processes(self) -> list[Process]:
        return [self.api, self.worker, self.temporal]

    def check_running(self) -> None:
        for process in self.processes():
            reason = process.exited()
            assert reason is None, reason

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} ({p.log.name})\n{p.tail()}" for p in self.processes())


def product_env(
    *,
    folder: Path,
    database_url: str,
    temporal_port: int,
    smtp_port: int,
    api_port: int,
) -> dict[str, str]:
    """The README's configuration, and nothing else of this process's own settings."""
    held_days = HUMAN_HOLD_SECONDS * TIME_SCALE / DAY
    env = {k: v for k, v in os.environ.items() if k.upper() not in SETTING_NAMES}
    env.update(
        {
            "CE4BIG_ENV": "test",
            "SECRET_KEY": "faults-" + uuid.uuid4().hex,
            "DATABASE_URL": database_url,
            # Two processes on a server that other test runs share: a small pool each.
            "DB_POOL_SIZE": "4",
            "DB_MAX_OVERFLOW": "12",
            "TEMPORAL_ADDRESS": f"127.0.0.1:{temporal_port}",
            "TEMPORAL_NAMESPACE": "default",
            "TEMPORAL_TASK_QUEUE": f"faults-{uuid.uuid4().hex[:8]}",
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(smtp_port),
            "SMTP_TLS": "false",
            "SMTP_STARTTLS": "false",
            "SMTP_TIMEOUT_SECONDS": "10",
            "BASE_URL": f"http://127.0.0.1:{api_port}",
            "CE4BIG_HOST": "127.0.0.1",
            "CE4BIG_PORT": str(api_port),
            "CE4BIG_TIME_SCALE": str(TIME_SCALE),
            # Every person of these runs, each SME, broker and partner, sends from the test's
            # loopback address: the per-client limits would count them as one client.
            "DECISIONS_PER_CLIENT": "100000",
            "LINK_ACTIONS_PER_CLIENT": "100000",
            "DATA_DIR": str(folder / "data"),
            # The outcome wave, months later, is a workflow of its own: not part of these runs.
            "OUTCOME_WAVE_DAYS": "0",
            "PYTHONUNBUFFERED": "1",
        }
    )
    for name in HUMAN_REMINDERS:
        env[name] = str(held_days)
    for name in HUMAN_DEADLINES:
        env[name] = str(2 * held_days)
    return env


@contextlib.asynccontextmanager
async def running_stack(
    folder: Path, database_url: str, *, temporal_file: bool = False
) -> AsyncIterator[Stack]:
    """Dev server, worker, web app and SMTP server up; everything killed on the way out.

    The dev server keeps its state in memory unless `temporal_file`: its SQLite file, which a
    restart needs, costs it twice the CPU. The file is written ahead (WAL) and synced at
    checkpoints only, as SQLite recommends for WAL: a SIGKILL loses nothing committed that
    way (only a power cut could), and with its default journal the dev server took twice as
    long again on this shared machine."""
    mail = MailServer(Mailbox())
    temporal_port, api_port = free_port(), free_port()
    env = product_env(
        folder=folder,
        database_url=database_url,
        temporal_port=temporal_port,
        smtp_port=mail.port,
        api_port=api_port,
    )
    ce4big = venv_binary("ce4big")
    temporal = Process(
        "temporal",
        [
            venv_binary("temporal"), "server", "start-dev",
            "--ip", "127.0.0.1",
            "--port", str(temporal_port),
            "--ui-port", str(free_port()),
            "--http-port", str(free_port()),
            "--headless",
            *(
                [
                    "--db-filename", str(folder / "temporal.db"),
                    "--sqlite-pragma", "journal_mode=wal",
                    "--sqlite-pragma", "synchronous=normal",
                ]
                if temporal_file
                else []
            ),
            "--namespace", "default",
            "--log-level", "error",
            *dev_server_arguments(),
        ],
        env,
        folder,
    )  # fmt: skip
    stack = Stack(
        folder=folder,
        database_url=database_url,
        mail=mail,
        temporal_port=temporal_port,
        api_port=api_port,
        temporal=temporal,
        worker=Process("worker", [ce4big, "worker"], env, folder),
        api=Process("api", [ce4big, "api"], env, folder),
        env=env,
    )
    try:
        await mail.open()

        async def temporal_then_worker() -> None:
            # The worker checks the search attributes at start; the web app connects lazily.
            await stack.start_temporal()
            await stack.start_worker()

        await asyncio.gather(temporal_then_worker(), stack.start_api())
        yield stack
    finally:
        await asyncio.gather(*(asyncio.to_thread(p.stop) for p in stack.processes()))
        await mail.close()
