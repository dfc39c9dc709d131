"""Ranking quality of the matcher against graded judgments, next to a plain BM25 baseline.

Reads ../shared/data/catalogue.csv and ../shared/data/requests-dev.jsonl (relative to the
repository; CE4BIG_BENCH_DATA points elsewhere), imports the catalogue into a throw-away SQLite
database and ranks every request with `rank_candidates`. The baseline is BM25 over each
organisation's concatenated text, with the same hard filters. Prints a table and, last, one
JSON line with nDCG@5 and the share of requests with an ideal (grade 3) partner in the top 3.

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


def main() -> int:
    catalogue, requests_file = DATA / "catalogue.csv", DATA / "requests-dev.jsonl"
    if not catalogue.is_file() or not requests_file.is_file():
        print(f"match_quality: no benchmark data in {DATA} (catalogue.csv, requests-dev.jsonl)")
        print("match_quality: skipped; set CE4BIG_BENCH_DATA to the folder that holds them")
        print(json.dumps({"skipped": True, "reason": f"no data in {DATA}"}))
        return 0
    rows = parse_catalogue_csv(catalogue.read_bytes())
    requests = [json.loads(line) for line in requests_file.read_text("utf-8").splitlines() if line]
    baseline = PlainBM25(rows)
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{folder}/bench.db"
        upgrade_database(url)
        engine = make_engine(url)
        settings = Settings(_env_file=None, database_url=url)
        with Session(engine) as session:
            upsert_organisations(session=session, rows=rows)
            session.commit()
            results = []
            for line in requests:
                ranked = [
                    c.organisation_id
                    for c in rank_candidates(
                        session=session, request=match_request(line), top=TOP, settings=settings
                    )
                ]
                plain = baseline.rank(line)
                results.append((line, ranked, plain))
        engine.dispose()

    print(f"{'request':<8} {'lang':<4} {'nDCG@5':>7} {'BM25':>7}  top 5 (grade)")
    totals: dict[str, float] = {"ndcg": 0.0, "top3": 0, "bm25_ndcg": 0.0, "bm25_top3": 0}
    for line, ranked, plain in results:
        judgments = {k: int(v) for k, v in line["judgments"].items()}
        ours, theirs = ndcg_at(ranked, judgments), ndcg_at(plain, judgments)
        totals["ndcg"] += ours
        totals["bm25_ndcg"] += theirs
        totals["top3"] += ideal_in_top(ranked, judgments)
        totals["bm25_top3"] += ideal_in_top(plain, judgments)
        shown = " ".join(f"{i}({judgments.get(i, 0)})" for i in ranked[:CUTOFF])
        print(f"{line['id']:<8} {line.get('language', 'en'):<4} {ours:7.3f} {theirs:7.3f}  {shown}")
    count = max(len(results), 1)
    figures: dict[str, Any] = {
        "requests": len(results),
        "ndcg@5": round(totals["ndcg"] / count, 4),
        "ideal_in_top3": round(totals["top3"] / count, 4),
        "baseline_bm25": {
            "ndcg@5": round(totals["bm25_ndcg"] / count, 4),
            "ideal_in_top3": round(totals["bm25_top3"] / count, 4),
        },
    }
    print(
        f"matcher nDCG@5 {figures['ndcg@5']:.3f}, ideal in top 3 {figures['ideal_in_top3']:.0%}; "
        f"plain BM25 nDCG@5 {figures['baseline_bm25']['ndcg@5']:.3f}, "
        f"ideal in top 3 {figures['baseline_bm25']['ideal_in_top3']:.0%}"
    )
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
