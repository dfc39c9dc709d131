"""Ranking quality of the matcher against graded judgments, next to a plain BM25 baseline.

Reads ../shared/data/catalogue.csv with requests-dev.jsonl (requests that name the service) and
requests-problems.jsonl (requests told as problems) beside it (CE4BIG_BENCH_DATA points
elsewhere), and our own bench/data/requests-problems-heldout.jsonl, judged against the same
catalogue; a set whose file is absent is skipped with a message. Imports the catalogue into a
throw-away SQLite database and ranks every request with `rank_candidates`, with and without the
problem layer, and with plain BM25 over each organisation's concatenated text under the same hard
filters. Prints a table per set with nDCG@5 and the share of requests with an ideal (grade 3)
partner in the top 3, per language, and, last, one JSON line with the figures.

    .venv/bin/python bench/match_quality.py
"""

import json
import math
import os
import re
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlmodel import Session  # noqa: E402

from ce4big.catalogue.csvio import CatalogueRow, parse_catalogue_csv  # noqa: E402
from ce4big.catalogue.matching import MatchRequest, rank_candidates  # noqa: E402
from ce4big.catalogue.store import upsert_organisations  # noqa: E402
from ce4big.db import make_engine, upgrade_database  # noqa: E402
from ce4big.settings import Settings  # noqa: E402

DATA = Path(os.environ.get("CE4BIG_BENCH_DATA", ROOT.parent / "shared" / "data"))
CUTOFF = 5
TOP = 10


def dcg(grades: list[int]) -> float:
    return float(sum((2**grade - 1) / math.log2(rank + 2) for rank, grade in enumerate(grades)))


def ndcg_at(ranked: list[str], judgments: dict[str, int], cutoff: int = CUTOFF) -> float:
    ideal = dcg(sorted(judgments.values(), reverse=True)[:cutoff])
    if ideal == 0:
        return 0.0
    return dcg([judgments.get(ident, 0) for ident in ranked[:cutoff]]) / ideal


def ideal_in_top(ranked: list[str], judgments: dict[str, int], cutoff: int = 3) -> bool:
    return any(judgments.get(ident, 0) == 3 for ident in ranked[:cutoff])


TOKEN = re.compile(r"\w+")


def bm25_tokens(text: str) -> list[str]:
    return [t.lower() for t in TOKEN.findall(text)]


class PlainBM25:
    """Okapi BM25 (k1 1.2, b 0.75) over the concatenated text of each organisation."""

    def __init__(self, rows: list[CatalogueRow], k1: float = 1.2, b: float = 0.75) -> None:
        self.rows = rows
        self.k1, self.b = k1, b
        self.docs = [Counter(bm25_tokens(self._text(row))) for row in rows]
        self.lengths = [sum(doc.values()) for doc in self.docs]
        self.average = sum(self.lengths) / max(len(self.lengths), 1)
        self.df: Counter[str] = Counter()
        for doc in self.docs:
            self.df.update(doc.keys())

    @staticmethod
    def _text(row: CatalogueRow) -> str:
        lists = [
            row.services,
            row.technologies,
            row.therapeutic_areas,
            row.modalities,
            row.stages,
            row.certifications,
        ]
        return " ".join([row.name, row.kind, row.description, *(" ".join(x) for x in lists)])

    def rank(self, request: dict[str, Any], top: int = TOP) -> list[str]:
        query = bm25_tokens(f"{request['title']} {request['description']}")
        total = len(self.docs)
        scored = []
        for row, doc, length in zip(self.rows, self.docs, self.lengths, strict=True):
            if not passes_filters(row, request):
                continue
            score = 0.0
            for term in query:
                tf = doc.get(term, 0)
                if not tf:
                    continue
                idf = math.log(1 + (total - self.df[term] + 0.5) / (self.df[term] + 0.5))
                norm = self.k1 * (1 - self.b + self.b * length / self.average)
                score += idf * tf * (self.k1 + 1) / (tf + norm)
            if score > 0:
                scored.append((-score, row.id))
        return [ident for _, ident in sorted(scored)[:top]]


def passes_filters(row: CatalogueRow, request: dict[str, Any]) -> bool:
    return (
        row.accepting_new_projects
        and row.cluster != request["home_cluster"]
        and (not request["target_clusters"] or row.cluster in request["target_clusters"])
        and (not request["partner_kinds"] or row.kind in request["partner_kinds"])
        and all(c in row.certifications for c in request["required_certifications"])
    )


def match_request(line: dict[str, Any]) -> MatchRequest:
    return MatchRequest(
        title=line["title"],
        description=line["description"],
        home_cluster=line["home_cluster"],
        target_clusters=list(line.get("target_clusters") or []),
        partner_kinds=list(line.get("partner_kinds") or []),
        required_certifications=list(line.get("required_certifications") or []),
        cooperation_type=line.get("cooperation_type") or "",
        language=line.get("language") or "en",
    )


# The judged request sets: (name, file, what it is). The shared ones do not ship with the
# product; the held-out problems are ours, written before any problem knowledge.
REQUEST_SETS = (
    ("dev", DATA / "requests-dev.jsonl", "shared: requests that name the service"),
    ("problems", DATA / "requests-problems.jsonl", "shared: requests told as problems"),
    (
        "held-out",
        ROOT / "bench" / "data" / "requests-problems-heldout.jsonl",
        "ours: problem requests written apart from the problem knowledge",
    ),
)
RANKERS = ("matcher", "no_problems", "bm25")


def _summary(scores: list[tuple[float, bool]]) -> dict[str, Any]:
    count = max(len(scores), 1)
    return {
        "requests": len(scores),
        "ndcg@5": round(sum(s for s, _ in scores) / count, 4),
        "ideal_in_top3": round(sum(t for _, t in scores) / count, 4),
    }


def evaluate(
    name: str, lines: list[dict[str, Any]], ranked: dict[str, list[list[str]]]
) -> dict[str, Any]:
    """Prints one set's table and returns its figures, overall and per language."""
    print(f"\n== {name}: {len(lines)} requests")
    print(f"{'request':<10} {'lang':<4} {'nDCG@5':>7} {'no-prob':>7} {'BM25':>7}  top 5 (grade)")
    scores: dict[str, dict[str, list[tuple[float, bool]]]] = {r: {} for r in RANKERS}
    for number, line in enumerate(lines):
        judgments = {k: int(v) for k, v in line["judgments"].items()}
        language = line.get("language", "en")
        row = []
        for ranker in RANKERS:
            result = ranked[ranker][number]
            figure = (ndcg_at(result, judgments), ideal_in_top(result, judgments))
            for key in ("all", language):
                scores[ranker].setdefault(key, []).append(figure)
            row.append(figure[0])
        shown = " ".join(f"{i}({judgments.get(i, 0)})" for i in ranked["matcher"][number][:CUTOFF])
        print(f"{line['id']:<10} {language:<4} {row[0]:7.3f} {row[1]:7.3f} {row[2]:7.3f}  {shown}")
    figures: dict[str, Any] = {}
    for ranker in RANKERS:
        figures[ranker] = _summary(scores[ranker]["all"])
        figures[ranker]["by_language"] = {
            language: _summary(found)
            for language, found in sorted(scores[ranker].items())
            if language != "all"
        }
    print(f"{'':<15}{'matcher':>18} {'no problem layer':>18} {'plain BM25':>18}")
    for language in ("all", *figures["matcher"]["by_language"]):
        cells = []
        for ranker in RANKERS:
            found = (
                figures[ranker] if language == "all" else figures[ranker]["by_language"][language]
            )
            cells.append(f"{found['ndcg@5']:.3f} / {found['ideal_in_top3']:>4.0%}")
        print(f"{name + ' ' + language:<15}" + "".join(f"{c:>19}" for c in cells))
    return figures


def main() -> int:
    catalogue = DATA / "catalogue.csv"
    if not catalogue.is_file():
        print(f"match_quality: no catalogue.csv in {DATA}")
        print("match_quality: skipped; set CE4BIG_BENCH_DATA to the folder that holds it")
        print(json.dumps({"skipped": True, "reason": f"no catalogue.csv in {DATA}"}))
        return 0
    sets: list[tuple[str, list[dict[str, Any]]]] = []
    for name, path, what in REQUEST_SETS:
        if not path.is_file():
            print(f"match_quality: {name} skipped, {path} is absent ({what})")
            continue
        lines = [json.loads(line) for line in path.read_text("utf-8").splitlines() if line]
        sets.append((name, lines))
        print(f"match_quality: {name}, {len(lines)} requests from {path} ({what})")
    rows = parse_catalogue_csv(catalogue.read_bytes())
    baseline = PlainBM25(rows)
    ranked: dict[str, dict[str, list[list[str]]]] = {}
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{folder}/bench.db"
        upgrade_database(url)
        engine = make_engine(url)
        settings = Settings(_env_file=None, database_url=url)
        with Session(engine) as session:
            upsert_organisations(session=session, rows=rows)
            session.commit()
            for name, lines in sets:
                ranked[name] = {ranker: [] for ranker in RANKERS}
                for line in lines:
                    for ranker, problems in (("matcher", True), ("no_problems", False)):
                        found = rank_candidates(
                            session=session,
                            request=match_request(line),
                            top=TOP,
                            settings=settings,
                            infer_problems=problems,
                        )
                        ranked[name][ranker].append([c.organisation_id for c in found])
                    ranked[name]["bm25"].append(baseline.rank(line))
        engine.dispose()

    figures: dict[str, Any] = {}
    for name, lines in sets:
        measured = evaluate(name, lines, ranked[name])
        figures[name] = {
            **measured["matcher"],
            "without_problem_layer": measured["no_problems"],
            "baseline_bm25": measured["bm25"],
        }
    print()
    for name, summary in figures.items():
        print(
            f"{name}: matcher nDCG@5 {summary['ndcg@5']:.3f}, ideal in top 3 "
            f"{summary['ideal_in_top3']:.0%}; without the problem layer "
            f"{summary['without_problem_layer']['ndcg@5']:.3f} / "
            f"{summary['without_problem_layer']['ideal_in_top3']:.0%}; plain BM25 "
            f"{summary['baseline_bm25']['ndcg@5']:.3f} / "
            f"{summary['baseline_bm25']['ideal_in_top3']:.0%}"
        )
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
