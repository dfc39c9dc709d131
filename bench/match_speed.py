"""Import and match speed at catalogue scale, on SQLite and on PostgreSQL.

Generates 100,000 synthetic organisations with a fixed seed (descriptions and lists written
from the vocabulary in the four languages, so the profiles are as rich as real ones), imports
them through the real path (CSV parse and validation, upsert, profiles) and prints rows/s, then
ranks 200 synthetic requests and prints the p50 and p95 latency of `rank_candidates` (the first
call, which builds the in-process index, is reported apart), with the problem layer and without it
(`infer_problems=False`, the matcher before it) in the same run, on the service requests and on
requests told as problems. PostgreSQL runs in a schema of its
own (ce4big_bench) of CE4BIG_BENCH_POSTGRES_URL, else TEST_POSTGRES_URL, else the local `postgres`
database; it is skipped with a message when no server answers. Last line: one JSON object.

    .venv/bin/python bench/match_speed.py [--organisations N] [--requests N]
"""

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from sqlalchemy.exc import OperationalError  # noqa: E402
from sqlmodel import Session  # noqa: E402

from ce4big.catalogue.csvio import HEADER, parse_catalogue_csv, write_catalogue_csv  # noqa: E402
from ce4big.catalogue.matching import MatchRequest, rank_candidates  # noqa: E402
from ce4big.catalogue.store import upsert_organisations  # noqa: E402
from ce4big.catalogue.vocabulary import CONCEPTS, Facet  # noqa: E402
from ce4big.db import make_engine, upgrade_database  # noqa: E402
from ce4big.domain import CERTIFICATIONS, CLUSTERS, OrganisationKind  # noqa: E402
from ce4big.settings import Settings  # noqa: E402

SEED = 20261128
SCHEMA = "ce4big_bench"
GOAL_P95_MS = 100.0
GOAL_ROWS_PER_SECOND = 5000.0
LANGUAGE_OF = {c.id: c.language for c in CLUSTERS}
FILLERS = {
    "en": ["We work with biotech companies across Europe.", "Projects from feasibility to"],
    "fr": ["Nous accompagnons les entreprises de biotechnologie.", "Projets de la faisabilité"],
    "de": ["Wir arbeiten mit Biotech-Unternehmen in ganz Europa.", "Projekte von der Planung"],
    "pl": ["Współpracujemy z firmami biotechnologicznymi w Europie.", "Projekty od koncepcji"],
}
OPENERS = {
    "en": ("We offer", "with expertise in", "for"),
    "fr": ("Nous proposons", "avec une expertise en", "pour"),
    "de": ("Wir bieten", "mit Erfahrung in", "für"),
    "pl": ("Oferujemy", "z doświadczeniem w", "dla"),
}


def _by_facet(*facets: Facet) -> list[str]:
    return sorted(c.id for c in CONCEPTS.values() if c.facet in facets)


def _name(rng: random.Random, concept: str, language: str) -> str:
    synonyms = CONCEPTS[concept].synonyms
    names = synonyms.get(language) or synonyms["en"]
    return rng.choice(names[:4])


def generate_rows(count: int, seed: int = SEED) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    doing = _by_facet(Facet.SERVICE, Facet.TECHNOLOGY)
    areas = _by_facet(Facet.THERAPEUTIC_AREA)
    modalities = _by_facet(Facet.MODALITY)
    stages = _by_facet(Facet.STAGE)
    kinds = [k.value for k in OrganisationKind]
    rows = []
    for number in range(count):
        cluster = CLUSTERS[number % len(CLUSTERS)].id
        language = LANGUAGE_OF[cluster] if rng.random() < 0.5 else "en"
        services = rng.sample(doing, rng.randint(3, 7))
        chosen_areas = rng.sample(areas, rng.randint(1, 3))
        chosen_modalities = rng.sample(modalities, rng.randint(1, 3))
        opener, expertise, purpose = OPENERS[language]
        description = (
            f"{opener} {', '.join(_name(rng, s, language) for s in services[:3])} "
            f"{expertise} {_name(rng, services[-1], language)} {purpose} "
            f"{', '.join(_name(rng, a, language) for a in chosen_areas)}. "
            f"{rng.choice(FILLERS[language])} {_name(rng, rng.choice(stages), language)}."
        )
        ident = f"syn-{number:06d}"
        rows.append(
            {
                "id": ident,
                "name": f"Synthetic {cluster.title()} {number:06d}",
                "cluster": cluster,
                "kind": rng.choice(kinds),
                "country": {"atlanpole": "FR", "biowin": "BE", "biom": "DE", "klsk": "PL"}[cluster],
                "city": "",
                "website": f"https://{ident}.example",
                "description": description,
                "services": [_name(rng, s, rng.choice((language, "en"))) for s in services],
                "technologies": [_name(rng, rng.choice(doing), "en") for _ in range(2)],
                "therapeutic_areas": [CONCEPTS[a].label for a in chosen_areas],
                "modalities": [CONCEPTS[m].label for m in chosen_modalities],
                "stages": [CONCEPTS[s].label for s in rng.sample(stages, 2)],
                "certifications": rng.sample(CERTIFICATIONS, rng.randint(0, 2)),
                "languages": [language, "en"] if language != "en" else ["en"],
                "contact_name": "",
                "contact_email": f"contact@{ident}.example",
                "accepting_new_projects": rng.random() < 0.9,
            }
        )
    return rows


def generate_requests(count: int, seed: int = SEED + 1) -> list[MatchRequest]:
    rng = random.Random(seed)
    doing = _by_facet(Facet.SERVICE, Facet.TECHNOLOGY)
    areas = _by_facet(Facet.THERAPEUTIC_AREA)
    modalities = _by_facet(Facet.MODALITY)
    requests = []
    for _ in range(count):
        language = rng.choice(("en", "fr", "de", "pl"))
        wanted = rng.sample(doing, rng.randint(2, 4))
        opener, _expertise, purpose = OPENERS[language]
        description = (
            f"{opener} {', '.join(_name(rng, w, language) for w in wanted)} {purpose} "
            f"{_name(rng, rng.choice(areas), language)} "
            f"({_name(rng, rng.choice(modalities), language)})."
        )
        requests.append(
            MatchRequest(
                title=_name(rng, wanted[0], language),
                description=description,
                home_cluster=rng.choice(CLUSTERS).id,
                target_clusters=[],
                partner_kinds=rng.choice(([], [], ["cro"], ["cdmo", "sme"])),
                required_certifications=rng.choice(([], [], [], ["GLP"], ["GMP"])),
                language=language,
            )
        )
    return requests


# Requests told as problems, two per language, written for this benchmark.
PROBLEM_REQUESTS = (
    ("en", "Our antibody does not keep", "It aggregates after three weeks in the liquid vial."),
    ("en", "How many patients?", "The effect size is unknown and reviewers want a justification."),
    ("fr", "Le foie du chien a réagi", "Pas celui du rat : ce risque vaut-il chez l'homme ?"),
    ("fr", "Patients trop loin", "Les familles vivent loin des centres et renoncent aux visites."),
    ("de", "Gleicher Titer, andere Potenz", "Die Potenz unserer AAV-Chargen schwankt stark."),
    ("de", "Prototyp", "Unser Prototyp ist von Hand gelötet, wir brauchen 5000 Stück im Jahr."),
    ("pl", "Inne cukry", "Nasze przeciwciało ma inne wzorce glikozylacji niż lek referencyjny."),
    ("pl", "Na co działa?", "Nie wiemy, z jakim białkiem wiąże się cząsteczka z przesiewu."),
)


def generate_problem_requests(count: int, seed: int = SEED + 2) -> list[MatchRequest]:
    rng = random.Random(seed)
    requests = []
    for number in range(count):
        language, title, description = PROBLEM_REQUESTS[number % len(PROBLEM_REQUESTS)]
        requests.append(
            MatchRequest(
                title=title,
                description=description,
                home_cluster=rng.choice(CLUSTERS).id,
                target_clusters=[],
                partner_kinds=rng.choice(([], [], ["cro"], ["cdmo", "sme"])),
                required_certifications=[],
                language=language,
            )
        )
    return requests


def csv_bytes(rows: list[dict[str, Any]]) -> bytes:
    assert tuple(rows[0]) == HEADER
    return write_catalogue_csv(rows).encode("utf-8")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def _latencies(
    session: Session, settings: Settings, requests: list[MatchRequest]
) -> tuple[dict[str, float], dict[str, float]]:
    """p50 and p95 with the problem layer and without it, the two timed request by request in
    alternating order, so that both see the same caches and the same machine load."""
    timed: dict[bool, list[float]] = {True: [], False: []}
    for number, request in enumerate(requests):
        for problems in (True, False) if number % 2 else (False, True):
            begin = time.perf_counter()
            rank_candidates(
                session=session, request=request, top=10, settings=settings, infer_problems=problems
            )
            timed[problems].append((time.perf_counter() - begin) * 1000)
    on, off = (
        {
            "p50_ms": round(statistics.median(found), 1),
            "p95_ms": round(percentile(found, 0.95), 1),
        }
        for found in (timed[True], timed[False])
    )
    return on, off


def run(
    url: str,
    label: str,
    data: bytes,
    requests: list[MatchRequest],
    problem_requests: list[MatchRequest],
) -> dict[str, Any]:
    upgrade_database(url)
    engine = make_engine(url)
    settings = Settings(_env_file=None, database_url=url)
    started = time.perf_counter()
    rows = parse_catalogue_csv(data)
    parsed = time.perf_counter()
    with Session(engine) as session:
        upsert_organisations(session=session, rows=rows)
        session.commit()
    imported = time.perf_counter()
    rate = len(rows) / (imported - started)
    print(
        f"{label}: imported {len(rows):,} rows in {imported - started:.1f} s "
        f"(parse and validate {parsed - started:.1f} s) = {rate:,.0f} rows/s"
    )
    with Session(engine) as session:
        first = time.perf_counter()
        rank_candidates(session=session, request=requests[0], top=10, settings=settings)
        cold = time.perf_counter() - first
        with_layer, without = _latencies(session, settings, requests)
        told_with, told_without = _latencies(session, settings, problem_requests)
    engine.dispose()
    figures = {
        "rows_per_second": round(rate),
        "first_match_ms": round(cold * 1000, 1),
        **with_layer,
        "without_problem_layer": without,
        "problem_requests": {**told_with, "without_problem_layer": told_without},
    }
    print(f"{label}: first match (builds the index) {figures['first_match_ms']} ms")
    for name, found, count in (
        ("service requests", (with_layer, without), len(requests)),
        ("problem requests", (told_with, told_without), len(problem_requests)),
    ):
        print(
            f"{label}: {count} {name}: with the problem layer p50 {found[0]['p50_ms']} ms, "
            f"p95 {found[0]['p95_ms']} ms; without it p50 {found[1]['p50_ms']} ms, "
            f"p95 {found[1]['p95_ms']} ms"
        )
    return figures


def postgres_url() -> str | None:
    base = os.environ.get("CE4BIG_BENCH_POSTGRES_URL") or os.environ.get(
        "TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    )
    engine = make_engine(base)
    try:
        with engine.begin() as connection:
            connection.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
            connection.execute(text(f"CREATE SCHEMA {SCHEMA}"))
    except OperationalError as exc:
        print(f"postgresql: skipped, no server answers at {base}: {exc.orig}")
        return None
    finally:
        engine.dispose()
    return (
        make_url(base)
        .update_query_dict({"options": f"-csearch_path={SCHEMA}"})
        .render_as_string(hide_password=False)
    )


def drop_schema(url: str) -> None:
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
    engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--organisations", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--databases", default="sqlite,postgresql", help="comma-separated")
    args = parser.parse_args()
    print(f"generating {args.organisations:,} organisations and {args.requests} requests ...")
    data = csv_bytes(generate_rows(args.organisations))
    requests = generate_requests(args.requests)
    problem_requests = generate_problem_requests(args.requests)
    print(f"catalogue file: {len(data) / 1e6:.1f} MB")
    results: dict[str, Any] = {"organisations": args.organisations, "requests": args.requests}
    databases = args.databases.split(",")
    if "sqlite" in databases:
        with tempfile.TemporaryDirectory() as folder:
            results["sqlite"] = run(
                f"sqlite:///{folder}/bench.db", "sqlite", data, requests, problem_requests
            )
    url = postgres_url() if "postgresql" in databases else None
    if url is not None:
        try:
            results["postgresql"] = run(url, "postgresql", data, requests, problem_requests)
        finally:
            drop_schema(url)
    measured = [v for k, v in results.items() if k in ("sqlite", "postgresql")]
    results["goals"] = {
        "p95_ms_at_most": GOAL_P95_MS,
        "rows_per_second_at_least": GOAL_ROWS_PER_SECOND,
        "met": all(
            m["p95_ms"] <= GOAL_P95_MS and m["rows_per_second"] >= GOAL_ROWS_PER_SECOND
            for m in measured
        ),
    }
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
