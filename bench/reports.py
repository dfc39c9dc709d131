"""Report speed at programme scale, on SQLite and on PostgreSQL, against a plain count.

Generates --exchanges (100,000) exchanges over the two years before now with a fixed seed:
four clusters of different sizes, more requests as the programme grows, each exchange walked
through its lifecycle by the demo data's history builder (ce4big/seed.py), so that its rows are
the ones the workflow's record activities write: timeline events (stage entries included),
stage spells with whom they waited on and their deadlines, five ranked candidates, both survey
waves. Exchanges end with every outcome; the recent ones are still open where their clock
stopped, and a few waited on their home broker past the deadline for months. About ten rows
per exchange, bulk-inserted in batches (SQLAlchemy core executemany).

Each database is created by the Alembic migrations: SQLite in a temporary file, PostgreSQL as
a throwaway database on --postgres-url's server (created, then dropped), VACUUM ANALYZEd after
the load as autovacuum would have. SQLite is left as the app leaves it (no ANALYZE).

The app (api.main.create_app) is called in process through httpx's ASGI transport, so the
figures are the app's, not the network's: a manager's API token for the JSON reports, a
manager's web session for the dashboard. For each database: p50/p95 of GET
/api/v1/reports/funnel (every exchange, as of today), the same as of the middle of the two
years, /api/v1/reports/stages, the dashboard GET /reports when it answers 200, and the CSV
export's rows/s. The baseline, measured on the same database in the same run, is a plain
`SELECT status, count(*) FROM exchange GROUP BY status`; each figure is printed with its ratio
to it. Goal: p95 at most 150 ms for the page and the API. Last line: one JSON object.

    .venv/bin/python bench/reports.py [--exchanges 100000] [--repeat 20]
                                      [--database sqlite|postgresql|both] [--postgres-url URL]
                                      [--revision 0005]
"""

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from sqlalchemy import Engine, create_engine, insert, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from sqlalchemy.exc import OperationalError  # noqa: E402
from sqlmodel import Session, select  # noqa: E402

from api.main import create_app  # noqa: E402
from ce4big import rollup, tallies  # noqa: E402
from ce4big.db import make_engine, upgrade_database  # noqa: E402
from ce4big.domain import (  # noqa: E402
    CLUSTERS,
    CooperationType,
    Outcome,
    Role,
    Stage,
    SurveyOutcome,
    WaveOutcome,
)
from ce4big.models import (  # noqa: E402
    Exchange,
    ExchangeCandidate,
    ExchangeEvent,
    ExchangeStage,
    Organisation,
    ReportFact,
    StageRollup,
    SurveyResponse,
    User,
    utcnow,
)
from ce4big.security import create_api_token  # noqa: E402
from ce4big.seed import PastExchange, Story, walk_exchange  # noqa: E402
from ce4big.settings import Settings  # noqa: E402
from ce4big.websessions import redeem_sign_in_link, request_sign_in  # noqa: E402

SEED = 20261206
DAYS = 730
GOAL_P95_MS = 150.0
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
BATCH = 2_000  # exchanges generated and inserted per transaction
CANDIDATES = 5  # ranked candidates kept per exchange (the matcher stores up to 20)
SMES_PER_CLUSTER = 40
PARTNERS_PER_CLUSTER = 60
WARMUP = 1
BUDGET_SECONDS = 60.0  # per figure: fewer samples than --repeat when calls are slow
MIN_SAMPLES = 3
# Requests per cluster: the programme's clusters are not the same size.
CLUSTER_WEIGHTS = {"biowin": 0.30, "biom": 0.30, "atlanpole": 0.25, "klsk": 0.15}
PARTNER_KINDS = ("cro", "cdmo", "academic_lab", "core_facility", "hospital", "platform")
TITLES = (
    "GLP toxicology package before first-in-human",
    "GMP scale-up of an mRNA formulation",
    "Companion diagnostic assay validation",
    "Patient-derived organoids for efficacy testing",
    "Developability screening of antibody candidates",
    "Clinical-grade whole-genome sequencing",
    "Joint Horizon Europe proposal on AAV capsids",
    "Stability studies for a peptide drug product",
    "Cell line development for a bispecific antibody",
    "Pharmacokinetics in minipigs",
)
SURVEY_ANSWERS = (
    (SurveyOutcome.COOPERATION_POSSIBLE, 0.40),
    (SurveyOutcome.INFORMATIVE_NO_COOPERATION, 0.30),
    (SurveyOutcome.INSUFFICIENT_INTEREST, 0.20),
    (SurveyOutcome.DID_NOT_TAKE_PLACE, 0.10),
)
WAVE_ANSWERS = (
    (WaveOutcome.NO_FURTHER_CONTACT, 0.35),
    (WaveOutcome.VALUABLE_CONTACT, 0.35),
    (WaveOutcome.NEGOTIATION_STARTED, 0.18),
    (WaveOutcome.AGREEMENT_REACHED, 0.12),
)
TABLES = (Exchange, ExchangeEvent, ExchangeStage, ExchangeCandidate, SurveyResponse)


# ---------------------------------------------------------------- the programme's data


def pick(rng: random.Random, weighted: tuple[tuple[Any, float], ...]) -> Any:
    value, weight = weighted[0]
    draw = rng.random()
    for value, weight in weighted:
        if draw < weight:
            return value
        draw -= weight
    return value


def random_story(rng: random.Random) -> Story:
    """How an exchange goes, in proportions a programme like this one sees."""
    draw = rng.random()
    changes = rng.random() < 0.08
    if draw < 0.02:
        # Forgotten: the home broker never vetted or shortlisted it.
        return Story(None, stop=rng.choice((Stage.VETTING, Stage.MATCHING)))
    if draw < 0.14:
        return Story(Outcome.REJECTED, changes=changes)
    if changes and rng.random() < 0.25:
        return Story(Outcome.EXPIRED, stop=Stage.CHANGES_REQUESTED, changes=True)
    if draw < 0.22:
        stops = (
            Stage.VETTING,
            Stage.MATCHING,
            Stage.INTRODUCTION,
            Stage.SCHEDULING,
            Stage.MEETING_SCHEDULED,
        )
        return Story(Outcome.WITHDRAWN, stop=rng.choice(stops), changes=changes)
    if draw < 0.235:
        cancelled_at = (Stage.VETTING, Stage.MATCHING, Stage.HOST_REVIEW, Stage.SCHEDULING)
        return Story(Outcome.CANCELLED, stop=rng.choice(cancelled_at), changes=changes)
    if draw < 0.435:
        return Story(Outcome.NO_PARTNER, changes=changes, declines=rng.choice((1, 1, 2, 3)))
    if draw < 0.495:
        return Story(Outcome.EXPIRED, stop=Stage.SCHEDULING, changes=changes)
    requester = pick(rng, SURVEY_ANSWERS) if rng.random() < 0.85 else None
    wave = pick(rng, WAVE_ANSWERS) if requester is not None and rng.random() < 0.55 else None
    return Story(
        Outcome.COMPLETED,
        changes=changes,
        declines=rng.choice((0, 0, 0, 0, 0, 0, 1, 1, 1, 2)),
        requester_answer=requester,
        partner_answer=pick(rng, SURVEY_ANSWERS) if rng.random() < 0.65 else None,
        wave=wave,
        agreement_type=rng.choice(list(CooperationType)),
    )


def reference_rows(now: datetime) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Organisations (SMEs and partners in each cluster), one user per SME, and a manager."""
    organisations: list[dict[str, Any]] = []
    users: list[dict[str, Any]] = []
    for cluster in CLUSTERS:
        for number in range(SMES_PER_CLUSTER + PARTNERS_PER_CLUSTER):
            sme = number < SMES_PER_CLUSTER
            ident = f"bench-{cluster.id}-{number:03d}"
            organisations.append(
                {
                    "id": ident,
                    "name": f"{cluster.name} {'SME' if sme else 'partner'} {number:03d}",
                    "cluster_id": cluster.id,
                    "kind": "sme" if sme else PARTNER_KINDS[number % len(PARTNER_KINDS)],
                    "country": cluster.country,
                    "city": cluster.city,
                    "website": f"https://{ident}.example",
                    "description": "A synthetic organisation of the report benchmark.",
                    "accepting_new_projects": True,
                    "services": [],
                    "technologies": [],
                    "therapeutic_areas": [],
                    "modalities": [],
                    "stages": [],
                    "certifications": [],
                    "languages": ["en"],
                    "contact_name": "",
                    "contact_email": f"contact@{ident}.example",
                    "updated_at": now,
                }
            )
            if sme:
                users.append(
                    {
                        "id": len(users) + 1,
                        "email": f"sme@{ident}.example",
                        "name": "",
                        "role": Role.SME.value,
                        "cluster_id": cluster.id,
                        "organisation_id": ident,
                        "language": None,
                        "timezone": None,
                        "is_active": True,
                        "created_at": now - timedelta(days=DAYS + 30),
                    }
                )
    users.append({**users[0], "id": len(users) + 1, "email": "manager@bench.example"})
    users[-1].update(role=Role.MANAGER.value, cluster_id="biowin", organisation_id=None)
    return organisations, users


def submission_times(rng: random.Random, count: int, now: datetime) -> list[datetime]:
    """Over the two years before now, more as the programme grows, in working hours."""
    start = now - timedelta(days=DAYS)
    times = []
    for _ in range(count):
        # Density rising linearly: the square root of a uniform draw.
        day = start + timedelta(days=DAYS * rng.random() ** 0.5)
        if day.weekday() >= 5:
            day -= timedelta(days=day.weekday() - 4)
        moment = day.replace(hour=rng.randrange(7, 18), minute=rng.randrange(60))
        times.append(min(moment, now - timedelta(minutes=5)))
    return sorted(times)


def generate(count: int, now: datetime) -> Iterator[dict[type, list[dict[str, Any]]]]:
    """Batches of rows per table, exchanges numbered 1.. in the order they were submitted."""
    rng = random.Random(SEED)
    clusters = list(CLUSTER_WEIGHTS)
    weights = list(CLUSTER_WEIGHTS.values())
    partners = {
        c: [
            (f"bench-{other}-{n:03d}", other)
            for other in clusters
            if other != c
            for n in range(SMES_PER_CLUSTER, SMES_PER_CLUSTER + PARTNERS_PER_CLUSTER)
        ]
        for c in clusters
    }
    user_of = {c.id: index * SMES_PER_CLUSTER + 1 for index, c in enumerate(CLUSTERS)}
    times = submission_times(rng, count, now)
    for first in range(0, count, BATCH):
        rows: dict[type, list[dict[str, Any]]] = {table: [] for table in TABLES}
        for exchange_id in range(first + 1, min(first + BATCH, count) + 1):
            created = times[exchange_id - 1]
            home = rng.choices(clusters, weights)[0]
            sme = rng.randrange(SMES_PER_CLUSTER)
            history = PastExchange(
                exchange_id=exchange_id, home_cluster=home, clock=created, until=now
            )
            walk_exchange(
                history,
                random_story(rng),
                rng=rng,
                partners=rng.sample(partners[home], CANDIDATES),
                requester=f"sme@bench-{home}-{sme:03d}.example",
                home_broker=f"broker@{home}.example",
                manager="manager@bench.example",
            )
            rows[Exchange].append(
                {
                    "id": exchange_id,
                    "title": f"{rng.choice(TITLES)} ({exchange_id})",
                    "description": "A synthetic request of the report benchmark.",
                    "target_clusters": [],
                    "partner_kinds": [rng.choice(PARTNER_KINDS)],
                    "required_certifications": [],
                    "cooperation_type": rng.choice(list(CooperationType)).value,
                    "meeting_format": "any",
                    "languages": ["en"],
                    "requester_id": user_of[home] + sme,
                    "organisation_id": f"bench-{home}-{sme:03d}",
                    "home_cluster": home,
                    "workflow_id": f"exchange-{exchange_id}",
                    "idempotency_key": None,
                    "created_at": created,
                    **history.exchange_values(),
                }
            )
            rows[ExchangeEvent] += history.events
            rows[ExchangeStage] += history.spells
            rows[ExchangeCandidate] += history.candidates.values()
            rows[SurveyResponse] += history.surveys
        # The table fills in the order things happen, as it does in production.
        rows[ExchangeEvent].sort(key=lambda row: row["at"])
        yield rows


def load(engine: Engine, count: int, now: datetime) -> dict[str, int]:
    organisations, users = reference_rows(now)
    with engine.begin() as connection:
        connection.execute(insert(Organisation), organisations)
        connection.execute(insert(User), users)
    written = {table.__name__: 0 for table in TABLES}
    for batch in generate(count, now):
        with engine.begin() as connection:
            for table, rows in batch.items():
                if rows:
                    connection.execute(insert(table), rows)
                    written[table.__name__] += len(rows)
    # What migrations 0007 and 0008 do for rows recorded before the rollups (the activities keep
    # them from then on).
    with engine.begin() as connection:
        written[StageRollup.__name__] = rollup.rebuild(connection)
        written[ReportFact.__name__] = tallies.rebuild(connection)
    if engine.dialect.name == "postgresql":
        with engine.begin() as connection:
            # Ids were given explicitly: move the sequences past them.
            for name in ("exchange", "user"):
                connection.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('\"{name}\"', 'id'), "
                        f'(SELECT max(id) FROM "{name}"))'
                    )
                )
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("VACUUM ANALYZE"))
    return written


# ---------------------------------------------------------------- timing


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


async def sample(call: Callable[[], Awaitable[Any]], repeat: int) -> list[float]:
    """Milliseconds per call, after warm-up calls, within the time budget."""
    for _ in range(WARMUP):
        await call()
    latencies: list[float] = []
    spent = 0.0
    while len(latencies) < repeat and (len(latencies) < MIN_SAMPLES or spent < BUDGET_SECONDS):
        begin = time.perf_counter()
        await call()
        elapsed = time.perf_counter() - begin
        spent += elapsed
        latencies.append(elapsed * 1000)
    return latencies


def figures(latencies: list[float], baseline: dict[str, float]) -> dict[str, Any]:
    p50, p95 = statistics.median(latencies), percentile(latencies, 0.95)
    return {
        "samples": len(latencies),
        "p50_ms": round(p50, 2),
        "p95_ms": round(p95, 2),
        "p50_ratio": round(p50 / baseline["p50_ms"], 1),
        "p95_ratio": round(p95 / baseline["p95_ms"], 1),
        "goal_met": p95 <= GOAL_P95_MS,
    }


def show(label: str, name: str, measured: dict[str, Any]) -> None:
    verdict = "PASS" if measured["goal_met"] else "MISS"
    print(
        f"{label}: {name:<32} p50 {measured['p50_ms']:9.1f} ms  p95 {measured['p95_ms']:9.1f} ms"
        f"  ({measured['p50_ratio']:,.1f}x / {measured['p95_ratio']:,.1f}x the baseline)"
        f"  {verdict} (p95 <= {GOAL_P95_MS:.0f} ms)  [{measured['samples']} calls]"
    )


def credentials(engine: Engine, settings: Settings) -> tuple[str, str]:
    """A manager's API token and web session cookie."""
    with Session(engine) as session:
        user = session.exec(select(User).where(User.email == "manager@bench.example")).one()
        token = create_api_token(session=session, user=user, days=1)
        now = utcnow()
        ticket = request_sign_in(
            session=session, email=user.email, client="bench", settings=settings, now=now
        )
        assert ticket is not None
        opened = redeem_sign_in_link(
            session=session, plain=ticket.token, settings=settings, now=now
        )
        session.commit()
    return token, opened.cookie


async def measure(
    url: str, label: str, count: int, repeat: int, now: datetime, revision: str
) -> dict[str, Any]:
    upgrade_database(url, revision)
    engine = make_engine(url)
    started = time.perf_counter()
    written = load(engine, count, now)
    loaded = time.perf_counter() - started
    total = sum(written.values())
    print(
        f"{label}: loaded {total:,} rows in {loaded:.1f} s ({total / loaded:,.0f} rows/s): "
        + ", ".join(f"{name.lower()} {rows:,}" for name, rows in written.items())
    )
    settings = Settings(
        _env_file=None,
        ce4big_env="test",
        database_url=url,
        secret_key="bench-" + uuid.uuid4().hex,
        base_url="http://bench",
    )
    token, cookie = credentials(engine, settings)

    with engine.connect() as connection:

        async def plain_count() -> None:
            connection.execute(text("SELECT status, count(*) FROM exchange GROUP BY status")).all()

        base = await sample(plain_count, max(repeat, 20))
    engine.dispose()
    baseline = {
        "p50_ms": round(statistics.median(base), 3),
        "p95_ms": round(percentile(base, 0.95), 3),
    }
    print(
        f"{label}: {'baseline: status counts':<32} p50 {baseline['p50_ms']:9.1f} ms"
        f"  p95 {baseline['p95_ms']:9.1f} ms"
    )
    results: dict[str, Any] = {"rows": written, "load_seconds": round(loaded, 1)}
    results["baseline"] = baseline
    middle = (now - timedelta(days=DAYS // 2)).date()
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
            base_url="http://bench",
        ) as api,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
            base_url="http://bench",
        ) as web,
    ):
        api.headers["Authorization"] = f"Bearer {token}"
        web.cookies.set("ce4big_session", cookie)

        def getter(client: httpx.AsyncClient, path: str) -> Callable[[], Awaitable[Any]]:
            async def call() -> None:
                answer = await client.get(path)
                if answer.status_code != 200:
                    raise RuntimeError(f"GET {path}: {answer.status_code} {answer.text[:200]}")

            return call

        calls = (
            ("funnel", "funnel API", api, "/api/v1/reports/funnel"),
            (
                "funnel_as_of",
                f"funnel API as of {middle}",
                api,
                f"/api/v1/reports/funnel?as_of={middle}",
            ),
            ("stages", "stage-times API", api, "/api/v1/reports/stages"),
            ("dashboard", "dashboard page /reports", web, "/reports"),
        )
        for name, title, client, path in calls:
            if name == "dashboard":
                probe = await client.get(path)
                if probe.status_code != 200:
                    print(f"{label}: {title}: not available (HTTP {probe.status_code})")
                    results[name] = None
                    continue
            results[name] = figures(await sample(getter(client, path), repeat), baseline)
            show(label, title, results[name])

        exported: list[float] = []
        rows = 0
        while len(exported) < 3 and sum(exported) < BUDGET_SECONDS:
            begin = time.perf_counter()
            answer = await api.get("/api/v1/reports/exchanges.csv")
            exported.append(time.perf_counter() - begin)
            if answer.status_code != 200:
                raise RuntimeError(f"CSV export: {answer.status_code} {answer.text[:200]}")
            rows = answer.text.count("\n") - 1
        seconds = statistics.median(exported)
        results["export"] = {
            "rows": rows,
            "seconds": round(seconds, 2),
            "rows_per_second": round(rows / seconds),
            "ratio": round(seconds * 1000 / baseline["p50_ms"], 1),
        }
        print(
            f"{label}: {'CSV export':<32} {rows:,} rows in {seconds:.2f} s ="
            f" {rows / seconds:,.0f} rows/s  ({results['export']['ratio']:,.0f}x the baseline)"
        )
    return results


# ---------------------------------------------------------------- databases


def postgres_database(server_url: str) -> str | None:
    """A new database on the server, or None (said) when no server answers."""
    name = f"ce4big_bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        print(f"postgresql: skipped, no server answers at {server_url}: {exc.orig}")
        return None
    finally:
        admin.dispose()
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


def drop_database(server_url: str, url: str) -> None:
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(
                text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')
            )
    finally:
        admin.dispose()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    now = utcnow().replace(tzinfo=UTC)
    results: dict[str, Any] = {
        "exchanges": args.exchanges,
        "revision": args.revision,
        "goal_p95_ms": GOAL_P95_MS,
    }
    if args.database in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as folder:
            results["sqlite"] = await measure(
                f"sqlite:///{folder}/bench.db",
                "sqlite",
                args.exchanges,
                args.repeat,
                now,
                args.revision,
            )
    if args.database in ("postgresql", "both"):
        url = postgres_database(args.postgres_url)
        if url is not None:
            try:
                results["postgresql"] = await measure(
                    url, "postgresql", args.exchanges, args.repeat, now, args.revision
                )
            finally:
                drop_database(args.postgres_url, url)
    timed = [
        m
        for db in ("sqlite", "postgresql")
        if db in results
        for name, m in results[db].items()
        if name in ("funnel", "funnel_as_of", "stages", "dashboard") and m is not None
    ]
    results["goal_met"] = bool(timed) and all(m["goal_met"] for m in timed)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--exchanges", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=20, help="timed calls per figure")
    parser.add_argument("--database", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument(
        "--revision",
        default="head",
        help="migrate only up to this Alembic revision (0005: before the report indexes)",
    )
    args = parser.parse_args()
    if args.exchanges < 1 or args.repeat < 1:
        parser.error("--exchanges and --repeat must be at least 1")
    results = asyncio.run(run(args))
    print(
        f"goal p95 <= {GOAL_P95_MS:.0f} ms everywhere: {'PASS' if results['goal_met'] else 'MISS'}"
    )
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
