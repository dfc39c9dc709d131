"""`ce4big dev` started the way a newcomer starts it, on free ports in a scratch folder."""

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlmodel import Session, create_engine, func, select
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client

from bench.stack import free_port, process_stats
from ce4big.models import Organisation, User
from ce4big.searchattributes import SearchAttributeError, check_search_attributes
from cli.devstack import DevError, check_port_free

CE4BIG = str(Path(sys.executable).parent / "ce4big")
START_SECONDS = 120


def processes_mentioning(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = next(
                line for line in (entry / "status").read_text().splitlines()
                if line.startswith("State:")
            )  # fmt: skip
        except (OSError, StopIteration):
            continue
        if marker in cmdline and "zombie" not in state:
            found.append(int(entry.name))
    return found


def process_table() -> dict[int, tuple[int, int]]:
    """Every live process: pid -> (parent pid, process group); zombies left out."""
    return {
        pid: (int(fields[1]), int(fields[2])) for pid, fields in process_stats() if fields[0] != "Z"
    }


def descendants(pid: int) -> dict[int, int]:
    """The processes under `pid`, children of children included: pid -> process group."""
    table = process_table()
    found: dict[int, int] = {}
    parents = {pid}
    while parents:
        children = {p for p, (ppid, _) in table.items() if ppid in parents and p not in found}
        found.update((p, table[p][1]) for p in children)
        parents = children
    return found


def left_running(tree: dict[int, int]) -> list[int]:
    """Processes of `tree`, or of its process groups, still running."""
    groups = set(tree.values())
    return sorted(p for p, (_, pgid) in process_table().items() if p in tree or pgid in groups)


def command_of(pid: int) -> str:
    return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()


@pytest.fixture
def dev_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment of a `ce4big dev` in `tmp_path`; what it started is killed after the
    test, even a test that failed half-way."""
    env = {
        **os.environ,
        "CE4BIG_ENV": "development",
        "DATA_DIR": str(tmp_path / "data"),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'data' / 'app.db'}",
        "CE4BIG_PORT": str(free_port()),
        "TEMPORAL_DEV_PORT": str(free_port()),
        "TEMPORAL_UI_PORT": str(free_port()),
        "SMTP_PORT": str(free_port()),
    }
    for name in ("TEMPORAL_ADDRESS", "SMTP_HOST"):
        env.pop(name, None)
    yield env
    for pid in processes_mentioning(str(tmp_path)):
        os.kill(pid, signal.SIGKILL)
    while _started:
        process = _started.pop()
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        process.communicate()


_started: list[subprocess.Popen[str]] = []


def start_dev(env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [CE4BIG, "dev"], env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    _started.append(process)
    return process


def wait_healthy(process: subprocess.Popen[str], port: str) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read() if process.stdout else ""
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"/healthz did not answer 200 within {START_SECONDS} s")


def stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=60)
    return output


async def search_attribute_problem(target: str) -> str:
    """What the worker's start-up check says of the server at `target` ("" when it passes)."""
    deadline = time.monotonic() + START_SECONDS
    while True:
        try:
            client = await Client.connect(target)
            break
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.3)
    try:
        await check_search_attributes(client)
    except SearchAttributeError as exc:
        return str(exc)
    return ""


async def retention(target: str) -> timedelta:
    """How long the dev server's namespace keeps closed workflows."""
    client = await Client.connect(target)
    described = await client.workflow_service.describe_namespace(
        DescribeNamespaceRequest(namespace=client.namespace)
    )
    return described.config.workflow_execution_retention_ttl.ToTimedelta()


def counts(database_url: str) -> tuple[int, int]:
    engine = create_engine(database_url)
    with Session(engine) as session:
        users = session.exec(select(func.count()).select_from(User)).one()
        organisations = session.exec(select(func.count()).select_from(Organisation)).one()
    engine.dispose()
    return users, organisations


class TestDevStack:
    def test_serves_health_then_stops_every_process_and_keeps_data(
        self, dev_env: dict[str, str], tmp_path: Path
    ) -> None:
        first = start_dev(dev_env, tmp_path)
        wait_healthy(first, dev_env["CE4BIG_PORT"])
        ui = httpx.get(f"http://127.0.0.1:{dev_env['TEMPORAL_UI_PORT']}/", timeout=5)
        assert ui.status_code == 200
        tree = descendants(first.pid)
        leaders = {
            pid: command_of(pid).split(" ")[1:3] for pid, group in tree.items() if pid == group
        }
        output = stop(first)
        assert first.returncode == 0, output
        assert f"http://127.0.0.1:{dev_env['CE4BIG_PORT']}" in output
        assert "demo data:" in output
        # The web app and the worker are what production runs, each leading a group of its own
        # (with the Temporal dev server, three).
        assert len(leaders) == 3, leaders
        assert [CE4BIG, "api"] in leaders.values() and [CE4BIG, "worker"] in leaders.values()
        assert left_running(tree) == []
        assert processes_mentioning(str(tmp_path)) == []
        seeded = counts(dev_env["DATABASE_URL"])
        assert seeded[0] > 0 and seeded[1] >= 80

        second = start_dev(dev_env, tmp_path)
        wait_healthy(second, dev_env["CE4BIG_PORT"])
        output = stop(second)
        assert second.returncode == 0, output
        assert "demo data:" not in output
        assert counts(dev_env["DATABASE_URL"]) == seeded
        assert processes_mentioning(str(tmp_path)) == []

    @pytest.mark.parametrize(
        ("command", "name", "processes"),
        [
            ("worker", r"worker \d", {"WORKER_PROCESSES": "2"}),
            ("api", "the web app", {"WEB_PROCESSES": "2"}),
        ],
    )
    def test_a_child_that_dies_is_one_line_and_stops_the_stack(
        self,
        dev_env: dict[str, str],
        tmp_path: Path,
        command: str,
        name: str,
        processes: dict[str, str],
    ) -> None:
        dev = start_dev({**dev_env, **processes}, tmp_path)
        wait_healthy(dev, dev_env["CE4BIG_PORT"])
        tree = descendants(dev.pid)
        victims = [p for p in tree if command_of(p).split(" ")[1:3] == [CE4BIG, command]]
        if command == "api":
            # uvicorn's own processes, in the web app's group.
            assert len([p for p, group in tree.items() if group == victims[0]]) >= 3
        os.kill(victims[-1], signal.SIGKILL)
        output, _ = dev.communicate(timeout=60)

        assert dev.returncode == 1, output
        reports = [line for line in output.splitlines() if line.startswith("ce4big dev:")]
        assert len(reports) == 1, output
        assert re.fullmatch(
            f"ce4big dev: {name} \\(pid {victims[-1]}\\) was killed by SIGKILL: the stack is "
            "stopped",
            reports[0],
        ), output
        assert output.rstrip().endswith(reports[0])
        assert left_running(tree) == []

    def test_a_temporal_database_from_before_the_search_attributes_gets_them(
        self, dev_env: dict[str, str], tmp_path: Path
    ) -> None:
        # start-dev applies --search-attribute to a new database only.
        (tmp_path / "data").mkdir()
        target = f"127.0.0.1:{dev_env['TEMPORAL_DEV_PORT']}"
        bare = subprocess.Popen(
            [str(Path(sys.executable).parent / "temporal"), "server", "start-dev", "--headless",
             "--ip", "127.0.0.1", "--port", dev_env["TEMPORAL_DEV_PORT"],
             "--db-filename", str(tmp_path / "data" / "temporal.db"), "--log-level", "error"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            assert "not registered" in asyncio.run(search_attribute_problem(target))
        finally:
            bare.terminate()
            bare.wait(30)

        dev = start_dev(dev_env, tmp_path)
        wait_healthy(dev, dev_env["CE4BIG_PORT"])
        problem = asyncio.run(search_attribute_problem(target))
        output = stop(dev)
        assert dev.returncode == 0, output
        assert problem == ""

    def test_the_dev_server_keeps_closed_workflows_as_long_as_the_setting_says(
        self, dev_env: dict[str, str], tmp_path: Path
    ) -> None:
        # start-dev's own namespace keeps them one day.
        dev_env["TEMPORAL_RETENTION_DAYS"] = "3"
        dev = start_dev(dev_env, tmp_path)
        wait_healthy(dev, dev_env["CE4BIG_PORT"])
        kept = asyncio.run(retention(f"127.0.0.1:{dev_env['TEMPORAL_DEV_PORT']}"))
        output = stop(dev)
        assert dev.returncode == 0, output
        assert kept == timedelta(days=3)

    def test_port_in_use_names_the_port_and_the_setting(
        self, dev_env: dict[str, str], tmp_path: Path
    ) -> None:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", int(dev_env["CE4BIG_PORT"])))
            taken.listen()
            result = subprocess.run(
                [CE4BIG, "dev"], env=dev_env, cwd=tmp_path, capture_output=True, text=True,
                timeout=60, check=False,
            )  # fmt: skip
        assert result.returncode == 1
        assert result.stderr.strip().count("\n") == 0, result.stderr
        assert dev_env["CE4BIG_PORT"] in result.stderr
        assert "CE4BIG_PORT" in result.stderr

    def test_development_settings_beyond_loopback_are_refused_in_one_line(
        self, dev_env: dict[str, str], tmp_path: Path
    ) -> None:
        result = subprocess.run(
            [CE4BIG, "dev"], env={**dev_env, "CE4BIG_HOST": "0.0.0.0"}, cwd=tmp_path,
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert result.returncode == 1
        assert result.stderr.strip().count("\n") == 0, result.stderr
        assert "CE4BIG_ENV=production" in result.stderr
        assert not (tmp_path / "data").exists()


class TestPortCheck:
    def test_a_port_whose_last_connection_is_in_time_wait_is_free(self) -> None:
        port = free_port()
        with socket.socket() as server:
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            server.bind(("127.0.0.1", port))
            server.listen()
            client = socket.create_connection(("127.0.0.1", port))
            connection, _ = server.accept()
            # The server's side closes first, so it waits in TIME_WAIT, as after a restart.
            connection.close()
            client.close()
        check_port_free("127.0.0.1", port, "CE4BIG_PORT")

    def test_a_listening_port_is_in_use(self) -> None:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            with pytest.raises(DevError, match=f"port {port} is already in use"):
                check_port_free("127.0.0.1", port, "CE4BIG_PORT")
