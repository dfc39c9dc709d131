"""Complete exchanges per second on the product's stack, against the floor of this machine.

Two shapes of the stack. By default the web app and the worker run in this process, on one
event loop: the real worker (`worker.build_worker`) and the real web app served by uvicorn.
With `--workers 1,2` they are the commands production runs, each in a process of its own:
`ce4big api` (with `--web` WEB_PROCESSES) and, for each count given in turn, that many
`ce4big worker` processes. Around them in both shapes: the app database (SQLite in a temporary
directory, or with `--database postgresql` a database of the run's own on the server that
TEST_POSTGRES_URL names), the Temporal dev server (the venv's `temporal` binary, persisted in
SQLite in that directory) and a real SMTP server (aiosmtpd, in this process) that receives
every e-mail. Each exchange is driven as people drive it: the SME creates it over HTTP; every
other step starts when its e-mail arrives; brokers and the requester answer through the JSON
API, the partner through the links in the e-mails (`{BASE_URL}/t/<token>` in the text part),
until the exchange is closed with outcome completed.

A decision's latency runs from its HTTP POST to its transition row in `exchange_event` (the
workflow's record_event activity), seen by polling the table every --poll-ms milliseconds; a
POST answered 409 because its e-mail came before the workflow took the stage is sent again and
counted, its latency running from the first attempt. The time scale makes the meeting (a real
slot a day ahead) and the survey delay last a few tens of milliseconds; the reminders and
deadlines of human steps are moved past the run, so that no reminder races a decision. The
links are acted on concurrently and API tokens are touched as in use; --with-workarounds brings
back the two workarounds an earlier product bug needed (see FREEZE below), for comparison.

The floor, in the same run on the same dev server, in this process, measured at each level
right before the product: as many workflows of the same shape (bench/lifecycle_floor.py: the
same activity calls, waits and timers) with no-op activities, driven by signals as soon as each
step's no-op e-mail activity has run. The ratio is product completed/s over floor completed/s
at the same concurrency; the goal, at every level: no failed exchange, a ratio of 0.9 or more
and a decision p95 no more than 1.2 times the floor's. A level runs at least twice its
concurrency in lifecycles. Last line: one JSON object.

    .venv/bin/python bench/lifecycle.py [--n 20] [--concurrency 1,4,8,16,32] [--time-scale S]
        [--workers 1,2 [--web 1]] [--database sqlite|postgresql] [--poll-ms 10]
        [--with-workarounds]
"""

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import uvicorn  # noqa: E402
from sqlalchemy import Engine, or_  # noqa: E402
from sqlmodel import Session, col, select  # noqa: E402
from temporalio.api.enums.v1 import EventType  # noqa: E402
from temporalio.client import Client  # noqa: E402
from temporalio.worker import Worker  # noqa: E402

from api.main import create_app  # noqa: E402
from bench.drive import (  # noqa: E402
    DAY,
    FAST_SCALE,
    HOME_BROKER,
    MEETING_LEAD,
    Board,
    Delivery,
    Mailbox,
    People,
    Trip,
    driven_settings,
    seed,
)
from bench.lifecycle_floor import FloorActivities, FloorInput, FloorWorkflow  # noqa: E402
from bench.stack import (  # noqa: E402
    MailServer,
    ProductProcesses,
    TemporalServer,
    app_database,
    connection_limits,
    free_port,
    group_usage,
    p50_p95_ms,
    run_bench,
)
from ce4big.db import make_engine, upgrade_database  # noqa: E402
from ce4big.exchanges import exchange_timings  # noqa: E402
from ce4big.models import ExchangeEvent  # noqa: E402
from worker import build_worker  # noqa: E402

STEP_TIMEOUT = 60.0
CONFLICT_PAUSE = 0.02
# FREEZE (fixed in the product since; --with-workarounds still works around it): POST
# /api/v1/actions/{token} marked the token used with an UPDATE run on the event loop, committed
# only after the response was sent.
# If another request's transaction holds SQLite's write lock at that moment and needs the loop
# to finish (a second link POST; or an API decision whose session flushed the once-a-minute
# `last_used_at` touch of its API token before awaiting the workflow Update), the loop waits on
# the lock (busy_timeout 30 s) for a commit that only the loop can run: the web app and the
# worker on that loop stand still for 30 s, then 503s, 500s and failed workflow tasks.
# So the bench acts on one e-mail link at a time and seeds its API tokens as freshly touched.
GOAL_RATIO = 0.9
GOAL_P95_FACTOR = 1.2
# How long an id skipped over by the event watcher is asked for again (PostgreSQL).
HOLE_SECONDS = 10.0
# Histories of each side compared for the floor's shape.
SHAPE_SAMPLE = 8

# ---------------------------------------------------------------------- transitions


def _new_events(
    engine: Engine, after: int, holes: list[int]
) -> list[tuple[int, int, str, Mapping[str, Any]]]:
    query = (
        select(
            ExchangeEvent.id, ExchangeEvent.exchange_id, ExchangeEvent.kind, ExchangeEvent.detail
        )
        .where(or_(col(ExchangeEvent.id) > after, col(ExchangeEvent.id).in_(holes)))
        .order_by(col(ExchangeEvent.id))
    )
    with Session(engine) as session:
        return [(int(i or 0), e, k, d) for i, e, k, d in session.exec(query).all()]


async def watch_events(engine: Engine, board: Board[float], interval: float) -> None:
    """Every event row as it appears, keyed `<exchange id>:<kind>` (and the side for survey
    answers). On PostgreSQL a row can commit after one with a higher id (SQLite has one writer
    at a time): the ids skipped over are asked for again for HOLE_SECONDS."""
    last = 0
    holes: dict[int, float] = {}
    while True:
        rows = await asyncio.to_thread(_new_events, engine, last, list(holes))
        seen = time.perf_counter()
        for event_id, exchange_id, kind, detail in rows:
            holes.pop(event_id, None)
            if event_id > last:
                holes.update(dict.fromkeys(range(last + 1, event_id), seen + HOLE_SECONDS))
                last = event_id
            side = f":{detail.get('side')}" if kind == "survey_answered" else ""
            board.put(f"{exchange_id}:{kind}{side}", seen)
        for event_id, until in list(holes.items()):
            if until < seen:
                del holes[event_id]
        await asyncio.sleep(interval)


# ---------------------------------------------------------------------- one lifecycle


@dataclass
class Lifecycle:
    seconds: float
    # (step, seconds from the decision's POST or signal to its recorded transition)
    latencies: list[tuple[str, float]]
    marker: str = ""
    exchange_id: int = 0


def _ok(response: httpx.Response, what: str) -> httpx.Response:
    if response.status_code >= 300:
        raise RuntimeError(f"{what}: HTTP {response.status_code} {response.text[:300]}")
    return response


@dataclass
class Timed(Trip):
    # (step, seconds from the decision's POST to its recorded transition)
    latencies: list[tuple[str, float]] = field(default_factory=list)


class Product(People[Timed]):
    """Drives exchanges through the web app over HTTP and the e-mail links, each decision
    timed until its transition is recorded."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        mailbox: Mailbox,
        events: Board[float],
        tokens: dict[str, str],
        *,
        serialise_links: bool,
    ) -> None:
        super().__init__(http, tokens, mailbox)
        self._events = events
        self._run = uuid.uuid4().hex[:8]
        # 409 answers to a decision made as soon as its e-mail arrived, by step.
        self.conflicts: Counter[str] = Counter()
        # One e-mail link acted on at a time, unless --as-is: see FREEZE.
        self._links = asyncio.Lock() if serialise_links else None
        self.link_waits: list[float] = []
        self.link_held = 0.0

    async def send(
        self, trip: Timed, method: str, path: str, body: Any, headers: dict[str, str]
    ) -> httpx.Response:
        response = await self.http.request(method, path, json=body, headers=headers)
        return _ok(response, f"{method} {path}")

    async def mail(self, trip: Timed, kind: str, recipient: str) -> Delivery:
        return await self.mailbox.wait(trip.marker, kind, recipient, STEP_TIMEOUT)

    async def decide(
        self, trip: Timed, step: str, path: str, body: Any, *, who: str | None, event: str
    ) -> None:
        """POST a decision and time it until its transition is recorded. A 409 (the e-mail
        came before the workflow took the stage) is clicked again, as a person would, and
        counted; the time runs from the first click."""
        headers = self.auth(who)
        link = self._links if who is None else None
        sent: float | None = None
        while True:
            queued = time.perf_counter()
            async with link or contextlib.nullcontext():
                now = time.perf_counter()
                if link is not None:
                    self.link_waits.append(now - queued)
                sent = sent or now
                response = await self.http.post(path, json=body, headers=headers)
                if link is not None:
                    self.link_held += time.perf_counter() - now
            if response.status_code != 409 or now - sent > STEP_TIMEOUT:
                _ok(response, f"POST {path}")
                break
            self.conflicts[step] += 1
            await asyncio.sleep(CONFLICT_PAUSE)
        recorded = await self._events.get(f"{trip.exchange_id}:{event}", STEP_TIMEOUT)
        trip.latencies.append((step, recorded - sent))

    async def lifecycle(self, number: int) -> Lifecycle:
        trip = Timed(f"bench-{self._run}-{number}")
        started = time.perf_counter()
        await self.walk(trip)
        closed = await self._events.get(f"{trip.exchange_id}:closed", STEP_TIMEOUT)
        return Lifecycle(closed - started, trip.latencies, trip.marker, trip.exchange_id or 0)


FLOOR_STEPS = [
    ("vet", "vetting_approve"),
    ("shortlist", "shortlisted"),
    ("host_review", "host_review_done"),
    ("introduction", "introduction_accepted"),
    ("propose", "slots_proposed"),
    ("pick", "meeting_scheduled"),
]
FLOOR_STEP_NAMES = {"introduction": "accept"}
FLOOR_STANDS_FOR = {"floor_record": "record_event", "floor_notify": "notify"}


class Floor:
    """Drives floor workflows: each signal goes as soon as the step's no-op e-mail has run."""

    def __init__(self, client: Client, task_queue: str, timings: Any) -> None:
        self._client = client
        self.task_queue = task_queue
        self._timings = timings
        self._ready: Board[float] = Board()
        self._recorded: Board[float] = Board()
        self.activities = FloorActivities(self._on_record, self._on_ready)
        self._run = uuid.uuid4().hex[:8]

    def _on_record(self, number: int, kind: str) -> None:
        self._recorded.put(f"{number}:{kind}", time.perf_counter())

    def _on_ready(self, number: int, step: str) -> None:
        self._ready.put(f"{number}:{step}", time.perf_counter())

    def workflow_id(self, number: int) -> str:
        return f"floor-{self._run}-{number}"

    async def _decide(self, number: int, handle: Any, step: str, kind: str) -> tuple[str, float]:
        await self._ready.get(f"{number}:{step}", STEP_TIMEOUT)
        started = time.perf_counter()
        await handle.signal(FloorWorkflow.decide, step)
        name = FLOOR_STEP_NAMES.get(step, step.split(":")[0])
        return name, await self._recorded.get(f"{number}:{kind}", STEP_TIMEOUT) - started

    async def lifecycle(self, number: int) -> Lifecycle:
        started = time.perf_counter()
        handle = await self._client.start_workflow(
            FloorWorkflow.run,
            FloorInput(number, self._timings, MEETING_LEAD.total_seconds()),
            id=self.workflow_id(number),
            task_queue=self.task_queue,
        )
        latencies = [await self._decide(number, handle, s, k) for s, k in FLOOR_STEPS]
        latencies += await asyncio.gather(
            *(
                self._decide(number, handle, f"survey:{side}", f"survey_answered:{side}")
                for side in ("requester", "partner")
            )
        )
        closed = await self._recorded.get(f"{number}:closed", STEP_TIMEOUT)
        return Lifecycle(closed - started, latencies, self.workflow_id(number))


# ---------------------------------------------------------------------- levels and figures


@dataclass
class Level:
    concurrency: int
    wall: float
    done: list[Lifecycle]
    errors: list[str]
    # CPU seconds of this process (the driver, the SMTP server, the floor's worker, and in one
    # process the web app and the worker too) over the level.
    cpu: float = 0.0
    # CPU seconds of the other processes over the level: web, workers, temporal.
    usage: dict[str, float] = field(default_factory=dict)
    # Seconds an e-mail link POST was in flight, for the one-at-a-time workaround.
    link_held: float = 0.0

    @property
    def per_second(self) -> float:
        return len(self.done) / self.wall if self.wall > 0 else 0.0

    def latencies(self, step: str | None = None) -> list[float]:
        return [s for life in self.done for name, s in life.latencies if step in (None, name)]

    @property
    def cpu_per_exchange(self) -> float:
        """CPU seconds of every measured process per completed lifecycle (PostgreSQL's own
        processes not counted)."""
        return (self.cpu + sum(self.usage.values())) / len(self.done) if self.done else 0.0


async def run_level(
    lifecycle: Callable[[int], Awaitable[Lifecycle]], numbers: range, concurrency: int
) -> Level:
    gate = asyncio.Semaphore(concurrency)

    async def one(number: int) -> Lifecycle:
        async with gate:
            return await lifecycle(number)

    started, cpu = time.perf_counter(), time.process_time()
    results = await asyncio.gather(*(one(n) for n in numbers), return_exceptions=True)
    wall = time.perf_counter() - started
    done = [r for r in results if isinstance(r, Lifecycle)]
    errors = [f"{type(r).__name__}: {r}" for r in results if isinstance(r, BaseException)]
    return Level(concurrency, wall, done, errors, time.process_time() - cpu)


# ---------------------------------------------------------------------- the run


class _Server(uvicorn.Server):
    # Ctrl-C stops the bench, not only the server.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def history_shape(client: Client, workflow_id: str | None) -> dict[str, int]:
    """What one workflow's history holds: its activity calls, timers and workflow tasks."""
    if workflow_id is None:
        return {}
    events = (await client.get_workflow_handle(workflow_id).fetch_history()).events
    counted = Counter(e.event_type for e in events)
    return {
        "activities": counted[EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED],
        "timers": counted[EventType.EVENT_TYPE_TIMER_STARTED],
        "workflow_tasks": counted[EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED],
        "decisions": counted[EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED]
        + counted[EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED],
        "events": len(events),
    }


async def history_sequence(client: Client, workflow_id: str | None) -> list[str]:
    """The commands of one history that make its shape, in order: each activity by what it
    does (a floor activity by the product activity it stands for) and each search attribute
    upsert. Timers are left out: whether a wait starts one depends on who came first."""
    if workflow_id is None:
        return []
    events = (await client.get_workflow_handle(workflow_id).fetch_history()).events
    sequence = []
    for event in events:
        if event.event_type == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
            sequence.append("upsert")
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attributes = event.activity_task_scheduled_event_attributes
            name = attributes.activity_type.name
            if name.startswith("floor_"):
                call = json.loads(attributes.input.payloads[0].data)
                name = FLOOR_STANDS_FOR.get(name) or str(call["kind"]).split(":")[0]
            sequence.append(name)
    return sequence


async def compare_shapes(client: Client, products: list[str], floors: list[str]) -> str | None:
    """None when one of the floor workflows issued the same activities and upserts, in order,
    as one of the exchanges (which branch each takes depends on who came first, e.g. a slot
    picked before its stage is entered again), else where the first pair differs."""
    product_sequences = [await history_sequence(client, w) for w in products]
    floor_sequences = [await history_sequence(client, w) for w in floors]
    if any(f == p for f in floor_sequences for p in product_sequences):
        return None
    if not product_sequences or not floor_sequences:
        return "no history to compare"
    return first_difference(product_sequences[0], floor_sequences[0])


def first_difference(product: list[str], floor: list[str]) -> str | None:
    for index, (ours, theirs) in enumerate(zip(product, floor, strict=False)):
        if ours != theirs:
            return f"command {index + 1}: product {ours}, floor {theirs}"
    if len(product) != len(floor):
        return f"product {len(product)} commands, floor {len(floor)}"
    return None


async def verify_closed(http: httpx.AsyncClient, token: str, ids: set[int]) -> Counter[str]:
    """Status and outcome of every measured exchange, as the API lists them."""
    outcomes: Counter[str] = Counter()
    offset = 0
    while True:
        page = _ok(
            await http.get(
                "/api/v1/exchanges",
                params={"limit": 200, "offset": offset},
                headers={"Authorization": f"Bearer {token}"},
            ),
            "list",
        ).json()
        for item in page["data"]:
            if item["id"] in ids:
                outcomes[f"{item['status']}/{item['outcome']}"] += 1
        offset += len(page["data"])
        if not page["data"] or offset >= page["count"]:
            return outcomes


@dataclass
class Config:
    """One shape of the product: `workers` worker processes beside a `ce4big api` of `web`
    processes, or (workers 0) the web app and the worker in this process."""

    workers: int
    web: int

    @property
    def label(self) -> str:
        if self.workers == 0:
            return "in-process"
        return f"{self.workers} worker{'s' if self.workers > 1 else ''}, {self.web} web"


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    levels = [int(c) for c in args.concurrency.split(",")]
    configs = (
        [Config(int(w), args.web) for w in args.workers.split(",")]
        if args.workers
        else [Config(0, 1)]
    )
    async with contextlib.AsyncExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="ce4big-bench-"))
        folder = Path(tmp)
        database_url = stack.enter_context(app_database(args.database, tmp))
        await asyncio.to_thread(upgrade_database, database_url)
        engine = make_engine(database_url)
        stack.callback(engine.dispose)
        tokens = await asyncio.to_thread(seed, engine, touched=not args.as_is)

        mailbox = Mailbox()
        smtp = MailServer(mailbox)
        await smtp.open()
        stack.push_async_callback(smtp.close)

        temporal = TemporalServer(folder)
        print(
            f"starting the Temporal dev server (SQLite in {tmp}), {args.database} for the app",
            flush=True,
        )
        stack.callback(temporal.child.stop)
        await temporal.start()
        client = await temporal.connect()

        web_port = free_port()
        settings = driven_settings(
            database_url,
            web_port=web_port,
            smtp_port=smtp.port,
            scale=args.time_scale,
            temporal_address=temporal.target,
            web_processes=args.web,
            data_dir=folder / "data",
        )
        floor = Floor(client, f"floor-{uuid.uuid4().hex[:8]}", exchange_timings(settings))
        await stack.enter_async_context(
            Worker(
                client,
                task_queue=floor.task_queue,
                workflows=[FloorWorkflow],
                activities=[
                    floor.activities.record,
                    floor.activities.notify,
                    floor.activities.noop,
                ],
            )
        )
        processes: ProductProcesses | None = None
        if args.workers:
            processes = ProductProcesses(folder, settings)
            stack.push_async_callback(processes.stop)
            print(
                f"starting ce4big api ({args.web} web process{'es' if args.web > 1 else ''})",
                flush=True,
            )
            await processes.start_api()
        else:
            web_socket = stack.enter_context(socket.socket())
            web_socket.bind(("127.0.0.1", web_port))
            executor = stack.enter_context(
                ThreadPoolExecutor(
                    max_workers=settings.worker_max_concurrent_activities,
                    thread_name_prefix="activity",
                )
            )
            await stack.enter_async_context(build_worker(client, settings, engine, executor))
            app = create_app(settings, temporal_client=client)
            server = _Server(uvicorn.Config(app, log_level="warning", access_log=False))
            serving = asyncio.create_task(server.serve(sockets=[web_socket]))

            async def stop_serving() -> None:
                server.should_exit = True
                await serving

            stack.push_async_callback(stop_serving)
            while not server.started:
                if serving.done():
                    await serving
                await asyncio.sleep(0.01)
        events: Board[float] = Board()
        watching = asyncio.create_task(watch_events(engine, events, args.poll_ms / 1000))
        stack.callback(watching.cancel)
        http = await stack.enter_async_context(
            httpx.AsyncClient(
                base_url=settings.base_url,
                timeout=STEP_TIMEOUT,
                limits=connection_limits(128),
            )
        )

        product = Product(http, mailbox, events, tokens, serialise_links=not args.as_is)
        measured = Measure(args, levels, product, floor, temporal, processes)
        results: dict[str, dict[str, list[Level]]] = {}
        for config in configs:
            if processes is not None:
                print(f"starting {config.workers} ce4big worker process(es)", flush=True)
                await processes.start_workers(config.workers)
            results[config.label] = await measured.run(config)
            if processes is not None:
                await processes.stop_workers()
        done = [
            life
            for levels_ in results.values()
            for level in levels_["product"]
            for life in level.done
        ]
        return {
            "configs": configs,
            "results": results,
            "verified": await verify_closed(
                http, tokens[HOME_BROKER], {life.exchange_id for life in done}
            ),
            "product_shape": await history_shape(
                client, f"exchange-{done[-1].exchange_id}" if done else None
            ),
            "floor_shape": await history_shape(client, floor.workflow_id(0)),
            "shape_difference": await compare_shapes(
                client,
                [f"exchange-{life.exchange_id}" for life in done[-SHAPE_SAMPLE:]],
                [
                    life.marker
                    for levels_ in results.values()
                    for level in levels_["floor"]
                    for life in level.done
                ][-SHAPE_SAMPLE:],
            ),
            "mailbox": mailbox,
            "conflicts": product.conflicts,
            "link_waits": product.link_waits,
        }


def per_level(n: int, concurrency: int) -> int:
    """Lifecycles at a level: at least `n`, and twice the concurrency, so that the level runs
    at its concurrency for most of its time."""
    return max(n, 2 * concurrency)


class Measure:
    def __init__(
        self,
        args: argparse.Namespace,
        levels: list[int],
        product: Product,
        floor: Floor,
        temporal: TemporalServer,
        processes: ProductProcesses | None,
    ) -> None:
        self._args = args
        self._levels = levels
        self._product = product
        self._floor = floor
        self._temporal = temporal
        self._processes = processes
        self._numbers = iter(range(1_000_000))

    def _take(self, count: int) -> range:
        first = next(self._numbers)
        for _ in range(count - 1):
            next(self._numbers)
        return range(first, first + count)

    def _usage(self) -> dict[str, float]:
        usage = {"temporal": group_usage(self._temporal.child.pid)[0]}
        if self._processes is not None:
            usage |= {name: cpu for name, (cpu, _) in self._processes.usage().items()}
        return usage

    async def run(self, config: Config) -> dict[str, list[Level]]:
        product, floor = self._product, self._floor
        print(f"{config.label}: warming up: one floor workflow and one exchange")
        for warm in (
            await run_level(floor.lifecycle, self._take(1), 1),
            await run_level(product.lifecycle, self._take(1), 1),
        ):
            if warm.errors:
                raise RuntimeError(f"warm-up failed: {warm.errors[0]}")
        out: dict[str, list[Level]] = {"product": [], "floor": []}
        for concurrency in self._levels:
            count = per_level(self._args.n, concurrency)
            for name, lifecycle in (("floor", floor.lifecycle), ("product", product.lifecycle)):
                held = product.link_held
                before = self._usage()
                level = await run_level(lifecycle, self._take(count), concurrency)
                after = self._usage()
                level.usage = {k: after[k] - before.get(k, 0.0) for k in after}
                level.link_held = product.link_held - held
                p50, p95 = p50_p95_ms(level.latencies())
                print(
                    f"  {config.label:18s} {name:8s} concurrency {concurrency:3d}: "
                    f"{len(level.done)}/{count} in {level.wall:6.2f} s = "
                    f"{level.per_second:6.2f}/s, decision p50 {p50:6.0f} ms p95 {p95:6.0f} ms"
                    + (f", {len(level.errors)} FAILED" if level.errors else ""),
                    flush=True,
                )
                for error in level.errors[:3]:
                    print(f"    {error}")
                out[name].append(level)
            if self._processes is not None:
                self._processes.check()
        return out


def level_row(product: Level, floor: Level) -> dict[str, Any]:
    p50, p95 = p50_p95_ms(product.latencies())
    f50, f95 = p50_p95_ms(floor.latencies())
    ratio = product.per_second / floor.per_second if floor.per_second else float("nan")
    lives = [life.seconds for life in product.done]
    failed = len(product.errors) + len(floor.errors)
    p95_factor = p95 / f95 if f95 else float("nan")
    return {
        "concurrency": product.concurrency,
        "product_per_s": round(product.per_second, 3),
        "floor_per_s": round(floor.per_second, 3),
        "ratio": round(ratio, 3),
        "p50_ms": round(p50, 1),
        "p95_ms": round(p95, 1),
        "floor_p50_ms": round(f50, 1),
        "floor_p95_ms": round(f95, 1),
        "p95_to_floor": round(p95_factor, 3),
        "exchange_p50_s": round(statistics.median(lives), 3) if lives else None,
        "completed": len(product.done),
        "failed": failed,
        # CPU over the level's wall time, 1.0 being one core.
        "cpu": {
            "bench": round(product.cpu / product.wall, 3),
            **{k: round(v / product.wall, 3) for k, v in product.usage.items()},
        },
        "floor_cpu": {
            "bench": round(floor.cpu / floor.wall, 3),
            **{k: round(v / floor.wall, 3) for k, v in floor.usage.items()},
        },
        "links_busy": round(product.link_held / product.wall, 3),
        "cpu_s_per_exchange": round(product.cpu_per_exchange, 3),
        "floor_cpu_s_per_exchange": round(floor.cpu_per_exchange, 3),
        # The most this machine's cores allow the product, as a share of the floor's rate, had
        # every core nothing else to do: cores / (CPU-s per exchange) / floor rate.
        "ratio_ceiling": round(
            min(1.0, (os.cpu_count() or 1) / product.cpu_per_exchange / floor.per_second), 3
        )
        if product.cpu_per_exchange and floor.per_second
        else None,
        "goal_met": failed == 0 and ratio >= GOAL_RATIO and p95_factor <= GOAL_P95_FACTOR,
    }


def _cpu_text(cpu: dict[str, float]) -> str:
    return " ".join(f"{k} {v:.0%}" for k, v in cpu.items())


def report(args: argparse.Namespace, result: dict[str, Any]) -> dict[str, Any]:
    configs: list[Config] = result["configs"]
    results: dict[str, dict[str, list[Level]]] = result["results"]
    mailbox: Mailbox = result["mailbox"]
    tables: dict[str, list[dict[str, Any]]] = {}
    for config in configs:
        levels = results[config.label]
        rows = [level_row(p, f) for p, f in zip(levels["product"], levels["floor"], strict=True)]
        tables[config.label] = rows
        print(f"\n{config.label}:")
        print(
            f"{'conc':>4} | {'floor/s':>7} | {'product/s':>9} | {'ratio':>5} | {'p50 ms':>6} | "
            f"{'p95 ms':>6} | {'floor p50':>9} | {'floor p95':>9} | {'p95/floor':>9} | "
            f"{'exchange p50 s':>14} | failed | goal | CPU (1.0 = one core)"
        )
        for row in rows:
            print(
                f"{row['concurrency']:>4} | {row['floor_per_s']:7.2f} | "
                f"{row['product_per_s']:9.2f} | {row['ratio']:5.2f} | {row['p50_ms']:6.0f} | "
                f"{row['p95_ms']:6.0f} | {row['floor_p50_ms']:9.0f} | {row['floor_p95_ms']:9.0f} | "
                f"{row['p95_to_floor']:9.2f} | {row['exchange_p50_s'] or 0:14.2f} | "
                f"{row['failed']:>6} | {'met' if row['goal_met'] else 'NOT':>4} | "
                f"{_cpu_text(row['cpu'])}"
            )
    if len(configs) > 1:
        print(
            "\nside by side (product/s, ratio to the floor measured beside it, "
            "p95 ms / floor p95 ms):"
        )
        print(f"{'conc':>4} | " + " | ".join(f"{c.label:^36}" for c in configs))
        for index, concurrency in enumerate(int(c) for c in args.concurrency.split(",")):
            cells = []
            for config in configs:
                row = tables[config.label][index]
                cells.append(
                    f"{row['product_per_s']:6.2f}/s {row['ratio']:4.2f}x "
                    f"{row['p95_ms']:5.0f}/{row['floor_p95_ms']:5.0f} ms"
                    + ("" if row["failed"] == 0 else f" {row['failed']} failed")
                )
            print(f"{concurrency:>4} | " + " | ".join(f"{c:^36}" for c in cells))

    met = all(row["goal_met"] for rows in tables.values() for row in rows)
    print(
        f"\ngoal at every level: no failed exchange, product/floor >= {GOAL_RATIO}, decision p95 "
        f"<= {GOAL_P95_FACTOR} x the floor's: {'met' if met else 'NOT met'}"
        + (
            ""
            if met
            else " (missed at "
            + ", ".join(
                f"{label} concurrency {row['concurrency']}"
                for label, rows in tables.items()
                for row in rows
                if not row["goal_met"]
            )
            + ")"
        )
    )
    print(
        f"\nCPU seconds per complete exchange, every measured process ({os.cpu_count()} cores; "
        "the ceiling is the product's rate with every core busy on it, over the floor's rate):"
    )
    for label, rows in tables.items():
        for row in rows:
            print(
                f"  {label} concurrency {row['concurrency']:3d}: product "
                f"{row['cpu_s_per_exchange']:.2f}, floor {row['floor_cpu_s_per_exchange']:.2f}; "
                f"ratio {row['ratio']:.2f}, ceiling {row['ratio_ceiling'] or 0:.2f}"
            )
    steps = ("vet", "shortlist", "host_review", "accept", "propose", "pick", "survey")
    for config in configs:
        levels = results[config.label]
        top = len(levels["product"]) - 1
        print(
            f"{config.label}: decision -> transition at concurrency "
            f"{levels['product'][top].concurrency}, p50/p95 ms:"
        )
        for step in steps:
            s50, s95 = p50_p95_ms(levels["product"][top].latencies(step))
            f50, f95 = p50_p95_ms(levels["floor"][top].latencies(step))
            print(f"  {step:12s} product {s50:6.0f} / {s95:6.0f}   floor {f50:6.0f} / {f95:6.0f}")

    measured = [
        life.marker
        for levels in results.values()
        for level in levels["product"]
        for life in level.done
    ]
    per_exchange = [sum(mailbox.kinds[m].values()) for m in measured]
    kinds = mailbox.kinds[measured[0]] if measured else Counter()
    fewest, most = min(per_exchange, default=0), max(per_exchange, default=0)
    print(
        f"e-mails per complete exchange: {fewest}{f' to {most}' if most != fewest else ''} "
        f"({', '.join(f'{k} {n}' for k, n in sorted(kinds.items()))})"
    )
    shape_p, shape_f = result["product_shape"], result["floor_shape"]
    print(f"one history, product: {shape_p}")
    print(f"one history, floor:   {shape_f}")
    difference = result["shape_difference"]
    print(
        "the floor's activities and upserts, in order, are an exchange's: "
        + ("yes" if difference is None else f"NO ({difference})")
    )
    print(f"API list of the measured exchanges: {dict(result['verified'])}")
    conflicts: Counter[str] = result["conflicts"]
    waits: list[float] = result["link_waits"]
    w50, w95 = p50_p95_ms(waits)
    links = "concurrent" if args.as_is else "one at a time"
    print(
        f"e-mail links acted on {links}, API tokens "
        f"{'touched once a minute' if args.as_is else 'seeded as touched'}"
        + (
            f": waited for their turn p50 {w50:.0f} ms, p95 {w95:.0f} ms, {sum(waits):.1f} s "
            "in all (not counted in the latencies, counted in the throughput)"
            if waits
            else ""
        )
    )
    print(
        "409 answers to a decision made as its e-mail arrived (then clicked again): "
        + (", ".join(f"{step} {n}" for step, n in sorted(conflicts.items())) or "none")
    )
    print(
        f"machine: {os.cpu_count()} cores (shared with whatever else runs, e.g. CI), load "
        f"average {os.getloadavg()[0]:.2f}; app database {args.database}; time scale "
        f"{args.time_scale:.0f} (a day lasts {DAY / args.time_scale * 1000:.0f} ms); "
        f"transitions seen by polling every {args.poll_ms} ms (the floor's by callback)"
    )
    first = tables[configs[0].label]
    return {
        "bench": "lifecycle",
        "mode": "processes" if args.workers else "in-process",
        "database": args.database,
        "web_processes": args.web if args.workers else None,
        "n": args.n,
        "time_scale": args.time_scale,
        "poll_ms": args.poll_ms,
        "configs": [
            {
                "label": config.label,
                "worker_processes": config.workers,
                "levels": tables[config.label],
            }
            for config in configs
        ],
        "levels": first,
        "baseline": {
            "what": "floor workflows of the same shape, no-op activities, signals, measured "
            "beside each configuration at each level",
            "peak_per_s": round(max(row["floor_per_s"] for row in first), 3),
        },
        "goal": {"ratio": GOAL_RATIO, "p95_to_floor": GOAL_P95_FACTOR, "failed": 0, "met": met},
        "emails_per_exchange": fewest,
        "emails_per_exchange_max": most,
        "email_kinds": dict(sorted(kinds.items())),
        "history_product": shape_p,
        "history_floor": shape_f,
        "floor_shape_difference": difference,
        "verified": dict(result["verified"]),
        "unfiled_emails": mailbox.unfiled,
        "conflicts_409": dict(sorted(conflicts.items())),
        "workarounds": not args.as_is,
        "link_wait_p95_ms": round(w95, 1) if waits else None,
        "cores": os.cpu_count(),
        "load_average": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--n", type=int, default=20, help="lifecycles per level (at least twice its concurrency)"
    )
    parser.add_argument("--concurrency", default="1,4,8,16,32", help="comma-separated levels")
    parser.add_argument(
        "--workers",
        default="",
        help="comma-separated counts of `ce4big worker` processes to measure, each beside a "
        "`ce4big api`; without it the web app and the worker run in this process",
    )
    parser.add_argument("--web", type=int, default=1, help="WEB_PROCESSES of `ce4big api`")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--time-scale", type=float, default=FAST_SCALE)
    parser.add_argument(
        "--with-workarounds",
        dest="as_is",
        action="store_false",
        help="act on one link at a time and seed API tokens as touched (the old FREEZE bug)",
    )
    parser.add_argument("--poll-ms", type=int, default=10, help="event table polling interval")
    run_bench("lifecycle", parser.parse_args(), bench, report)


if __name__ == "__main__":
    main()
