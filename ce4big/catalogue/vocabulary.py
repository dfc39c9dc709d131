"""The project's controlled vocabulary: concepts of personalised-medicine partnering, each with a
facet, broader concepts, and labels and synonyms in English, French, German and Polish.

`analyse_text` reads any text (a catalogue entry, a request) into the concepts it mentions, with
what was negated ("Non-GLP", "single-cell workflows are not offered"), and the stems of its
remaining words for plain text relevance. Matching is accent- and case-insensitive, drops
function words, stems per language and splits German compounds.
"""

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

from ce4big.catalogue.text import (
    FUNCTION_WORDS,
    STOP_WORDS,
    Tokens,
    detect_language,
    fold,
    fold_with_offsets,
    negated_positions,
    split_compound,
    stem,
    tokenize,
    word_set,
)
from ce4big.domain import LANGUAGES


class Facet(StrEnum):
    SERVICE = "service"
    TECHNOLOGY = "technology"
    THERAPEUTIC_AREA = "therapeutic area"
    MODALITY = "modality"
    STAGE = "stage"
    CERTIFICATION = "certification"
    KIND = "organisation kind"
    REGION = "region"


@dataclass(frozen=True)
class Concept:
    id: str
    facet: Facet
    broader: tuple[str, ...]
    synonyms: dict[str, tuple[str, ...]]
    weight: float = 1.0

    @property
    def label(self) -> str:
        return self.synonyms["en"][0]

    def label_in(self, language: str) -> str:
        names = self.synonyms.get(language) or self.synonyms["en"]
        return names[0]


class Mention(NamedTuple):
    concept: str
    surface: str
    negated: bool


@dataclass(slots=True)
class TextAnalysis:
    language: str
    mentions: tuple[Mention, ...]
    # Stems of content words outside negations, repeated as often as they occur.
    terms: tuple[str, ...]
    # The same, less the words that a concept mention already accounts for.
    free_terms: tuple[str, ...]
    # The first written form of each stem, for reasons.
    term_surfaces: dict[str, str] = field(default_factory=dict)

    def concepts(self, *, negated: bool = False) -> list[str]:
        return list(dict.fromkeys(m.concept for m in self.mentions if m.negated == negated))


_POLISH_PHASE_WORDS = frozenset({"faza", "fazy", "fazie", "fazach", "faze"})
_PHASE_WORDS = frozenset({"phase", "phases", "phasen"}) | _POLISH_PHASE_WORDS
_NUMERALS = {"i": 1, "ii": 2, "iii": 3, "iv": 4, "1": 1, "2": 2, "3": 3, "4": 4}
_JOINERS = frozenset({"to", "a", "bis", "do", "und", "and", "et", "i", "or", "oder", "ou", "lub"})
_RANGE_JOINERS = frozenset({"to", "a", "bis", "do"})
_CUES = word_set(
    """
no without excluding except non sans aucun aucune hors kein keine keinen keiner keines
keinem ohne bez brak zadnych zadnej zadnego not never cannot doesn don isn aren pas
jamais nicht nie
"""
)
_ALL_STOP_WORDS = frozenset().union(*STOP_WORDS.values()) | _CUES


def _numeral(word: str) -> int | None:
    if word in _NUMERALS:
        return _NUMERALS[word]
    if len(word) > 1 and word[-1] in "ab" and word[:-1] in _NUMERALS:
        return _NUMERALS[word[:-1]]
    return None


# One token as the phrase matcher sees it: (stem, first source token, last source token).
_Unit = tuple[str, int, int]


_WordInfo = tuple[tuple[str, ...], tuple[str, ...]]
# Per-language memo of `_word`: a plain dict lookup is the cheapest step of reading a text.
_WORDS: dict[str, dict[str, _WordInfo]] = {language: {} for language in LANGUAGES}
_MAX_WORDS = 200_000


def _word(word: str, language: str) -> _WordInfo:
    """What one word contributes: its phrase-matching keys (none for a function word, several
    for a German compound) and its text terms (none for a stop word)."""
    keys: tuple[str, ...] = ()
    parts = None
    # German compounds turn up in other languages' entries too (a service list in German in an
    # English description), so long unknown words are tried everywhere.
    splittable = len(word) >= (8 if language == "de" else 10)
    if word not in FUNCTION_WORDS:
        key = stem(word, language)
        if splittable and key not in _PHRASE_WORDS:
            parts = _compound_parts(word)
        keys = tuple(stem(part, language) for part in parts) if parts else (key,)
    terms: tuple[str, ...] = ()
    if len(word) >= 2 and not word.isdigit() and word not in _ALL_STOP_WORDS:
        if parts is None and splittable:
            parts = _compound_parts(word)
        terms = tuple(dict.fromkeys(text_term(p) for p in (word, *(parts or ()))))
    return keys, terms


def _units(tokens: Tokens, language: str) -> list[_Unit]:
    units: list[_Unit] = []
    words = tokens.words
    index = 0
    count = len(words)
    while index < count:
        word = words[index]
        if word in _PHASE_WORDS and index + 1 < count and _numeral(words[index + 1]):
            numbers, end = _phase_span(tokens, index + 1)
            units.extend((f"phase{n}", index, end - 1) for n in numbers)
            index = end
            continue
        if _numeral(word):
            # Polish also puts the numeral first: "badanie I fazy", "I/II fazy".
            numbers, end = _phase_span(tokens, index)
            if end < count and words[end] in _POLISH_PHASE_WORDS:
                units.extend((f"phase{n}", index, end) for n in numbers)
                index = end + 1
                continue
        for key in _known(word, language)[0]:
            units.append((key, index, index))
        index += 1
    return units


def _known(word: str, language: str) -> _WordInfo:
    memo = _WORDS[language]
    info = memo.get(word)
    if info is None:
        if len(memo) > _MAX_WORDS:
            memo.clear()
        info = memo[word] = _word(word, language)
    return info


def _phase_span(tokens: Tokens, index: int) -> tuple[list[int], int]:
    words = tokens.words
    first = _numeral(words[index])
    assert first is not None
    numbers = [first]
    index += 1
    while index < len(words):
        word = words[index]
        joiner_is_range = False
        if word in _JOINERS and index + 1 < len(words) and _numeral(words[index + 1]):
            joiner_is_range = word in _RANGE_JOINERS
            index += 1
        elif _numeral(word) and tokens.between(index - 1, index).strip(" /-,+") == "":
            joiner_is_range = "-" in tokens.between(index - 1, index)
        else:
            break
        number = _numeral(words[index])
        assert number is not None
        if joiner_is_range and number > numbers[-1]:
            numbers.extend(range(numbers[-1] + 1, number + 1))
        else:
            numbers.append(number)
        index += 1
    return list(dict.fromkeys(numbers)), index


def analyse_text(text: str, *, language: str | None = None, surfaces: bool = False) -> TextAnalysis:
    """The concepts and terms of one text; `surfaces` keeps the written forms for reasons."""
    if surfaces:
        folded, offsets = fold_with_offsets(text)
    else:
        folded, offsets = fold(text), None
    tokens = tokenize(folded)
    if language not in LANGUAGES:
        language = detect_language(tokens.words)
    negated = negated_positions(tokens) if not _CUES.isdisjoint(tokens.words) else set()
    units = _units(tokens, language)

    def written(first: int, last: int) -> str:
        start, end = tokens.spans()[first][0], tokens.spans()[last][1]
        if not surfaces:
            return folded[start:end]
        if offsets is not None:
            start, end = offsets[start], offsets[end]
        return text[start:end]

    mentions: list[Mention] = []
    covered: set[int] = set()
    position = 0
    while position < len(units):
        lengths = _FIRST.get(units[position][0])
        matched = 0
        if lengths:
            for length in lengths:
                if position + length > len(units):
                    continue
                key = tuple(u[0] for u in units[position : position + length])
                concepts = _PHRASES.get(key)
                if concepts is None:
                    continue
                first, last = units[position][1], units[position + length - 1][2]
                is_negated = first in negated
                surface = written(first, last) if surfaces else ""
                mentions.extend(Mention(c, surface, is_negated) for c in concepts)
                covered.update(range(first, last + 1))
                matched = length
                break
        position += matched or 1

    terms: list[str] = []
    free: list[str] = []
    term_surfaces: dict[str, str] = {}
    for index, word in enumerate(tokens.words):
        if index in negated:
            continue
        for term in _known(word, language)[1]:
            terms.append(term)
            if index not in covered:
                free.append(term)
            if surfaces and term not in term_surfaces:
                term_surfaces[term] = written(index, index)
    return TextAnalysis(language, tuple(mentions), tuple(terms), tuple(free), term_surfaces)


def text_term(word: str) -> str:
    """Text relevance uses one language-neutral stem (a plural s off) so that a request and an
    entry in different languages agree on shared words: CFTR, forskolin, Visium, organoids."""
    if len(word) > 4 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


@lru_cache(maxsize=100_000)
def analyse_item(item: str, language: str) -> TextAnalysis:
    """A list item (a service, a technology...): short and often repeated, so cached."""
    return analyse_text(item, language=language)


def expand_ancestors(concept_id: str) -> dict[str, int]:
    """Broader concepts with their distance (1 for a parent)."""
    return _ANCESTORS.get(concept_id, {})


def certification_concept(name: str) -> str | None:
    return _CERTIFICATION_CONCEPTS.get(fold(name))


def canonical_certification(name: str) -> str | None:
    """'BPL', 'Gute Laborpraxis' or 'glp' -> 'GLP'; None when it is no known certification."""
    folded = fold(name).strip()
    if folded in _CERTIFICATION_CONCEPTS:
        return _CANONICAL_BY_CONCEPT[_CERTIFICATION_CONCEPTS[folded]]
    mentions = [
        m
        for m in analyse_text(name).mentions
        if m.concept in _CANONICAL_BY_CONCEPT and not m.negated
    ]
    if len(mentions) == 1:
        return _CANONICAL_BY_CONCEPT[mentions[0].concept]
    return None


def kind_concept(kind: str) -> str:
    return f"kind.{kind}"


def concept_for_certification(canonical: str) -> str:
    return _CONCEPT_BY_CANONICAL[canonical]


def phrase_tokens(phrase: str, language: str) -> tuple[str, ...]:
    tokens = tokenize(fold(phrase))
    return tuple(u[0] for u in _units_plain(tokens, language))


def _units_plain(tokens: Tokens, language: str) -> list[_Unit]:
    units: list[_Unit] = []
    words = tokens.words
    index = 0
    while index < len(words):
        word = words[index]
        if word in _PHASE_WORDS and index + 1 < len(words) and _numeral(words[index + 1]):
            numbers, end = _phase_span(tokens, index + 1)
            units.extend((f"phase{n}", index, end - 1) for n in numbers)
            index = end
            continue
        if word not in FUNCTION_WORDS:
            units.append((stem(word, language), index, index))
        index += 1
    return units


@lru_cache(maxsize=50_000)
def _compound_parts(word: str) -> tuple[str, ...] | None:
    parts = split_compound(word, _GERMAN_LEXICON)
    return tuple(parts) if parts else None


def _parse(data: str) -> dict[str, Concept]:
    concepts: dict[str, Concept] = {}
    facet = Facet.SERVICE
    for raw in data.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("@"):
            facet = Facet(line[1:].strip())
            continue
        cells = [c.strip() for c in line.split("|")]
        if len(cells) != 6:
            raise ValueError(f"vocabulary line needs 6 cells: {line!r}")
        ident, broader, *names = cells
        weight = 1.0
        if "*" in ident:
            ident, factor = ident.split("*")
            weight = float(factor)
        synonyms = {
            lang: tuple(s.strip() for s in cell.split(";") if s.strip())
            for lang, cell in zip(LANGUAGES, names, strict=True)
        }
        if not synonyms["en"]:
            raise ValueError(f"{ident}: an English label is required")
        if ident in concepts:
            raise ValueError(f"{ident}: defined twice")
        concepts[ident] = Concept(
            id=ident,
            facet=facet,
            broader=tuple(b for b in broader.split() if b),
            synonyms={k: v for k, v in synonyms.items() if v},
            weight=weight,
        )
    for concept in concepts.values():
        for parent in concept.broader:
            if parent not in concepts:
                raise ValueError(f"{concept.id}: unknown broader concept {parent}")
    return concepts


def _ancestors(concepts: dict[str, Concept]) -> dict[str, dict[str, int]]:
    result: dict[str, dict[str, int]] = {}
    for ident in concepts:
        found: dict[str, int] = {}
        frontier = [(p, 1) for p in concepts[ident].broader]
        while frontier:
            parent, distance = frontier.pop(0)
            if parent in found or parent == ident:
                continue
            found[parent] = distance
            frontier.extend((p, distance + 1) for p in concepts[parent].broader)
        if found:
            result[ident] = found
    return result


def _phrase_index(
    concepts: Iterable[Concept],
) -> tuple[dict[tuple[str, ...], tuple[str, ...]], dict[str, tuple[int, ...]]]:
    phrases: dict[tuple[str, ...], list[str]] = {}
    for concept in concepts:
        for names in concept.synonyms.values():
            for name in names:
                for language in LANGUAGES:
                    key = phrase_tokens(name, language)
                    if not key:
                        continue
                    owners = phrases.setdefault(key, [])
                    if concept.id not in owners:
                        owners.append(concept.id)
    first: dict[str, set[int]] = {}
    for key in phrases:
        first.setdefault(key[0], set()).add(len(key))
    return (
        {k: tuple(v) for k, v in phrases.items()},
        {k: tuple(sorted(v, reverse=True)) for k, v in first.items()},
    )


def _german_lexicon(concepts: Iterable[Concept], extra: Iterable[str]) -> frozenset[str]:
    words: set[str] = set()
    for concept in concepts:
        for language in ("de", "en"):
            for name in concept.synonyms.get(language, ()):
                for word in tokenize(fold(name)).words:
                    if len(word) >= 3 and word.isalpha():
                        words.add(word)
                        words.add(stem(word, "de"))
    words.update(extra)
    words.update(stem(w, "de") for w in extra)
    return frozenset(w for w in words if len(w) >= 3 and w not in FUNCTION_WORDS)


# Common German word parts that are not concepts themselves but appear in compounds.
_GERMAN_PARTS = word_set(
    """
studie studien analyse analysen analytik herstellung entwicklung test tests modell modelle
labor labore zellen zelle zell therapie therapien daten proben probe prufung sicherheit
qualitat verfahren dienst dienste leistung plattform bank system systeme einheit zentrum
methode methoden auftrag forschung bildung untersuchung untersuchungen produkt produkte
technologie technik markt partner beratung kopien genom vektor vektoren mensch menschen
patient patienten klinik klinisch tier tiere maus mause ratte einzel chargen charge serie
serien fertigung abfullung wirkstoff wirkstoffe arzneimittel
"""
)

# The data lives in vocabulary.txt (format described at its top).
_DATA = (Path(__file__).resolve().parent / "vocabulary.txt").read_text("utf-8")

CONCEPTS: dict[str, Concept] = _parse(_DATA)
_ANCESTORS = _ancestors(CONCEPTS)
_PHRASES, _FIRST = _phrase_index(CONCEPTS.values())
# Words that the vocabulary itself uses are never split ("Laborpraxis" in "Gute Laborpraxis").
_PHRASE_WORDS = frozenset(word for key in _PHRASES for word in key)
_GERMAN_LEXICON = _german_lexicon(CONCEPTS.values(), _GERMAN_PARTS)

_CONCEPT_BY_CANONICAL: dict[str, str] = {
    concept.label: concept.id
    for concept in CONCEPTS.values()
    if concept.facet is Facet.CERTIFICATION and concept.id.startswith("cert.")
}
_CANONICAL_BY_CONCEPT = {v: k for k, v in _CONCEPT_BY_CANONICAL.items()}
_CERTIFICATION_CONCEPTS: dict[str, str] = {
    fold(name): concept_id
    for canonical, concept_id in _CONCEPT_BY_CANONICAL.items()
    for names in CONCEPTS[concept_id].synonyms.values()
    for name in (canonical, *names)
}

# Changes whenever the vocabulary or the analyser does, so stored profiles can tell they are stale.
ANALYSER_REVISION = 7
VOCABULARY_VERSION = hashlib.blake2b(
    f"{ANALYSER_REVISION}\n{_DATA}\n{' '.join(sorted(_GERMAN_PARTS))}".encode(), digest_size=8
).hexdigest()
