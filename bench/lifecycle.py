"""Complete exchanges per second on the dev stack, against the floor of this machine.

The stack is the one `ce4big dev` runs, in one process and on one event loop: a SQLite
database (migrated, in a temporary directory), the Temporal dev server (the venv's `temporal`
binary, persisted in SQLite there too), the real worker (`worker.build_worker`), the real web
app served by uvicorn on a free port, and a real SMTP server (aiosmtpd) that receives every
e-mail. Each exchange is driven as people drive it: the SME creates it over HTTP; every other
step starts when its e-mail arrives; brokers and the requester answer through the JSON API,
the partner through the links in the e-mails (`{BASE_URL}/t/<token>` in the text part), until
the exchange is closed with outcome completed.

A decision's latency runs from its HTTP POST to its transition row in `exchange_event` (the
workflow's record_event activity), seen by polling the table every --poll-ms milliseconds; a
POST answered 409 because its e-mail came before the workflow took the stage is sent again and
counted, its latency running from the first attempt. The time scale makes the meeting (a real
slot a day ahead) and the survey delay last a few tens of milliseconds; the reminders and
deadlines of human steps are moved past the run, so that no reminder races a decision. The
links are acted on concurrently and API tokens are touched as in use; --with-workarounds brings
back the two workarounds an earlier product bug needed (see FREEZE below), for comparison.

The floor, in the same run on the same dev server and the same event loop: as many workflows
of the same shape (bench/lifecycle_floor.py: the same activity calls, waits and timers) with
no-op activities, driven by signals as soon as each step's no-op e-mail activity has run. The
ratio is product completed/s over floor completed/s at the same concurrency. Last line: one
JSON object.

    .venv/bin/python bench/lifecycle.py [--n 20] [--concurrency 1,4,8,16] [--time-scale S]
                                        [--poll-ms 10] [--with-workarounds]
"""

import argparse
import asyncio
import contextlib
import email
import json
import os
import re
import socket
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Generic, TypeVar

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import uvicorn  # noqa: E402
from aiosmtpd.smtp import SMTP  # noqa: E402
from lifecycle_floor import FloorActivities, FloorInput, FloorWorkflow  # noqa: E402
from sqlalchemy import Engine, update  # noqa: E402
from sqlmodel import Session, col, select  # noqa: E402
from temporalio.api.enums.v1 import EventType  # noqa: E402
from temporalio.client import Client  # noqa: E402
from temporalio.testing import WorkflowEnvironment  # noqa: E402
from temporalio.worker import Worker  # noqa: E402

from api.main import create_app  # noqa: E402
from ce4big.catalogue.csvio import parse_catalogue_csv, write_catalogue_csv  # noqa: E402
from ce4big.catalogue.store import upsert_organisations  # noqa: E402
from ce4big.db import make_engine, session_scope, upgrade_database  # noqa: E402
from ce4big.exchanges import exchange_timings  # noqa: E402
from ce4big.models import ApiToken, ExchangeEvent, utcnow  # noqa: E402
from ce4big.searchattributes import SEARCH_ATTRIBUTES  # noqa: E402
from ce4big.security import create_api_token  # noqa: E402
from ce4big.settings import Settings  # noqa: E402
from ce4big.users import add_user  # noqa: E402
from worker import build_worker  # noqa: E402

DAY = 86400.0
DEFAULT_SCALE = DAY * 40  # a day lasts 25 ms: the meeting and the survey delay are sub-second
HUMAN_HOLD_SECONDS = 3600.0  # reminders and deadlines of human steps: beyond any run
MEETING_LEAD = timedelta(hours=25)  # a day ahead, so that the meeting reminder has its timer
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
GOAL_RATIO = 0.8
GOAL_P95_MS = 1000.0
LINK = re.compile(r"^https?://\S+/t/(\S+?)\r?$", re.MULTILINE)
MARKER = re.compile(r"\[(bench-[0-9a-f]+-\d+)\]")

GLP_EN = (
    "Contract research organisation running GLP toxicology studies: repeated-dose toxicity, "
    "genotoxicity (Ames, micronucleus) and safety pharmacology for small molecules."
)
GLP_FR = (
    "CRO spécialisée en toxicologie réglementaire BPL : toxicité à doses répétées, "
    "génotoxicité (Ames, micronoyau) et pharmacologie de sécurité."
)
GLP_DE = (
    "Auftragsforschungsinstitut für GLP-Toxikologie: Toxizität bei wiederholter Gabe, "
    "Gentoxizität (Ames, Mikrokerntest) und Sicherheitspharmakologie."
)
REQUEST = {
    "title": "GLP toxicology package before first-in-human",
    "description": "We need a GLP repeated-dose toxicity study and a genotoxicity battery "
    "(Ames, micronucleus) for our small-molecule kinase inhibitor.",
    "partner_kinds": ["cro"],
    "required_certifications": ["GLP"],
    "cooperation_type": "service_agreement",
    "meeting_format": "video",
    "languages": ["en"],
}
# Partners in the three other clusters, so that the matcher's fairness rule (an organisation
# with open introductions is ranked after the others) spreads concurrent exchanges.
PARTNERS = [
    ("bm-cro", "biom", "Isar Tox GmbH", "DE", GLP_EN),
    ("bm-cro2", "biom", "Würm Safety Labs", "DE", GLP_DE),
    ("kr-cro", "klsk", "Wawel Tox", "PL", GLP_FR),
    ("kr-cro2", "klsk", "Vistula Preclinical", "PL", GLP_EN),
    ("at-cro", "atlanpole", "Loire Toxicologie", "FR", GLP_FR),
    ("at-cro2", "atlanpole", "Erdre Safety", "FR", GLP_EN),
]
SME_EMAIL = "anna@meuse-kinase.example"
HOME_BROKER = "broker@biowin.example"
HOST_BROKERS = {c: f"broker@{c}.example" for c in ("biom", "klsk", "atlanpole")}

HUMAN_REMINDERS = (
    "vetting_reminder_days",
    "changes_reminder_days",
    "shortlist_reminder_days",
    "host_review_consent_days",
    "partner_reminder_days",
    "scheduling_reminder_days",
    "survey_reminder_days",
)
HUMAN_DEADLINES = (
    "vetting_escalation_days",
    "changes_expiry_days",
    "shortlist_escalation_days",
    "partner_deadline_days",
    "scheduling_deadline_days",
    "survey_close_days",
)

T = TypeVar("T")


class StepTimeoutError(Exception):
    pass


class Board(Generic[T]):
    """Values by key, awaited by whoever needs them; the first value of a key stays."""

    def __init__(self) -> None:
        self._values: dict[str, T] = {}
        self._waiters: dict[str, list[asyncio.Future[T]]] = defaultdict(list)

    def put(self, key: str, value: T) -> None:
        if key in self._values:
            return
        self._values[key] = value
        for waiter in self._waiters.pop(key, []):
            if not waiter.done():
                waiter.set_result(value)

    async def get(self, key: str) -> T:
        if key in self._values:
            return self._values[key]
        waiter: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._waiters[key].append(waiter)
        try:
            return await asyncio.wait_for(waiter, STEP_TIMEOUT)
        except TimeoutError:
            raise StepTimeoutError(f"nothing for {key} within {STEP_TIMEOUT:.0f} s") from None


# ---------------------------------------------------------------------- e-mail


@dataclass(frozen=True)
class Mail:
    kind: str
    to: str
    token: str | None


@dataclass
class Mailbox:
    """The SMTP server's handler: files each e-mail under its exchange's marker (carried in
    the title, which every e-mail's footer repeats), kind and recipient."""

    board: Board[Mail] = field(default_factory=Board)
    kinds: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    unfiled: int = 0

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
        raw = envelope.original_content or envelope.content or b""
        # The legacy parser: a tenth of the CPU of policy.default, on the loop the stack runs on.
        message = email.message_from_bytes(raw)
        text = ""
        for part in message.walk():
            if part.get_content_type() == "text/plain":
                payload = part.get_payload(decode=True)
                if isinstance(payload, bytes):
                    text = payload.decode(part.get_content_charset() or "utf-8")
                break
        found = MARKER.search(text)
        if found is None:
            self.unfiled += 1
            return "250 2.0.0 Accepted"
        marker, kind = found.group(1), str(message["X-CE4BIG-Kind"])
        links = LINK.findall(text)
        for recipient in envelope.rcpt_tos:
            self.kinds[marker][kind] += 1
            mail = Mail(kind=kind, to=str(recipient).lower(), token=links[0] if links else None)
            self.board.put(f"{marker}:{kind}:{mail.to}", mail)
            self.board.put(f"{marker}:{kind}", mail)
        return "250 2.0.0 Accepted"


# ---------------------------------------------------------------------- transitions


def _new_events(engine: Engine, after: int) -> list[tuple[int, int, str, Mapping[str, Any]]]:
    query = (
        select(
            ExchangeEvent.id, ExchangeEvent.exchange_id, ExchangeEvent.kind, ExchangeEvent.detail
        )
        .where(col(ExchangeEvent.id) > after)
        .order_by(col(ExchangeEvent.id))
    )
    with Session(engine) as session:
        return [(int(i or 0), e, k, d) for i, e, k, d in session.exec(query).all()]


async def watch_events(engine: Engine, board: Board[float], interval: float) -> None:
    """Every event row as it appears, keyed `<exchange id>:<kind>` (and the side for survey
    answers). SQLite has one writer at a time, so rows commit in the order of their ids."""
    last = 0
    while True:
        rows = await asyncio.to_thread(_new_events, engine, last)
        seen = time.perf_counter()
        for event_id, exchange_id, kind, detail in rows:
            last = event_id
            side = f":{detail.get('side')}" if kind == "survey_answered" else ""
            board.put(f"{exchange_id}:{kind}{side}", seen)
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


class Product:
    """Drives exchanges through the web app over HTTP and the e-mail links."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        mailbox: Mailbox,
        events: Board[float],
        tokens: dict[str, str],
        *,
        serialise_links: bool,
    ) -> None:
        self._http = http
        self._mail = mailbox.board
        self._events = events
        self._tokens = tokens
        self._run = uuid.uuid4().hex[:8]
        # 409 answers to a decision made as soon as its e-mail arrived, by step.
        self.conflicts: Counter[str] = Counter()
        # One e-mail link acted on at a time, unless --as-is: see FREEZE.
        self._links = asyncio.Lock() if serialise_links else None
        self.link_waits: list[float] = []
        self.link_held = 0.0

    def _auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._tokens[who]}"}

    async def _post(
        self, step: str, path: str, body: dict[str, Any], who: str | None = None
    ) -> float:
        """POST a decision and return when it was first sent. A 409 (the e-mail came before
        the workflow took the stage) is clicked again, as a person would, and counted."""
        headers = self._auth(who) if who else {}
        link = self._links if who is None else None
        sent: float | None = None
        while True:
            queued = time.perf_counter()
            async with link or contextlib.nullcontext():
                now = time.perf_counter()
                if link is not None:
                    self.link_waits.append(now - queued)
                sent = sent or now
                response = await self._http.post(path, json=body, headers=headers)
                if link is not None:
                    self.link_held += time.perf_counter() - now
            if response.status_code != 409 or now - sent > STEP_TIMEOUT:
                _ok(response, f"POST {path}")
                return sent
            self.conflicts[step] += 1
            await asyncio.sleep(CONFLICT_PAUSE)

    async def _decide(self, step: str, event: str, decision: Awaitable[float]) -> tuple[str, float]:
        sent = await decision
        return step, await self._events.get(event) - sent

    async def lifecycle(self, number: int) -> Lifecycle:
        marker = f"bench-{self._run}-{number}"
        started = time.perf_counter()
        created = _ok(
            await self._http.post(
                "/api/v1/exchanges",
                json={**REQUEST, "title": f"{REQUEST['title']} [{marker}]"},
                headers={**self._auth(SME_EMAIL), "Idempotency-Key": marker},
            ),
            "create",
        )
        exchange_id = int(created.json()["id"])
        path = f"/api/v1/exchanges/{exchange_id}"
        latencies = []

        await self._mail.get(f"{marker}:vetting_needed:{HOME_BROKER}")
        latencies.append(
            await self._decide(
                "vet",
                f"{exchange_id}:vetting_approve",
                self._post("vet", f"{path}/vetting", {"decision": "approve"}, HOME_BROKER),
            )
        )

        await self._mail.get(f"{marker}:shortlist_needed:{HOME_BROKER}")
        candidates = _ok(
            await self._http.get(f"{path}/candidates", headers=self._auth(HOME_BROKER)),
            "candidates",
        ).json()
        first, cluster = candidates[0]["organisation_id"], candidates[0]["cluster"]
        latencies.append(
            await self._decide(
                "shortlist",
                f"{exchange_id}:shortlisted",
                self._post(
                    "shortlist", f"{path}/shortlist", {"organisation_ids": [first]}, HOME_BROKER
                ),
            )
        )

        host = HOST_BROKERS[cluster]
        await self._mail.get(f"{marker}:host_review_request:{host}")
        latencies.append(
            await self._decide(
                "host_review",
                f"{exchange_id}:host_review_done",
                self._post(
                    "host_review",
                    f"{path}/host-review",
                    {"organisation_id": first, "decision": "endorse"},
                    host,
                ),
            )
        )

        invitation = await self._mail.get(f"{marker}:introduction_request")
        partner = invitation.to
        latencies.append(
            await self._decide(
                "accept",
                f"{exchange_id}:introduction_accepted",
                self._post("accept", f"/api/v1/actions/{invitation.token}", {"action": "accept"}),
            )
        )

        await self._mail.get(f"{marker}:introduction_made:{SME_EMAIL}")
        start = (datetime.now(UTC) + MEETING_LEAD).replace(microsecond=0)
        slot = {"start": start.isoformat(), "end": (start + timedelta(hours=1)).isoformat()}
        latencies.append(
            await self._decide(
                "propose",
                f"{exchange_id}:slots_proposed",
                self._post(
                    "propose",
                    f"{path}/meeting/proposals",
                    {"slots": [slot], "timezone": "Europe/Brussels", "mode": "video"},
                    SME_EMAIL,
                ),
            )
        )

        offer = await self._mail.get(f"{marker}:slots_proposed:{partner}")
        latencies.append(
            await self._decide(
                "pick",
                f"{exchange_id}:meeting_scheduled",
                self._post(
                    "pick",
                    f"/api/v1/actions/{offer.token}",
                    {"action": "pick_slot", "start": slot["start"]},
                ),
            )
        )

        surveys = [
            await self._mail.get(f"{marker}:survey_invitation:{address}")
            for address in (SME_EMAIL, partner)
        ]
        answer: dict[str, Any] = {"action": "survey", "outcome": "cooperation_possible"}
        answer |= {"satisfaction": 5, "recommend": 9}
        latencies += await asyncio.gather(
            *(
                self._decide(
                    "survey",
                    f"{exchange_id}:survey_answered:{side}",
                    self._post("survey", f"/api/v1/actions/{mail.token}", answer),
                )
                for side, mail in zip(("requester", "partner"), surveys, strict=True)
            )
        )
        closed = await self._events.get(f"{exchange_id}:closed")
        return Lifecycle(closed - started, latencies, marker, exchange_id)


FLOOR_STEPS = [
    ("vet", "vetting_approve"),
    ("shortlist", "shortlisted"),
    ("host_review", "host_review_done"),
    ("introduction", "introduction_accepted"),
    ("propose", "slots_proposed"),
    ("pick", "meeting_scheduled"),
]
FLOOR_STEP_NAMES = {"introduction": "accept"}


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
        await self._ready.get(f"{number}:{step}")
        started = time.perf_counter()
        await handle.signal(FloorWorkflow.decide, step)
        name = FLOOR_STEP_NAMES.get(step, step.split(":")[0])
        return name, await self._recorded.get(f"{number}:{kind}") - started

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
        closed = await self._recorded.get(f"{number}:closed")
        return Lifecycle(closed - started, latencies)


# ---------------------------------------------------------------------- levels and figures


@dataclass
class Level:
    concurrency: int
    wall: float
    done: list[Lifecycle]
    errors: list[str]
    # CPU seconds of this process (web app, worker, SMTP server, driver) over the level.
    cpu: float = 0.0
    # Seconds an e-mail link POST was in flight, for the one-at-a-time workaround.
    link_held: float = 0.0

    @property
    def per_second(self) -> float:
        return len(self.done) / self.wall if self.wall > 0 else 0.0

    def latencies(self, step: str | None = None) -> list[float]:
        return [s for life in self.done for name, s in life.latencies if step in (None, name)]


def p50_p95_ms(values: list[float]) -> tuple[float, float]:
    if not values:
        return float("nan"), float("nan")
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered) * 1000, p95 * 1000


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


# ---------------------------------------------------------------------- the stack


def seed(engine: Engine, *, touched: bool) -> dict[str, str]:
    """The catalogue through the real import path, and one user and API token per role."""
    rows = [
        {
            "id": org_id,
            "name": name,
            "cluster": cluster,
            "kind": "cro",
            "country": country,
            "city": "",
            "website": f"https://{org_id}.example",
            "description": description,
            "services": ["GLP toxicology", "genotoxicity"],
            "technologies": [],
            "therapeutic_areas": [],
            "modalities": ["small molecules"],
            "stages": ["preclinical"],
            "certifications": ["GLP"],
            "languages": ["en"],
            "contact_name": "Business development",
            "contact_email": f"bd@{org_id}.example",
            "accepting_new_projects": True,
        }
        for org_id, cluster, name, country, description in PARTNERS
    ]
    rows.append(
        {
            **rows[0],
            "id": "bw-sme",
            "name": "Meuse Kinase SA",
            "cluster": "biowin",
            "kind": "sme",
            "country": "BE",
            "website": "https://meuse-kinase.example",
            "description": "Small-molecule kinase inhibitors for solid tumours.",
            "certifications": [],
            "contact_email": "contact@meuse-kinase.example",
        }
    )
    people = [
        (SME_EMAIL, "sme", None, "bw-sme"),
        (HOME_BROKER, "broker", "biowin", None),
        *((email_, "broker", cluster, None) for cluster, email_ in HOST_BROKERS.items()),
    ]
    with session_scope(engine) as session:
        upsert_organisations(
            session=session, rows=parse_catalogue_csv(write_catalogue_csv(rows).encode())
        )
        session.flush()
        tokens = {}
        for address, role, cluster, organisation in people:
            user = add_user(
                session=session,
                email=address,
                role=role,
                cluster_id=cluster,
                organisation_id=organisation,
                name=address.split("@")[0].title(),
            )
            tokens[address] = create_api_token(session=session, user=user, days=1)
        if touched:
            session.flush()
            session.execute(update(ApiToken).values(last_used_at=utcnow() + timedelta(days=1)))
    return tokens


def bench_settings(database_url: str, web_port: int, smtp_port: int, scale: float) -> Settings:
    held = HUMAN_HOLD_SECONDS * scale / DAY  # in days, before the scale divides it
    values: dict[str, Any] = {
        "ce4big_env": "development",
        "database_url": database_url,
        "base_url": f"http://127.0.0.1:{web_port}",
        "smtp_host": "127.0.0.1",
        "smtp_port": smtp_port,
        "smtp_tls": False,
        "smtp_starttls": False,
        "temporal_task_queue": f"bench-{uuid.uuid4().hex[:8]}",
        "ce4big_time_scale": scale,
        # The outcome wave, months later, is its own workflow: not part of a lifecycle here.
        "outcome_wave_days": 0,
        # Every simulated person acts from 127.0.0.1: the per-client limits would throttle them.
        "decisions_per_client": 1_000_000,
        "link_actions_per_client": 1_000_000,
    }
    for name in HUMAN_REMINDERS:
        values[name] = held
    for name in HUMAN_DEADLINES:
        values[name] = 2 * held
    return Settings(_env_file=None, **values)


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


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    levels = [int(c) for c in args.concurrency.split(",")]
    async with contextlib.AsyncExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="ce4big-bench-"))
        database_url = f"sqlite:///{tmp}/app.db"
        await asyncio.to_thread(upgrade_database, database_url)
        engine = make_engine(database_url)
        stack.callback(engine.dispose)
        tokens = await asyncio.to_thread(seed, engine, touched=not args.as_is)

        mailbox = Mailbox()
        loop = asyncio.get_running_loop()
        smtp = await loop.create_server(
            lambda: SMTP(mailbox, hostname="bench-mx", loop=loop), host="127.0.0.1", port=0
        )
        stack.callback(smtp.close)
        web_socket = stack.enter_context(socket.socket())
        web_socket.bind(("127.0.0.1", 0))
        settings = bench_settings(
            database_url,
            web_port=int(web_socket.getsockname()[1]),
            smtp_port=int(smtp.sockets[0].getsockname()[1]),
            scale=args.time_scale,
        )

        temporal = Path(sys.executable).parent / "temporal"
        print(f"starting the Temporal dev server ({temporal}), SQLite in {tmp}", flush=True)
        env = await stack.enter_async_context(
            await WorkflowEnvironment.start_local(
                dev_server_existing_path=str(temporal),
                dev_server_database_filename=f"{tmp}/temporal.db",
                ui=False,
                search_attributes=SEARCH_ATTRIBUTES,
            )
        )
        executor = stack.enter_context(
            ThreadPoolExecutor(max_workers=16, thread_name_prefix="activity")
        )
        await stack.enter_async_context(build_worker(env.client, settings, engine, executor))
        floor = Floor(env.client, f"floor-{uuid.uuid4().hex[:8]}", exchange_timings(settings))
        await stack.enter_async_context(
            Worker(
                env.client,
                task_queue=floor.task_queue,
                workflows=[FloorWorkflow],
                activities=[
                    floor.activities.record,
                    floor.activities.notify,
                    floor.activities.noop,
                ],
            )
        )
        app = create_app(settings, temporal_client=env.client)
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
                limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
            )
        )

        product = Product(http, mailbox, events, tokens, serialise_links=not args.as_is)
        result = await measure(args, levels, product, floor)
        done = [life for level in result["product"] for life in level.done]
        result["verified"] = await verify_closed(
            http, tokens[HOME_BROKER], {life.exchange_id for life in done}
        )
        result["product_shape"] = await history_shape(
            env.client, f"exchange-{done[-1].exchange_id}" if done else None
        )
        result["floor_shape"] = await history_shape(env.client, floor.workflow_id(0))
        result["mailbox"] = mailbox
        result["conflicts"] = product.conflicts
        result["link_waits"] = product.link_waits
        return result


async def measure(
    args: argparse.Namespace, levels: list[int], product: Product, floor: Floor
) -> dict[str, Any]:
    numbers = iter(range(1_000_000))

    def take(count: int) -> range:
        first = next(numbers)
        for _ in range(count - 1):
            next(numbers)
        return range(first, first + count)

    print("warming up: one floor workflow and one exchange (catalogue index, first imports)")
    for warm in (
        await run_level(floor.lifecycle, take(1), 1),
        await run_level(product.lifecycle, take(1), 1),
    ):
        if warm.errors:
            raise RuntimeError(f"warm-up failed: {warm.errors[0]}")
    out: dict[str, Any] = {"product": [], "floor": []}
    for concurrency in levels:
        for name, lifecycle in (("floor", floor.lifecycle), ("product", product.lifecycle)):
            held = product.link_held
            level = await run_level(lifecycle, take(args.n), concurrency)
            level.link_held = product.link_held - held
            p50, p95 = p50_p95_ms(level.latencies())
            print(
                f"  {name:8s} concurrency {concurrency:3d}: {len(level.done)}/{args.n} in "
                f"{level.wall:6.2f} s = {level.per_second:6.2f}/s, decision p50 {p50:6.0f} ms "
                f"p95 {p95:6.0f} ms, process CPU {level.cpu / level.wall:4.0%}"
                + (f", {len(level.errors)} FAILED" if level.errors else ""),
                flush=True,
            )
            for error in level.errors[:3]:
                print(f"    {error}")
            out[name].append(level)
    return out


def report(args: argparse.Namespace, result: dict[str, Any]) -> dict[str, Any]:
    products: list[Level] = result["product"]
    floors: list[Level] = result["floor"]
    mailbox: Mailbox = result["mailbox"]
    rows: list[dict[str, Any]] = []
    print()
    print(
        f"{'conc':>4} | {'floor/s':>8} | {'product/s':>9} | {'ratio':>5} | "
        f"{'p50 ms':>7} | {'p95 ms':>7} | {'floor p50':>9} | {'floor p95':>9} | "
        f"{'exchange p50 s':>14} | {'CPU':>4} | {'floor CPU':>9} | {'links busy':>10} | failed"
    )
    for product, floor in zip(products, floors, strict=True):
        p50, p95 = p50_p95_ms(product.latencies())
        f50, f95 = p50_p95_ms(floor.latencies())
        ratio = product.per_second / floor.per_second if floor.per_second else float("nan")
        lives = [life.seconds for life in product.done]
        row: dict[str, Any] = {
            "concurrency": product.concurrency,
            "product_per_s": round(product.per_second, 3),
            "floor_per_s": round(floor.per_second, 3),
            "ratio": round(ratio, 3),
            "p50_ms": round(p50, 1),
            "p95_ms": round(p95, 1),
            "floor_p50_ms": round(f50, 1),
            "floor_p95_ms": round(f95, 1),
            "exchange_p50_s": round(statistics.median(lives), 3) if lives else None,
            "completed": len(product.done),
            "failed": len(product.errors) + len(floor.errors),
            "process_cpu": round(product.cpu / product.wall, 3),
            "floor_process_cpu": round(floor.cpu / floor.wall, 3),
            "links_busy": round(product.link_held / product.wall, 3),
        }
        rows.append(row)
        print(
            f"{row['concurrency']:>4} | {floor.per_second:8.2f} | {product.per_second:9.2f} | "
            f"{ratio:5.2f} | {p50:7.0f} | {p95:7.0f} | {f50:9.0f} | {f95:9.0f} | "
            f"{row['exchange_p50_s'] or 0:14.2f} | {row['process_cpu']:4.0%} | "
            f"{row['floor_process_cpu']:9.0%} | {row['links_busy']:10.0%} | {row['failed']}"
        )
    peak_index = max(range(len(products)), key=lambda i: products[i].per_second)
    peak, peak_floor = rows[peak_index], max(f.per_second for f in floors)
    met = peak["ratio"] >= GOAL_RATIO and peak["p95_ms"] < GOAL_P95_MS
    print(
        f"\npeak: {peak['product_per_s']:.2f} exchanges/s at concurrency {peak['concurrency']} "
        f"= {peak['ratio']:.2f} of the floor at that concurrency "
        f"({peak['product_per_s'] / peak_floor:.2f} of the floor's own peak {peak_floor:.2f}/s); "
        f"decision p95 {peak['p95_ms']:.0f} ms. Goal (>= {GOAL_RATIO} of the floor, p95 < "
        f"{GOAL_P95_MS:.0f} ms): {'met' if met else 'NOT met'}"
    )
    steps = ("vet", "shortlist", "host_review", "accept", "propose", "pick", "survey")
    print(f"decision -> transition at concurrency {peak['concurrency']}, p50/p95 ms:")
    for step in steps:
        s50, s95 = p50_p95_ms(products[peak_index].latencies(step))
        f50, f95 = p50_p95_ms(floors[peak_index].latencies(step))
        print(f"  {step:12s} product {s50:6.0f} / {s95:6.0f}   floor {f50:6.0f} / {f95:6.0f}")

    measured = [life.marker for level in products for life in level.done]
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
        f"average {os.getloadavg()[0]:.2f}; time scale {args.time_scale:.0f} (a day lasts "
        f"{DAY / args.time_scale * 1000:.0f} ms); transitions seen by polling every "
        f"{args.poll_ms} ms"
    )
    return {
        "bench": "lifecycle",
        "n": args.n,
        "time_scale": args.time_scale,
        "poll_ms": args.poll_ms,
        "levels": rows,
        "peak": {
            "concurrency": peak["concurrency"],
            "product_per_s": peak["product_per_s"],
            "floor_per_s": peak["floor_per_s"],
            "ratio": peak["ratio"],
            "ratio_to_floor_peak": round(peak["product_per_s"] / peak_floor, 3),
            "p50_ms": peak["p50_ms"],
            "p95_ms": peak["p95_ms"],
            "process_cpu": peak["process_cpu"],
            "links_busy": peak["links_busy"],
        },
        "baseline": {
            "what": "floor workflows of the same shape, no-op activities, signals",
            "peak_per_s": round(peak_floor, 3),
        },
        "goal": {"ratio": GOAL_RATIO, "p95_ms": GOAL_P95_MS, "met": met},
        "emails_per_exchange": fewest,
        "emails_per_exchange_max": most,
        "email_kinds": dict(sorted(kinds.items())),
        "history_product": shape_p,
        "history_floor": shape_f,
        "verified": dict(result["verified"]),
        "unfiled_emails": mailbox.unfiled,
        "conflicts_409": dict(sorted(conflicts.items())),
        "workarounds": not args.as_is,
        "link_wait_p95_ms": round(w95, 1) if waits else None,
        "cores": os.cpu_count(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=20, help="lifecycles per concurrency level")
    parser.add_argument("--concurrency", default="1,4,8,16", help="comma-separated levels")
    parser.add_argument("--time-scale", type=float, default=DEFAULT_SCALE)
    parser.add_argument(
        "--with-workarounds",
        dest="as_is",
        action="store_false",
        help="act on one link at a time and seed API tokens as touched (the old FREEZE bug)",
    )
    parser.add_argument("--poll-ms", type=int, default=10, help="event table polling interval")
    args = parser.parse_args()
    started = time.perf_counter()
    result = asyncio.run(bench(args))
    figures = report(args, result)
    figures["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
