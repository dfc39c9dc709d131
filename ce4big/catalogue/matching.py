"""The one matcher: ranks catalogue organisations for an exchange request, with reasons.

Used by `ce4big match`, the API and the workflow's candidate activity. Hard filters first
(another cluster than the requester's, target clusters, partner kinds, required certifications,
accepting new projects); then a score that adds, for each vocabulary concept of the request, what
the organisation states about it (the same concept, a narrower one, a broader one, or that it
does *not* offer it), plus BM25 text relevance on the words no concept accounts for. Rare
concepts and words weigh more (IDF over the catalogue). A request told as a problem ("our antibody
does not keep in the liquid vial") also asks for the needs that answer it (formulation, stability
studies), read by `problems.py`, whose reasons show the chain from the request's words to the
organisation's service. Organisations already busy with open introductions, or that recently
declined this requester, rank after the others.

The index is built in process from the stored profiles (see `profile.py`) and rebuilt whenever
the organisation table changes, so every process (web app, worker, command line) ranks the same
rows the same way on SQLite and PostgreSQL.
"""

import math
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import case, func, select
from sqlmodel import Session

from ce4big.catalogue.problems import Inference, read_problems
from ce4big.catalogue.profile import (
    NARROWER,
    OrganisationReading,
    bm25_idf,
    organisation_profiles,
    read_organisation,
    term_hash,
    unpack_terms,
)
from ce4big.catalogue.text import fold
from ce4big.catalogue.vocabulary import (
    CONCEPTS,
    VOCABULARY_VERSION,
    Facet,
    analyse_text,
    canonical_certification,
    expand_ancestors,
    kind_concept,
)
from ce4big.domain import CERTIFICATIONS, CLUSTERS, CLUSTERS_BY_ID, OrganisationKind
from ce4big.errors import Invalid
from ce4big.models import Exchange, ExchangeCandidate, Organisation, OrganisationProfile, utcnow
from ce4big.settings import Settings

ORGANISATIONS = Organisation.__table__  # type: ignore[attr-defined]
PROFILES = OrganisationProfile.__table__  # type: ignore[attr-defined]
EXCHANGES = Exchange.__table__  # type: ignore[attr-defined]
EXCHANGE_CANDIDATES = ExchangeCandidate.__table__  # type: ignore[attr-defined]

# How much a request concept of each facet matters: what the partner must *do* (services,
# technologies) decides; the product's context (area, modality, stage) refines.
FACET_WEIGHTS = {
    Facet.SERVICE: 1.0,
    Facet.TECHNOLOGY: 1.0,
    Facet.THERAPEUTIC_AREA: 0.45,
    Facet.MODALITY: 0.45,
    Facet.STAGE: 0.25,
    Facet.CERTIFICATION: 0.6,
    Facet.KIND: 0.4,
    Facet.REGION: 0.5,
}
BROADER = {1: 0.5, 2: 0.25}  # ... or only a broader one (parent, grandparent)
NEGATED = 0.8  # ... or says it does not offer it
TEXT_WEIGHT = 0.35
TITLE_BOOST = 1.25
COOPERATION_WEIGHT = 0.5
COOPERATION_CONCEPTS = {
    "licensing": "svc.licensing",
    "joint_eu_project": "svc.eu_projects",
    "research_cooperation": "svc.co_development",
    "technical_cooperation": "svc.co_development",
    "commercial_agreement": "svc.distribution",
}
# A need inferred from a problem weighs a little less than one the request names; a concept that
# in the problem describes the situation (the dog whose liver reacted) weighs little; one the
# request rules out ("not a CRO", "rather than more animal studies") costs part of the score.
PROBLEM_WEIGHT = 0.9
CONTEXT_WEIGHT = 0.25
STRESS_WEIGHT = 2.0
EXCLUDED_WEIGHT = 0.5
OPEN_INTRODUCTION = ("asked", "accepted")
MAX_TEXT_REASONS = 3


@dataclass(frozen=True)
class MatchRequest:
    title: str
    description: str
    home_cluster: str
    target_clusters: list[str]
    partner_kinds: list[str]
    required_certifications: list[str]
    cooperation_type: str = ""
    language: str = "en"
    requester_organisation_id: str | None = None


@dataclass(frozen=True)
class Candidate:
    organisation_id: str
    score: float
    reasons: list[str]


@dataclass
class RequestConcept:
    weight: float
    surface: str
    # The problem that calls for this concept, when the request does not name it.
    inferred: Inference | None = None


@dataclass
class RequestReading:
    concepts: dict[str, RequestConcept] = field(default_factory=dict)
    terms: Counter[str] = field(default_factory=Counter)
    term_surfaces: dict[str, str] = field(default_factory=dict)
    # Concepts the request rules out, with the words that do.
    excluded: dict[str, str] = field(default_factory=dict)
    problems: list[Inference] = field(default_factory=list)


def read_request(request: MatchRequest, *, infer_problems: bool = True) -> RequestReading:
    """The concepts (weighted by facet, title and repetition) and free words of a request, with
    the needs that the problems it describes call for unless `infer_problems` is off."""
    reading = RequestReading()
    mentions: Counter[str] = Counter()
    in_title: set[str] = set()
    surfaces: dict[str, str] = {}
    for part, text in (("title", request.title), ("description", request.description)):
        analysis = analyse_text(text, language=request.language, surfaces=True)
        for mention in analysis.mentions:
            if mention.negated:
                continue
            mentions[mention.concept] += 1
            surfaces.setdefault(mention.concept, mention.surface)
            if part == "title":
                in_title.add(mention.concept)
        reading.terms.update(analysis.free_terms)
        for term, surface in analysis.term_surfaces.items():
            reading.term_surfaces.setdefault(term, surface)
    for concept, count in mentions.items():
        definition = CONCEPTS[concept]
        weight = FACET_WEIGHTS[definition.facet] * definition.weight
        weight *= (TITLE_BOOST if concept in in_title else 1.0) * (1 + 0.15 * min(count - 1, 3))
        reading.concepts[concept] = RequestConcept(weight, surfaces[concept])
    if infer_problems:
        _add_problem_needs(reading, request)
    cooperation = COOPERATION_CONCEPTS.get(request.cooperation_type)
    if cooperation and cooperation not in reading.concepts:
        definition = CONCEPTS[cooperation]
        reading.concepts[cooperation] = RequestConcept(
            FACET_WEIGHTS[definition.facet] * definition.weight * COOPERATION_WEIGHT,
            request.cooperation_type.replace("_", " "),
        )
    return reading


def _add_problem_needs(reading: RequestReading, request: MatchRequest) -> None:
    found = read_problems((request.title, request.description), language=request.language)
    reading.problems = found.problems
    reading.excluded = dict(found.excluded)
    for concept in list(reading.concepts):
        if found.is_excluded(concept) is not None:
            del reading.concepts[concept]
        elif concept not in found.needs and found.is_context(concept) is not None:
            reading.concepts[concept].weight *= CONTEXT_WEIGHT
        elif CONCEPTS[concept].facet in found.stressed:
            reading.concepts[concept].weight *= STRESS_WEIGHT
    for concept, (factor, inference) in found.needs.items():
        definition = CONCEPTS[concept]
        weight = FACET_WEIGHTS[definition.facet] * definition.weight * factor * PROBLEM_WEIGHT
        known = reading.concepts.get(concept)
        if known is None or known.weight < weight:
            reading.concepts[concept] = RequestConcept(weight, inference.words, inference)


@dataclass
class CatalogueIndex:
    """Every organisation's filter columns and profile terms, as arrays; rows sorted by id."""

    revision: tuple[Any, ...]
    ids: list[str]
    position: dict[str, int]
    clusters: npt.NDArray[np.int16]
    kinds: npt.NDArray[np.int16]
    accepting: npt.NDArray[np.bool_]
    certifications: npt.NDArray[np.int64]
    hashes: npt.NDArray[np.int64]
    documents: npt.NDArray[np.int32]
    weights: npt.NDArray[np.float32]

    @property
    def size(self) -> int:
        return len(self.ids)

    def frequencies(self, keys: Sequence[int]) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
        wanted = np.asarray(keys, dtype=np.int64)
        return (
            np.searchsorted(self.hashes, wanted, side="left"),
            np.searchsorted(self.hashes, wanted, side="right"),
        )

    def accumulate(self, keys: Sequence[int], factors: Sequence[float]) -> npt.NDArray[np.float64]:
        scores = np.zeros(self.size, dtype=np.float64)
        if not keys:
            return scores
        lows, highs = self.frequencies(keys)
        slices = [np.arange(lo, hi) for lo, hi in zip(lows, highs, strict=True) if hi > lo]
        if not slices:
            return scores
        picked = np.concatenate(slices)
        scale = np.repeat(np.asarray(factors, dtype=np.float64), highs - lows)
        scores += np.bincount(
            self.documents[picked],
            weights=self.weights[picked].astype(np.float64) * scale,
            minlength=self.size,
        )
        return scores


_CLUSTER_CODES = {cluster.id: code for code, cluster in enumerate(CLUSTERS)}
_KIND_CODES = {kind.value: code for code, kind in enumerate(OrganisationKind)}
_CERTIFICATION_BITS = {name: 1 << bit for bit, name in enumerate(CERTIFICATIONS)}
_indexes: dict[str, CatalogueIndex] = {}
_lock = threading.Lock()


def _revision(session: Session) -> tuple[Any, ...]:
    accepting = func.sum(case((ORGANISATIONS.c.accepting_new_projects, 1), else_=0))
    row = session.execute(
        select(func.count(), func.max(ORGANISATIONS.c.updated_at), accepting)
    ).one()
    return (VOCABULARY_VERSION, row[0], row[1], row[2])


def catalogue_index(*, session: Session) -> CatalogueIndex:
    """The index of the session's database, rebuilt when the organisation table has changed."""
    key = str(session.get_bind().engine.url)
    revision = _revision(session)
    with _lock:
        index = _indexes.get(key)
        if index is None or index.revision != revision:
            index = _build_index(session=session, revision=revision)
            _indexes[key] = index
        return index


def _build_index(*, session: Session, revision: tuple[Any, ...]) -> CatalogueIndex:
    found = session.execute(
        select(
            ORGANISATIONS.c.id,
            ORGANISATIONS.c.cluster_id,
            ORGANISATIONS.c.kind,
            ORGANISATIONS.c.accepting_new_projects,
            ORGANISATIONS.c.certifications,
            ORGANISATIONS.c.updated_at,
            PROFILES.c.vocabulary_version,
            PROFILES.c.source_updated_at,
            PROFILES.c.terms,
        ).outerjoin(PROFILES, PROFILES.c.organisation_id == ORGANISATIONS.c.id)
    ).all()
    # Python's order, not the database collation, so ties break the same way everywhere.
    rows = sorted(found, key=lambda r: r.id)
    stale = [
        r.id
        for r in rows
        if r.terms is None
        or r.vocabulary_version != VOCABULARY_VERSION
        or r.source_updated_at != r.updated_at
    ]
    fresh = _profiles_in_memory(session=session, ids=stale) if stale else {}
    count = len(rows)
    clusters = np.fromiter((_CLUSTER_CODES.get(r.cluster_id, -1) for r in rows), np.int16, count)
    kinds = np.fromiter((_KIND_CODES.get(r.kind, -1) for r in rows), np.int16, count)
    accepting = np.fromiter((bool(r.accepting_new_projects) for r in rows), np.bool_, count)
    certifications = np.fromiter(
        (sum(_CERTIFICATION_BITS.get(c, 0) for c in r.certifications or ()) for r in rows),
        np.int64,
        count,
    )
    hash_parts: list[npt.NDArray[np.int64]] = []
    weight_parts: list[npt.NDArray[np.float32]] = []
    lengths = np.zeros(count, dtype=np.int64)
    for position, row in enumerate(rows):
        hashes, weights = unpack_terms(fresh.get(row.id) or row.terms)
        hash_parts.append(hashes)
        weight_parts.append(weights)
        lengths[position] = len(hashes)
    all_hashes = np.concatenate(hash_parts) if hash_parts else np.zeros(0, np.int64)
    all_weights = np.concatenate(weight_parts) if weight_parts else np.zeros(0, np.float32)
    documents = np.repeat(np.arange(count, dtype=np.int32), lengths)
    order = np.argsort(all_hashes, kind="stable")
    ids = [r.id for r in rows]
    return CatalogueIndex(
        revision=revision,
        ids=ids,
        position={ident: p for p, ident in enumerate(ids)},
        clusters=clusters,
        kinds=kinds,
        accepting=accepting,
        certifications=certifications,
        hashes=all_hashes[order],
        documents=documents[order],
        weights=all_weights[order],
    )


def _profiles_in_memory(*, session: Session, ids: list[str]) -> dict[str, bytes]:
    """Rows written without a profile (or read with an older vocabulary), profiled here."""
    rows: list[dict[str, Any]] = []
    for start in range(0, len(ids), 500):
        found = session.execute(
            select(ORGANISATIONS).where(ORGANISATIONS.c.id.in_(ids[start : start + 500]))
        )
        rows.extend(dict(row._mapping) for row in found)
    return {
        values["id"]: terms for values, terms in zip(rows, organisation_profiles(rows), strict=True)
    }


@dataclass
class _Query:
    keys: list[int] = field(default_factory=list)
    factors: list[float] = field(default_factory=list)
    ideal: float = 0.0
    idf: dict[str, float] = field(default_factory=dict)

    def add(self, term: str, factor: float) -> None:
        self.keys.append(term_hash(term))
        self.factors.append(factor)


def _build_query(
    reading: RequestReading, index: CatalogueIndex, *, expand_broader: bool = True
) -> _Query:
    terms: list[str] = []
    for concept in reading.concepts:
        terms.append(f"c:{concept}")
        terms += [f"c:{ancestor}" for ancestor in expand_ancestors(concept)]
    terms += [f"w:{term}" for term in reading.terms]
    unique = list(dict.fromkeys(terms))
    lows, highs = index.frequencies([term_hash(t) for t in unique])
    documents = max(index.size, 1)
    query = _Query()
    query.idf = {
        term: bm25_idf(int(hi - lo), documents)
        for term, lo, hi in zip(unique, lows, highs, strict=True)
    }
    broader: dict[str, float] = {}
    for concept, wanted in reading.concepts.items():
        own = query.idf[f"c:{concept}"]
        query.ideal += wanted.weight * own
        query.add(f"c:{concept}", wanted.weight * own)
        query.add(f"n:{concept}", -wanted.weight * NEGATED * own)
        for ancestor, distance in expand_ancestors(concept).items():
            if not expand_broader or ancestor in reading.concepts or distance not in BROADER:
                continue
            factor = wanted.weight * BROADER[distance] * query.idf[f"c:{ancestor}"]
            broader[ancestor] = max(broader.get(ancestor, 0.0), factor)
    for ancestor, factor in broader.items():
        # Counted in the ideal too, so that a score stays within 0..1.
        query.ideal += factor
        query.add(f"c:{ancestor}", factor)
    for term, count in reading.terms.items():
        factor = TEXT_WEIGHT * query.idf[f"w:{term}"] * (1 + math.log(count))
        query.ideal += factor
        query.add(f"w:{term}", factor)
    return query


def _hard_filter(index: CatalogueIndex, request: MatchRequest) -> npt.NDArray[np.bool_] | None:
    """Rows that pass the hard filters; None when no organisation can (an unknown certification)."""
    mask = index.accepting.copy()
    home = _CLUSTER_CODES.get(request.home_cluster)
    if home is not None:
        mask &= index.clusters != home
    if request.target_clusters:
        codes = [_CLUSTER_CODES[c] for c in request.target_clusters if c in _CLUSTER_CODES]
        mask &= np.isin(index.clusters, codes)
    if request.partner_kinds:
        codes = [_KIND_CODES[k] for k in request.partner_kinds if k in _KIND_CODES]
        mask &= np.isin(index.kinds, codes)
    required = 0
    for name in request.required_certifications:
        canonical = canonical_certification(name)
        if canonical is None or canonical not in _CERTIFICATION_BITS:
            return None
        required |= _CERTIFICATION_BITS[canonical]
    if required:
        mask &= (index.certifications & required) == required
    if request.requester_organisation_id in index.position:
        mask[index.position[request.requester_organisation_id]] = False
    return mask


@dataclass(frozen=True)
class _Busy:
    open_introductions: int = 0
    declined_on: datetime | None = None


def _busy_organisations(
    *, session: Session, request: MatchRequest, settings: Settings
) -> dict[str, _Busy]:
    busy: dict[str, _Busy] = {}
    candidates, exchanges = EXCHANGE_CANDIDATES, EXCHANGES
    open_counts = session.execute(
        select(candidates.c.organisation_id, func.count())
        .join(exchanges, exchanges.c.id == candidates.c.exchange_id)
        .where(candidates.c.intro_status.in_(OPEN_INTRODUCTION), exchanges.c.outcome.is_(None))
        .group_by(candidates.c.organisation_id)
        .having(func.count() >= settings.fairness_open_introductions)
    )
    for organisation_id, count in open_counts:
        busy[organisation_id] = _Busy(open_introductions=count)
    if request.requester_organisation_id:
        since = utcnow() - timedelta(days=settings.fairness_decline_days)
        declines = session.execute(
            select(candidates.c.organisation_id, func.max(candidates.c.updated_at))
            .join(exchanges, exchanges.c.id == candidates.c.exchange_id)
            .where(
                candidates.c.intro_status == "declined",
                exchanges.c.organisation_id == request.requester_organisation_id,
                candidates.c.updated_at >= since,
            )
            .group_by(candidates.c.organisation_id)
        )
        for organisation_id, declined_on in declines:
            previous = busy.get(organisation_id, _Busy())
            busy[organisation_id] = _Busy(previous.open_introductions, declined_on)
    return busy


def rank_candidates(
    *,
    session: Session,
    request: MatchRequest,
    top: int = 10,
    settings: Settings,
    infer_problems: bool = True,
) -> list[Candidate]:
    """The best `top` organisations for the request, best first, each with its reasons.
    `infer_problems` off ranks on what the request names only (for comparison)."""
    if top < 1:
        return []
    index = catalogue_index(session=session)
    mask = _hard_filter(index, request)
    if mask is None or not index.size:
        return []
    reading = read_request(request, infer_problems=infer_problems)
    query = _build_query(reading, index)
    raw = index.accumulate(query.keys, query.factors)
    if reading.excluded:
        # An organisation that states what the request rules out keeps part of its score.
        keys = [term_hash(f"c:{concept}") for concept in reading.excluded]
        stated = index.accumulate(keys, [1.0] * len(keys))
        raw *= 1 - EXCLUDED_WEIGHT * np.minimum(stated, 1.0)
    scores = np.round(raw / query.ideal, 4) if query.ideal > 0 else raw
    eligible = np.flatnonzero(mask & (scores > 0))
    if not eligible.size:
        return []
    busy = _busy_organisations(session=session, request=request, settings=settings)
    wanted = top + len(busy)
    if eligible.size > wanted:
        # Keep the best `wanted` scores, and every row tied with the last of them.
        best = np.argpartition(-scores[eligible], wanted - 1)[:wanted]
        eligible = eligible[scores[eligible] >= scores[eligible[best]].min()]
    # Ties break by id: rows are sorted by id, so by position.
    order = eligible[np.lexsort((eligible, -scores[eligible]))]
    shown = [p for p in order if index.ids[p] not in busy][:top]
    shown += [p for p in order if index.ids[p] in busy][: top - len(shown)]
    rows = {
        row.id: dict(row._mapping)
        for row in session.execute(
            select(ORGANISATIONS).where(ORGANISATIONS.c.id.in_([index.ids[p] for p in shown]))
        )
    }
    candidates = []
    for position in shown:
        ident = index.ids[position]
        if ident not in rows:
            continue  # deleted since the index was read
        reasons = explain_match(
            organisation=rows[ident],
            request=request,
            reading=reading,
            idf=query.idf,
            busy=busy.get(ident),
            settings=settings,
        )
        candidates.append(Candidate(ident, float(scores[position]), reasons))
    return candidates


def _facet_label(concept: str) -> str:
    return CONCEPTS[concept].facet.value


def _quote(surface: str) -> str:
    return "'" + " ".join(surface.split()) + "'"


@dataclass
class _Evidence:
    """What an organisation states about one or more of the request's concepts."""

    mode: str  # exact | narrower | broader | negated
    concept: str  # the organisation's concept
    strength: float
    asked: list[str]
    listed: str
    inference: Inference | None = None


def _evidence(
    concept: str, wanted: RequestConcept, organisation: OrganisationReading
) -> _Evidence | None:
    # An inferred need was not asked in words: the reason names the problem instead.
    asked = [] if wanted.inferred else [wanted.surface]
    inference = wanted.inferred
    found = organisation.concepts.get(concept)
    if found is not None:
        return _Evidence("exact", concept, found.weight, asked, found.surface, inference)
    narrower = organisation.has_descendant_of(concept)
    if narrower is not None:
        found = organisation.concepts[narrower]
        strength = NARROWER ** expand_ancestors(narrower)[concept] * found.weight
        return _Evidence("narrower", narrower, strength, asked, found.surface, inference)
    for ancestor, distance in expand_ancestors(concept).items():
        if distance in BROADER and ancestor in organisation.concepts:
            found = organisation.concepts[ancestor]
            strength = BROADER[distance] * found.weight
            return _Evidence("broader", ancestor, strength, asked, found.surface, inference)
    if concept in organisation.negated:
        return _Evidence("negated", concept, -NEGATED, [], organisation.negated[concept], inference)
    return None


def _describe(evidence: _Evidence, asked_for: str) -> str:
    if evidence.inference is not None and evidence.mode != "negated":
        # The chain a broker follows: the request's words, the need they imply, the entry.
        problem = evidence.inference
        need = "" if asked_for == CONCEPTS[evidence.concept].label else f" → {asked_for}"
        plain = _Evidence(evidence.mode, evidence.concept, evidence.strength, [], evidence.listed)
        return (
            f"problem: {problem.problem.label} ({_quote(problem.words)}){need} → "
            f"{_describe(plain, asked_for)}"
        )
    definition = CONCEPTS[evidence.concept]
    label = definition.label
    asked = ", ".join(_quote(a) for a in dict.fromkeys(evidence.asked))
    if evidence.mode == "negated":
        return f"note: says it does not offer {label} ({_quote(evidence.listed)})"
    notes = []
    if (
        evidence.mode == "exact"
        and evidence.asked
        and {fold(a) for a in evidence.asked} != {fold(label)}
    ):
        notes.append(f"matched {asked}")
    if fold(evidence.listed) not in {fold(label), *(fold(a) for a in evidence.asked)}:
        notes.append(f"listed as {_quote(evidence.listed)}")
    if evidence.mode == "narrower":
        notes.append(
            f"a kind of {asked_for}, asked as {asked}" if asked else f"a kind of {asked_for}"
        )
    elif evidence.mode == "broader":
        notes.append(f"broader than {asked or asked_for}")
    suffix = f" ({'; '.join(notes)})" if notes else ""
    if definition.facet is Facet.CERTIFICATION and evidence.mode == "exact":
        return f"{label} certified{suffix}"
    return f"{definition.facet.value}: {label}{suffix}"


def explain_match(
    *,
    organisation: dict[str, Any],
    request: MatchRequest,
    reading: RequestReading,
    idf: dict[str, float],
    busy: "_Busy | None",
    settings: Settings,
) -> list[str]:
    """Human-readable reasons, strongest first; each states a fact of the catalogue entry."""
    own = read_organisation(organisation, surfaces=True)
    reasons: list[str] = []
    for name in request.required_certifications:
        canonical = canonical_certification(name)
        if canonical and canonical in (organisation.get("certifications") or []):
            reasons.append(f"{canonical} certified (required)")
    kind = organisation.get("kind", "")
    if kind in request.partner_kinds:
        reasons.append(f"kind: {CONCEPTS[kind_concept(kind)].label} (as requested)")
    # One reason per concept of the organisation, strongest first, naming every request
    # word it answers ("broader than 'Ames test', 'comet assay'").
    grouped: dict[tuple[str, str], tuple[float, _Evidence, str]] = {}
    required = {canonical_certification(c) for c in request.required_certifications}
    for concept, wanted in reading.concepts.items():
        definition = CONCEPTS[concept]
        if definition.facet is Facet.CERTIFICATION and definition.label in required:
            continue
        if definition.facet is Facet.KIND and kind in request.partner_kinds:
            continue
        found = _evidence(concept, wanted, own)
        if found is None:
            continue
        strength = found.strength * wanted.weight * idf.get(f"c:{concept}", 1.0)
        key = (found.mode if found.mode == "negated" else "stated", found.concept)
        if key in grouped:
            best, known, asked_for = grouped[key]
            if known.mode == found.mode and (known.inference is None) == (found.inference is None):
                known.asked += found.asked
            elif found.mode == "exact" or strength > best:
                grouped[key] = (max(best, strength), found, definition.label)
                continue
            grouped[key] = (max(best, strength), known, asked_for)
        else:
            grouped[key] = (strength, found, definition.label)
    weighed = [
        (strength, _describe(evidence, asked_for))
        for strength, evidence, asked_for in grouped.values()
    ]
    weighed.sort(key=lambda item: -item[0])
    reasons += [text for strength, text in weighed if strength > 0]
    shared = [
        (idf.get(f"w:{term}", 0.0) * count, term)
        for term, count in reading.terms.items()
        if term in own.term_counts
    ]
    shared.sort(key=lambda item: (-item[0], item[1]))
    if shared:
        words = ", ".join(
            _quote(reading.term_surfaces.get(term, term)) for _, term in shared[:MAX_TEXT_REASONS]
        )
        reasons.append(f"description shares {words}")
    reasons += [text for strength, text in weighed if strength <= 0]
    for concept, words in reading.excluded.items():
        stated = own.concepts.get(concept)
        if stated is not None:
            label = CONCEPTS[concept].label
            reasons.append(f"note: the request rules out {label} ({_quote(words)})")
    cluster = CLUSTERS_BY_ID.get(organisation.get("cluster_id", ""))
    if cluster is not None:
        reasons.append(f"cluster: {cluster.name} ({cluster.country})")
    if busy is not None:
        if busy.open_introductions:
            reasons.append(
                f"ranked after the others: already in introduction for {busy.open_introductions}"
                f" open exchanges (limit {settings.fairness_open_introductions})"
            )
        if busy.declined_on is not None:
            reasons.append(
                "ranked after the others: declined an introduction from your organisation on "
                f"{busy.declined_on:%Y-%m-%d} (within {settings.fairness_decline_days} days)"
            )
    return reasons


def _string_list(data: dict[str, Any], name: str) -> list[str]:
    value = data.get(name) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise Invalid(f"{name}: expected a list of strings")
    return list(value)


def request_from_json(data: Any) -> MatchRequest:
    """A request from the fields of a line of requests-dev.jsonl (judgments are ignored)."""
    if not isinstance(data, dict):
        raise Invalid("the request must be a JSON object")
    for name in ("title", "description", "home_cluster"):
        if not isinstance(data.get(name), str) or not data[name].strip():
            raise Invalid(f"{name}: required text")
    if data["home_cluster"] not in CLUSTERS_BY_ID:
        raise Invalid(f"home_cluster: unknown cluster {data['home_cluster']!r}")
    requester = data.get("requester_organisation_id")
    return MatchRequest(
        title=data["title"],
        description=data["description"],
        home_cluster=data["home_cluster"],
        target_clusters=_string_list(data, "target_clusters"),
        partner_kinds=_string_list(data, "partner_kinds"),
        required_certifications=_string_list(data, "required_certifications"),
        cooperation_type=str(data.get("cooperation_type") or ""),
        language=str(data.get("language") or "en"),
        requester_organisation_id=str(requester) if requester else None,
    )


def search_organisations(
    *,
    session: Session,
    q: str,
    cluster: str | None = None,
    kind: str | None = None,
    certification: str | None = None,
) -> list[str]:
    """Ids of the organisations relevant to a free-text query (any of the four languages),
    most relevant first, within the given cluster, kind and certification."""
    index = catalogue_index(session=session)
    mask = np.ones(index.size, dtype=np.bool_)
    if cluster is not None:
        mask &= index.clusters == _CLUSTER_CODES.get(cluster, -2)
    if kind is not None:
        mask &= index.kinds == _KIND_CODES.get(kind, -2)
    if certification is not None:
        mask &= (index.certifications & _CERTIFICATION_BITS.get(certification, 0)) != 0
    reading = read_request(
        MatchRequest(
            title=q,
            description="",
            home_cluster="",
            target_clusters=[],
            partner_kinds=[],
            required_certifications=[],
            language="",
        ),
        infer_problems=False,
    )
    # A search lists what the query names (or narrower); broader neighbours would be noise.
    query = _build_query(reading, index, expand_broader=False)
    scores = np.round(index.accumulate(query.keys, query.factors), 6)
    eligible = np.flatnonzero(mask & (scores > 0))
    order = eligible[np.lexsort((eligible, -scores[eligible]))]
    return [index.ids[p] for p in order]
