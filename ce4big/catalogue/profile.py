"""How the matcher reads one organisation: its vocabulary concepts (with where they were found
and what was negated) and the terms of its text, packed into a small binary profile that is
stored next to the organisation at import so that ranking never re-reads the text."""

import hashlib
import math
import multiprocessing
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt

from ce4big.catalogue.vocabulary import (
    CONCEPTS,
    Facet,
    TextAnalysis,
    analyse_item,
    analyse_text,
    concept_for_certification,
    expand_ancestors,
    kind_concept,
)

# Where a concept was found decides how much the organisation stands for it: a structured
# field is a statement, a mention in the description may be context.
FIELD_WEIGHTS = {
    "kind": 1.0,
    "country": 0.6,
    "certifications": 1.0,
    "services": 1.0,
    "technologies": 1.0,
    "therapeutic_areas": 1.0,
    "modalities": 1.0,
    "stages": 1.0,
    "name": 0.9,
    "description": 0.8,
}
_COUNTRY_CONCEPTS = {
    "FR": "geo.france",
    "BE": "geo.belgium",
    "LU": "geo.luxembourg",
    "DE": "geo.germany",
    "AT": "geo.austria",
    "CH": "geo.switzerland",
    "PL": "geo.poland",
    "NL": "geo.netherlands",
}
LIST_FIELDS = ("services", "technologies", "therapeutic_areas", "modalities", "stages")
TEXT_FIELDS = ("name", "description", "services", "technologies")
READ_FIELDS = ("name", "description", "kind", "country", "certifications", *LIST_FIELDS)
# BM25 document side with a fixed reference length, so a weight never depends on the rest of
# the catalogue and a stored profile stays valid as the catalogue grows.
BM25_K1 = 1.2
BM25_B = 0.5
REFERENCE_LENGTH = 60.0
# What a narrower concept counts for its broader one, per level.
NARROWER = 0.85
# A specialist answers a request for its speciality better than a generalist that lists it
# among twenty services: concept weights shrink a little with the number of services stated.
FOCUS_B = 0.2
FOCUS_REFERENCE = 10.0
# Below this many rows, starting worker processes (each imports and warms the vocabulary)
# costs more than it saves.
PARALLEL_FROM = 40_000
MAX_WORKERS = 4


@dataclass
class ConceptEvidence:
    weight: float
    surface: str
    field: str


@dataclass
class OrganisationReading:
    language: str
    concepts: dict[str, ConceptEvidence] = field(default_factory=dict)
    negated: dict[str, str] = field(default_factory=dict)
    term_counts: Counter[str] = field(default_factory=Counter)
    term_surfaces: dict[str, str] = field(default_factory=dict)
    length: int = 0

    def add(self, concept: str, weight: float, surface: str, field_name: str) -> None:
        known = self.concepts.get(concept)
        if known is None or weight > known.weight:
            self.concepts[concept] = ConceptEvidence(weight, surface, field_name)

    def has_descendant_of(self, concept: str) -> str | None:
        """A concept of this organisation that is narrower than `concept`, if any."""
        narrower = [
            (expand_ancestors(own)[concept], -evidence.weight, own)
            for own, evidence in self.concepts.items()
            if concept in expand_ancestors(own)
        ]
        return min(narrower)[2] if narrower else None


def _value(values: Mapping[str, Any], name: str) -> Any:
    return values.get(name) or ([] if name in LIST_FIELDS or name == "certifications" else "")


def read_organisation(values: Mapping[str, Any], *, surfaces: bool = False) -> OrganisationReading:
    """Read an organisation given as a mapping of its catalogue fields (kind, name, lists...)."""
    description = str(_value(values, "description"))
    name = str(_value(values, "name"))
    described = analyse_text(description or name, surfaces=surfaces)
    language = described.language
    reading = OrganisationReading(language=language)
    country = _COUNTRY_CONCEPTS.get(str(_value(values, "country")).upper())
    if country:
        reading.add(country, FIELD_WEIGHTS["country"], str(values.get("country")), "country")
    kind = str(_value(values, "kind"))
    if kind:
        reading.add(kind_concept(kind), FIELD_WEIGHTS["kind"], kind, "kind")
    for certification in _value(values, "certifications"):
        reading.add(
            concept_for_certification(certification),
            FIELD_WEIGHTS["certifications"],
            certification,
            "certifications",
        )

    analyses: list[tuple[str, TextAnalysis]] = [
        ("name", analyse_text(name, language=language, surfaces=surfaces)),
        ("description", described if description else analyse_text("")),
    ]
    for list_field in LIST_FIELDS:
        for item in _value(values, list_field):
            analysis = (
                analyse_text(item, language=language, surfaces=True)
                if surfaces
                else analyse_item(item, language)
            )
            analyses.append((list_field, analysis))

    negated_candidates: dict[str, str] = {}
    for field_name, analysis in analyses:
        for mention in analysis.mentions:
            if mention.negated:
                negated_candidates.setdefault(mention.concept, mention.surface)
            else:
                reading.add(mention.concept, FIELD_WEIGHTS[field_name], mention.surface, field_name)
        if field_name in TEXT_FIELDS:
            reading.term_counts.update(analysis.terms)
            reading.length += len(analysis.terms)
            for term, surface in analysis.term_surfaces.items():
                reading.term_surfaces.setdefault(term, surface)
    # A concept counts as negated only when nothing else in the entry states it.
    reading.negated = {c: s for c, s in negated_candidates.items() if c not in reading.concepts}
    return reading


def profile_terms(reading: OrganisationReading) -> dict[str, float]:
    """The weighted terms the index stores: `c:` concepts (an organisation stating a concept
    also stands, a little less, for each broader one: GMP manufacturing is manufacturing),
    `n:` negated concepts and `w:` text terms (BM25 document weights, scaled to 0..1)."""
    terms: dict[str, float] = {}
    doing = sum(
        1 for c in reading.concepts if CONCEPTS[c].facet in (Facet.SERVICE, Facet.TECHNOLOGY)
    )
    focus = (1 - FOCUS_B + FOCUS_B / FOCUS_REFERENCE) / (
        1 - FOCUS_B + FOCUS_B * max(doing, 1) / FOCUS_REFERENCE
    )
    for concept, evidence in reading.concepts.items():
        key = f"c:{concept}"
        terms[key] = max(terms.get(key, 0.0), evidence.weight * focus)
        for ancestor, distance in expand_ancestors(concept).items():
            key = f"c:{ancestor}"
            terms[key] = max(terms.get(key, 0.0), evidence.weight * focus * NARROWER**distance)
    for concept in reading.negated:
        terms[f"n:{concept}"] = 1.0
    norm = BM25_K1 * (1 - BM25_B + BM25_B * max(reading.length, 1) / REFERENCE_LENGTH)
    for term, count in reading.term_counts.items():
        terms[f"w:{term}"] = count * (BM25_K1 + 1) / (count + norm) / (BM25_K1 + 1)
    return terms


@lru_cache(maxsize=500_000)
def term_hash(term: str) -> int:
    return int.from_bytes(
        hashlib.blake2b(term.encode(), digest_size=8).digest(), "little", signed=True
    )


def pack_terms(terms: Mapping[str, float]) -> bytes:
    hashes = np.fromiter((term_hash(t) for t in terms), dtype=np.int64, count=len(terms))
    weights = np.fromiter(terms.values(), dtype=np.float32, count=len(terms))
    return hashes.tobytes() + weights.tobytes()


def unpack_terms(data: bytes) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    count = len(data) // 12
    hashes = np.frombuffer(data, dtype=np.int64, count=count)
    weights = np.frombuffer(data, dtype=np.float32, count=count, offset=count * 8)
    return hashes, weights


def organisation_profile(values: Mapping[str, Any]) -> bytes:
    return pack_terms(profile_terms(read_organisation(values)))


def organisation_profiles(many: Sequence[Mapping[str, Any]]) -> list[bytes]:
    """Profiles of many organisations, in order. Reading text is the slow part of a large
    import, so from PARALLEL_FROM rows on it is spread over the machine's cores."""
    workers = min(os.cpu_count() or 1, MAX_WORKERS)
    if len(many) < PARALLEL_FROM or workers < 2:
        return [organisation_profile(values) for values in many]
    # forkserver, not fork: the web app and the worker run threads, which fork would copy.
    context = multiprocessing.get_context("forkserver")
    # Only what a reading needs crosses to the workers: pickling is part of the cost.
    slim = [{name: values.get(name) for name in READ_FIELDS} for values in many]
    try:
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            return list(pool.map(organisation_profile, slim, chunksize=1000))
    except (BrokenProcessPool, OSError):
        # A caller's script without a __main__ guard cannot start workers: do it here.
        return [organisation_profile(values) for values in many]


def bm25_idf(document_frequency: int, documents: int) -> float:
    return math.log(1 + (documents - document_frequency + 0.5) / (document_frequency + 0.5))
