"""Open exchanges at scale: what 1,000, 5,000 and 10,000 exchanges waiting in vetting cost.

The product runs as production runs it: `ce4big api` (--web WEB_PROCESSES) and --workers
`ce4big worker` processes, the Temporal dev server (the venv's `temporal`, persisted in SQLite
in a temporary directory), the app database (SQLite there, or with --database postgresql a
database of the run's own on the server TEST_POSTGRES_URL names) and an SMTP server in this
process that counts what it receives. Settings are the defaults (time scale 1: every exchange
waits in vetting with its reminder and escalation timers pending) but for the per-client
limits, lifted because every request of the bench comes from 127.0.0.1.

For each step the SME creates exchanges over HTTP (--concurrency at a time) until the step's
count is open, then waits until every one has sent its vetting e-mail to the broker, and
prints: the start rate (answered POSTs per second, and exchanges in vetting per second), the
resident memory of the worker processes, of the web app and of the Temporal dev server, the
size of Temporal's database and of the app's, `GET /api/v1/exchanges` and
`GET /api/v1/exchanges/{id}` p50/p95 (--samples each, one at a time, as a manager, the detail
of random open exchanges: it queries a workflow that has most likely left the worker's cache)
and the memory per open exchange (the worker's growth since it started idle, and each
database's). Then --decide open exchanges are approved at once, and it prints the time until
every answer, every recorded transition, and every matching (candidates found and the
shortlist e-mail sent) is done. Goal at 10,000: worker RSS <= 1 GB, list p95 <= 150 ms,
detail p95 <= 300 ms, no error. Last line: one JSON object with each step's figures.

    .venv/bin/python bench/load.py [--steps 1000,5000,10000] [--database sqlite|postgresql]
        [--workers 1] [--web 1] [--concurrency 32] [--samples 200] [--decide 1000]
"""

import argparse
import asyncio
import contextlib
import os
import random
import re
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from sqlalchemy import Engine, func  # noqa: E402
from sqlmodel import Session, col, select  # noqa: E402

from bench.drive import HOME_BROKER, REQUEST, SME, seed  # noqa: E402
from bench.stack import (  # noqa: E402
    MailServer,
    ProductProcesses,
    TemporalServer,
    app_database,
    connection_limits,
    database_bytes,
    free_port,
    group_usage,
    p50_p95_ms,
    run_bench,
)
from ce4big.db import make_engine, session_scope, upgrade_database  # noqa: E402
from ce4big.models import ExchangeEvent  # noqa: E402
from ce4big.security import create_api_token  # noqa: E402
from ce4big.settings import Settings  # noqa: E402
from ce4big.users import add_user  # noqa: E402

MANAGER = "manager@ce4big.example"
GB = 1024**3
MB = 1024**2
GOAL_WORKER_RSS = 1 * GB
GOAL_LIST_P95_MS = 150.0
GOAL_DETAIL_P95_MS = 300.0
REQUEST_TIMEOUT = 120.0
SETTLE_SECONDS = 3600.0
DRAIN_SECONDS = 3600.0
PROGRESS_SECONDS = 15.0
RETRIES = 5
KIND = re.compile(rb"^X-CE4BIG-Kind: *([a-z_]+)", re.MULTILINE | re.IGNORECASE)


@dataclass
class Counting:
    """The SMTP server's handler: counts messages by kind (the X-CE4BIG-Kind header)."""

    kinds: Counter[str] = field(default_factory=Counter)

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
        raw = envelope.original_content or envelope.content or b""
        head = raw.split(b"\r\n\r\n", 1)[0]
        found = KIND.search(head)
        self.kinds[found.group(1).decode() if found else "?"] += len(envelope.rcpt_tos)
        return "250 2.0.0 Accepted"


@dataclass
class Calls:
    """Answers of a batch of requests: latencies of the successful ones, and every failure
    (a 503 is tried again after its Retry-After, and still counted)."""

    seconds: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    lost: int = 0


async def call(
    http: httpx.AsyncClient,
    calls: Calls,
    method: str,
    path: str,
    token: str,
    body: dict[str, Any] | None = None,
) -> httpx.Response | None:
    for _ in range(RETRIES):
        started = time.perf_counter()
        try:
            response = await http.request(
                method, path, json=body, headers={"Authorization": f"Bearer {token}"}
            )
        except httpx.HTTPError as exc:
            calls.errors[type(exc).__name__] += 1
            await asyncio.sleep(1)
            continue
        if response.status_code < 300:
            calls.seconds.append(time.perf_counter() - started)
            return response
        calls.errors[f"HTTP {response.status_code}"] += 1
        if response.status_code != 503:
            break
        await asyncio.sleep(float(response.headers.get("Retry-After", "2")))
    calls.lost += 1
    return None


def extra_tokens(engine: Engine) -> dict[str, str]:
    with session_scope(engine) as session:
        manager = add_user(session=session, email=MANAGER, role="manager", name="Manager")
        return {MANAGER: create_api_token(session=session, user=manager, days=1)}


def events_of(engine: Engine, kind: str, ids: list[int]) -> int:
    with Session(engine) as session:
        return int(
            session.exec(
                select(func.count(func.distinct(ExchangeEvent.exchange_id))).where(
                    ExchangeEvent.kind == kind, col(ExchangeEvent.exchange_id).in_(ids)
                )
            ).one()
        )


class Sampler:
    """Peak resident memory of process groups, sampled every second in the background."""

    def __init__(self, groups: Callable[[], dict[str, list[int]]]) -> None:
        self._groups = groups
        self.peaks: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None

    def now(self) -> dict[str, int]:
        return {name: group_usage(*pids)[1] for name, pids in self._groups().items()}

    def cpu(self) -> dict[str, float]:
        """CPU seconds of each group so far."""
        return {name: group_usage(*pids)[0] for name, pids in self._groups().items()}

    async def _run(self) -> None:
        while True:
            for name, rss in (await asyncio.to_thread(self.now)).items():
                self.peaks[name] = max(self.peaks.get(name, 0), rss)
            await asyncio.sleep(1)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    def reset(self) -> None:
        self.peaks = {}

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()


async def wait_for(
    what: str,
    done: Callable[[], Awaitable[tuple[int, int]]],
    seconds: float,
    processes: ProductProcesses,
) -> float:
    """Waits until `done` says (n, n); prints progress; returns the seconds it took."""
    started = time.perf_counter()
    said = started
    while True:
        have, want = await done()
        now = time.perf_counter()
        if have >= want:
            return now - started
        processes.check()
        if now - started > seconds:
            raise RuntimeError(f"{what}: {have}/{want} after {seconds:.0f} s")
        if now - said > PROGRESS_SECONDS:
            print(f"    {what}: {have}/{want} after {now - started:.0f} s", flush=True)
            said = now
        await asyncio.sleep(0.25)


def _mb(value: float) -> str:
    return f"{value / MB:.0f} MB"


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    steps = [int(s) for s in args.steps.split(",")]
    async with contextlib.AsyncExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="ce4big-load-"))
        folder = Path(tmp)
        database_url = stack.enter_context(app_database(args.database, tmp))
        await asyncio.to_thread(upgrade_database, database_url)
        engine = make_engine(database_url)
        stack.callback(engine.dispose)
        tokens = await asyncio.to_thread(seed, engine, touched=True)
        tokens |= await asyncio.to_thread(extra_tokens, engine)

        mailbox = Counting()
        smtp = MailServer(mailbox, hostname="load-mx")
        await smtp.open()
        stack.push_async_callback(smtp.close)
        temporal = TemporalServer(folder)
        stack.callback(temporal.child.stop)
        print(f"starting the Temporal dev server (SQLite in {tmp}), {args.database} for the app")
        await temporal.start()
        web_port = free_port()
        settings = Settings(
            _env_file=None,
            ce4big_env="development",
            database_url=database_url,
            base_url=f"http://127.0.0.1:{web_port}",
            ce4big_host="127.0.0.1",
            ce4big_port=web_port,
            smtp_host="127.0.0.1",
            smtp_port=smtp.port,
            temporal_address=temporal.target,
            temporal_task_queue=f"load-{uuid.uuid4().hex[:8]}",
            decisions_per_client=1_000_000,
            link_actions_per_client=1_000_000,
            web_processes=args.web,
            data_dir=folder / "data",
        )
        processes = ProductProcesses(folder, settings)
        stack.push_async_callback(processes.stop)
        print(f"starting ce4big api ({args.web} web) and {args.workers} ce4big worker", flush=True)
        await processes.start_api()
        await processes.start_workers(args.workers)
        sampler = Sampler(
            lambda: {
                "workers": [w.pid for w in processes.workers],
                "web": [processes.api.pid],
                "temporal": [temporal.child.pid],
            }
        )
        idle = await asyncio.to_thread(sampler.now)
        sampler.start()
        stack.callback(sampler.stop)
        print(
            f"idle: worker {_mb(idle['workers'])}, web {_mb(idle['web'])}, "
            f"Temporal {_mb(idle['temporal'])}",
            flush=True,
        )
        http = await stack.enter_async_context(
            httpx.AsyncClient(
                base_url=settings.base_url,
                timeout=REQUEST_TIMEOUT,
                limits=connection_limits(max(args.decide, args.concurrency)),
            )
        )
        measured = Load(args, http, tokens, engine, mailbox, processes, temporal, sampler, idle)
        rows = []
        for target in steps:
            rows.append(await measured.step(target))
        drain = await measured.decide(args.decide)
        return {"steps": rows, "drain": drain, "idle": idle, "e-mails": dict(mailbox.kinds)}


class Load:
    def __init__(
        self,
        args: argparse.Namespace,
        http: httpx.AsyncClient,
        tokens: dict[str, str],
        engine: Engine,
        mailbox: Counting,
        processes: ProductProcesses,
        temporal: TemporalServer,
        sampler: Sampler,
        idle: dict[str, int],
    ) -> None:
        self._args = args
        self._http = http
        self._tokens = tokens
        self._engine = engine
        self._mailbox = mailbox
        self._processes = processes
        self._temporal = temporal
        self._sampler = sampler
        self._idle = idle
        self.open: list[int] = []
        self._run = uuid.uuid4().hex[:8]

    async def _create(self, count: int) -> Calls:
        calls = Calls()
        gate = asyncio.Semaphore(self._args.concurrency)
        first = len(self.open)

        async def one(number: int) -> None:
            async with gate:
                body = {**REQUEST, "title": f"{REQUEST['title']} [load-{self._run}-{number}]"}
                response = await call(
                    self._http, calls, "POST", "/api/v1/exchanges", self._tokens[SME], body
                )
                if response is not None:
                    self.open.append(int(response.json()["id"]))

        await asyncio.gather(*(one(n) for n in range(first, first + count)))
        return calls

    async def _latencies(self, paths: list[str]) -> Calls:
        calls = Calls()
        for path in paths:
            await call(self._http, calls, "GET", path, self._tokens[MANAGER])
        return calls

    async def step(self, target: int) -> dict[str, Any]:
        count = max(0, target - len(self.open))
        print(f"step {target}: creating {count} exchanges, {self._args.concurrency} at a time")
        self._sampler.reset()
        started = time.perf_counter()
        created = await self._create(count)
        start_seconds = time.perf_counter() - started

        async def in_vetting() -> tuple[int, int]:
            return self._mailbox.kinds["vetting_needed"], len(self.open)

        await wait_for("vetting e-mails", in_vetting, SETTLE_SECONDS, self._processes)
        settle_seconds = time.perf_counter() - started
        # Quiet for a moment: what the open exchanges hold, not what starting them used.
        await asyncio.sleep(3)
        usage = await asyncio.to_thread(self._sampler.now)
        temporal_db = await asyncio.to_thread(self._temporal.database_bytes)
        app_db = await asyncio.to_thread(
            database_bytes, self._engine.url.render_as_string(hide_password=False)
        )
        samples = self._args.samples
        listed = await self._latencies(["/api/v1/exchanges"] * samples)
        picked = random.sample(self.open, min(samples, len(self.open)))
        detailed = await self._latencies([f"/api/v1/exchanges/{i}" for i in picked])
        l50, l95 = p50_p95_ms(listed.seconds)
        d50, d95 = p50_p95_ms(detailed.seconds)
        opened = len(self.open)
        errors = created.errors + listed.errors + detailed.errors
        lost = created.lost + listed.lost + detailed.lost
        row: dict[str, Any] = {
            "open": opened,
            "created": count - created.lost,
            "start_per_s": round((count - created.lost) / start_seconds, 1),
            "in_vetting_per_s": round(count / settle_seconds, 1),
            "create_p95_ms": round(p50_p95_ms(created.seconds)[1], 1),
            "worker_rss_mb": round(usage["workers"] / MB, 1),
            "worker_rss_peak_mb": round(self._sampler.peaks.get("workers", 0) / MB, 1),
            "web_rss_mb": round(usage["web"] / MB, 1),
            "temporal_rss_mb": round(usage["temporal"] / MB, 1),
            "temporal_db_mb": round(temporal_db / MB, 1),
            "app_db_mb": round(app_db / MB, 1),
            "list_p50_ms": round(l50, 1),
            "list_p95_ms": round(l95, 1),
            "detail_p50_ms": round(d50, 1),
            "detail_p95_ms": round(d95, 1),
            "worker_kb_per_exchange": round(
                (usage["workers"] - self._idle["workers"]) / opened / 1024, 1
            ),
            "temporal_rss_kb_per_exchange": round(
                (usage["temporal"] - self._idle["temporal"]) / opened / 1024, 1
            ),
            "temporal_db_kb_per_exchange": round(temporal_db / opened / 1024, 1),
            "app_db_kb_per_exchange": round(app_db / opened / 1024, 1),
            "errors": dict(errors),
            "lost": lost,
        }
        print(
            f"  {opened} open: started {row['start_per_s']}/s (POST p95 "
            f"{row['create_p95_ms']:.0f} ms), in vetting {row['in_vetting_per_s']}/s; worker RSS "
            f"{row['worker_rss_mb']:.0f} MB (peak {row['worker_rss_peak_mb']:.0f}), web "
            f"{row['web_rss_mb']:.0f} MB, Temporal "
            f"{row['temporal_rss_mb']:.0f} MB; Temporal DB {row['temporal_db_mb']:.1f} MB, app DB "
            f"{row['app_db_mb']:.1f} MB; list p50/p95 {l50:.0f}/{l95:.0f} ms, detail p50/p95 "
            f"{d50:.0f}/{d95:.0f} ms; per open exchange: worker {row['worker_kb_per_exchange']} "
            f"KB, Temporal RSS {row['temporal_rss_kb_per_exchange']} KB, Temporal DB "
            f"{row['temporal_db_kb_per_exchange']} KB, app DB {row['app_db_kb_per_exchange']} KB; "
            f"errors {dict(errors) or 'none'}",
            flush=True,
        )
        return row

    async def decide(self, count: int) -> dict[str, Any]:
        ids = random.sample(self.open, min(count, len(self.open)))
        print(f"approving {len(ids)} exchanges at once", flush=True)
        calls = Calls()
        self._sampler.reset()
        shortlists = self._mailbox.kinds["shortlist_needed"]
        cpu = self._sampler.cpu()
        started = time.perf_counter()
        answered: list[float] = []

        async def one(exchange_id: int) -> None:
            await call(
                self._http,
                calls,
                "POST",
                f"/api/v1/exchanges/{exchange_id}/vetting",
                self._tokens[HOME_BROKER],
                {"decision": "approve"},
            )
            answered.append(time.perf_counter() - started)

        async def every_answer() -> dict[str, float]:
            await asyncio.gather(*(one(i) for i in ids))
            return self._sampler.cpu()

        deciding = asyncio.create_task(every_answer())

        async def recorded() -> tuple[int, int]:
            return await asyncio.to_thread(events_of, self._engine, "vetting_approve", ids), len(
                ids
            )

        async def matched() -> tuple[int, int]:
            found = await asyncio.to_thread(events_of, self._engine, "candidates_found", ids)
            mailed = self._mailbox.kinds["shortlist_needed"] - shortlists
            return min(found, mailed), len(ids)

        recorded_seconds = await wait_for(
            "approvals recorded", recorded, DRAIN_SECONDS, self._processes
        )
        await wait_for("matchings done", matched, DRAIN_SECONDS, self._processes)
        # From the first approval sent, as the recorded figure.
        drained_seconds = time.perf_counter() - started
        drained_cpu = self._sampler.cpu()
        answered_cpu = await deciding
        a50, a95 = p50_p95_ms(calls.seconds)
        result = {
            "decided": len(ids),
            "answered_s": round(max(answered, default=0.0), 2),
            "answer_p50_ms": round(a50, 1),
            "answer_p95_ms": round(a95, 1),
            "recorded_s": round(recorded_seconds, 2),
            "drained_s": round(drained_seconds, 2),
            "worker_rss_peak_mb": round(self._sampler.peaks.get("workers", 0) / MB, 1),
            # CPU seconds of each process group until every answer, and until the drain.
            "answered_cpu_s": {k: round(v - cpu[k], 1) for k, v in answered_cpu.items()},
            "drained_cpu_s": {k: round(v - cpu[k], 1) for k, v in drained_cpu.items()},
            "errors": dict(calls.errors),
            "lost": calls.lost,
        }
        print(
            f"  CPU seconds until every answer {result['answered_cpu_s']}, until drained "
            f"{result['drained_cpu_s']}",
            flush=True,
        )
        print(
            f"  every answer in {result['answered_s']} s (p50 {a50:.0f} ms, p95 {a95:.0f} ms), "
            f"every approval recorded in {result['recorded_s']} s, every matching done (candidates "
            f"found, shortlist e-mail sent) in {result['drained_s']} s; worker RSS peak "
            f"{result['worker_rss_peak_mb']:.0f} MB; errors {dict(calls.errors) or 'none'}",
            flush=True,
        )
        return result


def report(args: argparse.Namespace, result: dict[str, Any]) -> dict[str, Any]:
    rows: list[dict[str, Any]] = result["steps"]
    drain: dict[str, Any] = result["drain"]
    print()
    print(
        f"{'open':>6} | {'start/s':>7} | {'vetting/s':>9} | {'worker RSS':>10} | {'web RSS':>7} | "
        f"{'Temporal RSS':>12} | {'Temporal DB':>11} | {'app DB':>7} | {'list p50/p95':>12} | "
        f"{'detail p50/p95':>14} | {'KB/exchange worker':>18} | errors"
    )
    for row in rows:
        print(
            f"{row['open']:>6} | {row['start_per_s']:7.1f} | {row['in_vetting_per_s']:9.1f} | "
            f"{row['worker_rss_mb']:7.0f} MB | {row['web_rss_mb']:4.0f} MB | "
            f"{row['temporal_rss_mb']:9.0f} MB | {row['temporal_db_mb']:8.1f} MB | "
            f"{row['app_db_mb']:4.1f} MB | "
            f"{row['list_p50_ms']:5.0f}/{row['list_p95_ms']:<4.0f} ms | "
            f"{row['detail_p50_ms']:7.0f}/{row['detail_p95_ms']:<4.0f} ms | "
            f"{row['worker_kb_per_exchange']:18.1f} | {sum(row['errors'].values())}"
        )
    last = rows[-1]
    errors = sum(sum(r["errors"].values()) + r["lost"] for r in rows) + sum(
        drain["errors"].values()
    )
    checks = {
        f"worker RSS <= {GOAL_WORKER_RSS / GB:.0f} GB": last["worker_rss_mb"] * MB
        <= GOAL_WORKER_RSS
        and last["worker_rss_peak_mb"] * MB <= GOAL_WORKER_RSS,
        f"list p95 <= {GOAL_LIST_P95_MS:.0f} ms": last["list_p95_ms"] <= GOAL_LIST_P95_MS,
        f"detail p95 <= {GOAL_DETAIL_P95_MS:.0f} ms": last["detail_p95_ms"] <= GOAL_DETAIL_P95_MS,
        "no error": errors == 0,
    }
    met = all(checks.values())
    print(
        f"\ngoal at {last['open']} open: "
        + ", ".join(f"{name} {'met' if ok else 'NOT met'}" for name, ok in checks.items())
        + f": {'met' if met else 'NOT met'}"
    )
    print(
        f"decided {drain['decided']} at once: answered in {drain['answered_s']} s, recorded in "
        f"{drain['recorded_s']} s, drained in {drain['drained_s']} s"
    )
    print(f"e-mails received: {dict(sorted(result['e-mails'].items()))}")
    print(
        f"machine: {os.cpu_count()} cores (shared with whatever else runs), load average "
        f"{os.getloadavg()[0]:.2f}; {args.workers} worker process(es), {args.web} web "
        f"process(es), app database {args.database}, the Temporal dev server on SQLite"
    )
    return {
        "bench": "load",
        "database": args.database,
        "worker_processes": args.workers,
        "web_processes": args.web,
        "concurrency": args.concurrency,
        "samples": args.samples,
        "idle_mb": {k: round(v / MB, 1) for k, v in result["idle"].items()},
        "steps": rows,
        "drain": drain,
        "goal": {
            "worker_rss_mb": GOAL_WORKER_RSS / MB,
            "list_p95_ms": GOAL_LIST_P95_MS,
            "detail_p95_ms": GOAL_DETAIL_P95_MS,
            "errors": 0,
            "checks": checks,
            "met": met,
        },
        "emails": dict(sorted(result["e-mails"].items())),
        "cores": os.cpu_count(),
        "load_average": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--steps", default="1000,5000,10000", help="open exchanges, in order")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--workers", type=int, default=1, help="ce4big worker processes")
    parser.add_argument("--web", type=int, default=1, help="WEB_PROCESSES of ce4big api")
    parser.add_argument("--concurrency", type=int, default=32, help="creations in flight")
    parser.add_argument("--samples", type=int, default=200, help="list and detail requests")
    parser.add_argument("--decide", type=int, default=1000, help="approvals sent at once")
    run_bench("load", parser.parse_args(), bench, report)


if __name__ == "__main__":
    main()
