"""Problems -> needs: what a broker reads in a request that describes a problem instead of
naming a service ("our antibody does not keep in the liquid vial" -> formulation development).

The knowledge lives in problems.txt: classes of problems, each with the groups of cues that state
it in English, French, German or Polish, the needs that answer it (vocabulary concepts), and the
concepts that in such a request describe the situation rather than the need (in "the dog's liver
reacted, the rat's did not", the dog is history, not the partner sought). `read_problems` finds
them in a request, each with the words that stated it, and the concepts the request rules out
("not a CRO", "no animal work", "rather than more animal studies").
"""

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from ce4big.catalogue.text import (
    FUNCTION_WORDS,
    NEGATE_AFTER,
    NEGATE_EITHER,
    STOP_WORDS,
    Tokens,
    fold,
    fold_with_offsets,
    stem,
    tokenize,
    word_set,
)
from ce4big.catalogue.vocabulary import CONCEPTS, Facet, analyse_text, expand_ancestors

# A cue preceded this closely (in content words, within its clause) by a negation does not
# state its problem: "no aggregation", "keine Abweichung". Cues that carry their own negation
# ("does not keep", "nie działa") are read as written.
NEGATION_REACH = 2
NEGATIONS = NEGATE_AFTER | NEGATE_EITHER | frozenset({"n", "ne", "nor", "neither", "ni", "weder"})
# What rules a concept out: a negation of a noun ("no", "sans", "kein", "bez"), "not a" / "pas
# de" directly before it, or a preference against it ("rather than", "statt", "zamiast").
_NOUN_NEGATIONS = NEGATE_AFTER - {"non"}
_ARTICLE_NEGATIONS = frozenset({"not", "pas", "nicht", "nie"})
_CONTRASTS: tuple[tuple[str, ...], ...] = (
    ("rather", "than"),
    ("instead", "of"),
    ("other", "than"),
    ("plutot", "que"),
    ("plutot", "qu"),
    ("au", "lieu", "de"),
    ("au", "lieu", "d"),
    ("statt",),
    ("anstatt",),
    ("anstelle",),
    ("zamiast",),
)
# Words between the cue and what it rules out: "no more animal studies", "keine weiteren".
_QUANTIFIERS = word_set(
    """
more further additional extra new other any plus autre autres d nouvelles nouveaux
multiplier multipliant weitere weiteren weiterer mehr zusatzliche zusatzlichen
kolejnych dalszych wiecej dodatkowych innych want need seek looking wish require voulons
cherchons souhaitons wollen brauchen suchen chcemy potrzebujemy szukamy
"""
)
_NOT_ONLY = frozenset({"only", "seulement", "nur", "tylko", "just", "uniquement"})
# "We do not know which protein", "nous ne savons pas", "wir wissen nicht", "nie wiemy": a
# negation of knowing leaves what follows stated.
_UNCERTAIN = word_set(
    """
know knows knew known sure clear understand tell say savons sait savoir comprenons connaissons dire
wissen weiss verstehen klar sicher kennen sagen wiemy wie znamy rozumiemy pewni jasne powiedziec
"""
)
# "carry no genome", "showed no lesions", "enthält keine": a noun negation after these words
# describes the product or a finding; it rules nothing out.
_DESCRIBING = word_set(
    """
carry carries carried contain contains contained have has had having show shows showed
shown found with was were is are porte portent contient contiennent montre montrent
avait tragen tragt enthalt enthalten zeigt zeigen zeigte hat haben hatte war waren ist sind
ma maja mialy zawiera zawieraja wykazal wykazaly pokazal jest sa
"""
)
_ALL_STOP_WORDS = frozenset().union(*STOP_WORDS.values())
_AUXILIARIES = word_set(
    """
    does do did is are was were has have can could will would ist sind war waren hat haben
    kann konnen wird werden
    """
)
DEFAULT_WINDOW = 30
MAX_QUOTED_WORDS = 12


@dataclass(frozen=True)
class Need:
    concept: str
    weight: float


@dataclass(frozen=True)
class Problem:
    id: str
    label: str
    needs: tuple[Need, ...]
    context: tuple[str, ...]
    groups: int
    window: int
    # Facets whose concepts, when the request names them, decide more in such a problem:
    # reimbursement and authorities are national, so the country named matters.
    stress: tuple[Facet, ...] = ()


@dataclass(frozen=True)
class Inference:
    """One problem found in a request, with the request's words that state it."""

    problem: Problem
    words: str


@dataclass
class ProblemReading:
    # Need concept -> (weight of the need, the problem it answers); the strongest per concept.
    needs: dict[str, tuple[float, Inference]] = field(default_factory=dict)
    # Concepts that describe the situation in a problem found, not what is sought.
    context: dict[str, Inference] = field(default_factory=dict)
    # Concepts the request rules out, with the words that did.
    excluded: dict[str, str] = field(default_factory=dict)
    problems: list[Inference] = field(default_factory=list)
    stressed: set[Facet] = field(default_factory=set)

    def is_context(self, concept: str) -> Inference | None:
        for candidate in (concept, *expand_ancestors(concept)):
            if candidate in self.context:
                return self.context[candidate]
        return None

    def is_excluded(self, concept: str) -> str | None:
        for candidate in (concept, *expand_ancestors(concept)):
            if candidate in self.excluded:
                return self.excluded[candidate]
        return None


@dataclass
class _Cue:
    patterns: tuple[int, ...]
    negated: bool
    # (problem index, group index) of every group this cue belongs to.
    groups: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class _Knowledge:
    problems: list[Problem] = field(default_factory=list)
    cues: list[_Cue] = field(default_factory=list)
    cue_ids: dict[tuple[tuple[int, ...], bool], int] = field(default_factory=dict)
    starting_with: dict[int, list[int]] = field(default_factory=dict)
    patterns: dict[tuple[str, str], int] = field(default_factory=dict)
    exact: dict[str, set[int]] = field(default_factory=dict)
    prefix: dict[str, set[int]] = field(default_factory=dict)
    infix: dict[str, set[int]] = field(default_factory=dict)
    infix_lengths: set[int] = field(default_factory=set)

    def pattern(self, kind: str, text: str) -> int:
        key = (kind, text)
        if key not in self.patterns:
            ident = self.patterns[key] = len(self.patterns)
            table = {"exact": self.exact, "prefix": self.prefix, "infix": self.infix}[kind]
            table.setdefault(text, set()).add(ident)
            if kind == "infix":
                self.infix_lengths.add(len(text))
        return self.patterns[key]

    def cue(self, patterns: tuple[int, ...], negated: bool) -> int:
        key = (patterns, negated)
        if key not in self.cue_ids:
            self.cue_ids[key] = len(self.cues)
            self.cues.append(_Cue(patterns, negated))
            self.starting_with.setdefault(patterns[0], []).append(self.cue_ids[key])
        return self.cue_ids[key]


def _words(text: str) -> list[str]:
    return [w for w in tokenize(fold(text)).words if w not in FUNCTION_WORDS]


def _pattern_of(word: str) -> tuple[str, str]:
    if word.startswith("*") and word.endswith("*") and len(word) > 2:
        return ("infix", word[1:-1])
    if word.endswith("*") and len(word) > 1:
        return ("prefix", word[:-1])
    return ("exact", word)


def _synonym_patterns(concept: str, narrower: bool) -> Iterator[tuple[tuple[str, str], ...]]:
    """A vocabulary concept as cues: each synonym a phrase, each word matched by its stem."""
    wanted = {concept}
    if narrower:
        wanted |= {c for c in CONCEPTS if concept in expand_ancestors(c)}
    for ident in sorted(wanted):
        for language, names in CONCEPTS[ident].synonyms.items():
            for name in names:
                words = _words(name)
                if not words:
                    continue
                phrase = []
                for word in words:
                    root = stem(word, language)
                    if len(root) >= 4 and root.isalpha():
                        phrase.append(("prefix", root))
                    else:
                        phrase.append(("exact", word))
                yield tuple(phrase)


def _alternatives(
    cell: str, defines: dict[str, list[str]], where: str
) -> Iterator[tuple[tuple[str, str], ...]]:
    for raw in cell.split(","):
        alternative = raw.strip()
        if not alternative:
            continue
        if alternative.startswith("$"):
            name = alternative[1:]
            if name not in defines:
                raise ValueError(f"{where}: unknown definition ${name}")
            for inner in defines[name]:
                yield from _alternatives(inner, defines, where)
            continue
        if alternative.startswith("="):
            ident = alternative[1:].rstrip("+")
            if ident not in CONCEPTS:
                raise ValueError(f"{where}: unknown concept {ident}")
            yield from _synonym_patterns(ident, alternative.endswith("+"))
            continue
        words = [w for w in fold(alternative).replace("'", " ").split() if w]
        # Function words are skipped in the text, so in the cue too ("durée de conservation").
        kept = [w for w in words if w.strip("*") not in FUNCTION_WORDS or w.endswith("*")]
        if not kept:
            raise ValueError(f"{where}: cue {alternative!r} has only function words")
        for word in kept:
            bare = word.strip("*")
            if not bare or not all(part.isalnum() for part in bare.split("-")):
                raise ValueError(f"{where}: cue word {word!r} is not a plain word")
            if "-" in bare:
                raise ValueError(f"{where}: write {word!r} as separate words (hyphens split)")
            if word.endswith("*") and len(bare) < 3:
                raise ValueError(f"{where}: prefix {word!r} is too short")
        yield tuple(_pattern_of(w) for w in kept)


def _facets(cell: str, where: str) -> tuple[Facet, ...]:
    names = [name.strip() for name in cell.split(",") if name.strip()]
    known = {facet.value: facet for facet in Facet}
    for name in names:
        if name not in known:
            raise ValueError(f"{where}: unknown facet {name!r}")
    return tuple(known[name] for name in names)


def _parse(data: str) -> _Knowledge:
    knowledge = _Knowledge()
    defines: dict[str, list[str]] = {}
    # (kind, name or problem index, lines) of the block being read
    lines = [(number, raw.rstrip()) for number, raw in enumerate(data.splitlines(), 1)]
    logical: list[tuple[int, str]] = []
    for number, line in lines:
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("+"):
            if not logical:
                raise ValueError(f"problems.txt:{number}: continuation without a line")
            first, text = logical[-1]
            # Cue lists continue after a comma, concept lists after a space.
            joiner = " " if text.startswith(("needs:", "context:")) else ", "
            logical[-1] = (first, f"{text}{joiner}{stripped[1:].strip()}")
        else:
            logical.append((number, stripped))

    current: dict[str, object] | None = None
    blocks: list[tuple[int, dict[str, object]]] = []
    for number, line in logical:
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if line.startswith("problem "):
            ident, _, label = line[len("problem ") :].partition("|")
            current = {"id": ident.strip(), "label": label.strip(), "when": []}
            blocks.append((number, current))
        elif key.startswith("define "):
            defines[key[len("define ") :].strip()] = [value]
            current = None
        elif current is None:
            raise ValueError(f"problems.txt:{number}: {key!r} outside a problem")
        elif key == "when":
            when = current["when"]
            assert isinstance(when, list)
            when.append((number, value))
        elif key in ("needs", "context", "window", "stress"):
            current[key] = value
        else:
            raise ValueError(f"problems.txt:{number}: unknown field {key!r}")

    seen: set[str] = set()
    for number, block in blocks:
        where = f"problems.txt:{number}"
        ident, label = str(block["id"]), str(block["label"])
        if not ident or not label:
            raise ValueError(f"{where}: a problem needs an id and a label")
        if ident in seen:
            raise ValueError(f"{where}: problem {ident} defined twice")
        seen.add(ident)
        needs = []
        for item in str(block.get("needs", "")).split():
            concept, _, factor = item.partition("*")
            if concept not in CONCEPTS:
                raise ValueError(f"{where}: unknown need {concept}")
            needs.append(Need(concept, float(factor) if factor else 1.0))
        if not needs:
            raise ValueError(f"{where}: problem {ident} has no needs")
        context = tuple(str(block.get("context", "")).split())
        for concept in context:
            if concept not in CONCEPTS:
                raise ValueError(f"{where}: unknown context concept {concept}")
        when = block["when"]
        assert isinstance(when, list)
        if not when:
            raise ValueError(f"{where}: problem {ident} has no cues")
        problem_index = len(knowledge.problems)
        knowledge.problems.append(
            Problem(
                id=ident,
                label=label,
                needs=tuple(needs),
                context=context,
                groups=len(when),
                window=int(str(block.get("window", DEFAULT_WINDOW))),
                stress=_facets(str(block.get("stress", "")), where),
            )
        )
        for group_index, (line_number, cell) in enumerate(when):
            alternatives = list(_alternatives(cell, defines, f"problems.txt:{line_number}"))
            for alternative in alternatives:
                patterns = [knowledge.pattern(kind, text) for kind, text in alternative]
                negated = any(text in NEGATIONS for kind, text in alternative if kind == "exact")
                cue = knowledge.cues[knowledge.cue(tuple(patterns), negated)]
                if (problem_index, group_index) not in cue.groups:
                    cue.groups.append((problem_index, group_index))
    return knowledge


_KNOWLEDGE = _parse((Path(__file__).resolve().parent / "problems.txt").read_text("utf-8"))
PROBLEMS: tuple[Problem, ...] = tuple(_KNOWLEDGE.problems)


@lru_cache(maxsize=100_000)
def _matching(word: str) -> frozenset[int]:
    """The patterns one folded word matches."""
    found: set[int] = set(_KNOWLEDGE.exact.get(word, ()))
    for end in range(3, len(word) + 1):
        found.update(_KNOWLEDGE.prefix.get(word[:end], ()))
    for length in _KNOWLEDGE.infix_lengths:
        for start in range(1, len(word) - length + 1):
            found.update(_KNOWLEDGE.infix.get(word[start : start + length], ()))
    return frozenset(found)


@dataclass
class _Text:
    source: str
    folded: str
    offsets: list[int] | None
    tokens: Tokens
    content: list[int]  # token indexes of content words

    def quote(self, first: int, last: int) -> str:
        """The source text of content words first..last."""
        return self.span(self.content[first], self.content[last])

    def span(self, first: int, last: int) -> str:
        """The source text of tokens first..last."""
        spans = self.tokens.spans()
        start, end = spans[first][0], spans[last][1]
        if self.offsets is not None:
            start, end = self.offsets[start], self.offsets[end]
        return " ".join(self.source[start:end].split())


def _read(text: str) -> _Text:
    folded, offsets = fold_with_offsets(text)
    tokens = tokenize(folded)
    content = [i for i, w in enumerate(tokens.words) if w not in FUNCTION_WORDS]
    return _Text(text, folded, offsets, tokens, content)


def _occurrences(text: _Text) -> list[tuple[int, int, int]]:
    """Every cue found: (cue, first content word, last content word)."""
    words = text.tokens.words
    matched = [_matching(words[i]) for i in text.content]
    negation_at = [words[i] in NEGATIONS for i in text.content]
    clauses = text.tokens.clauses() if any(negation_at) else None
    found = []
    for position, patterns in enumerate(matched):
        for pattern in patterns:
            for cue_id in _KNOWLEDGE.starting_with.get(pattern, ()):
                cue = _KNOWLEDGE.cues[cue_id]
                end = position + len(cue.patterns) - 1
                if end >= len(matched) or not all(
                    p in matched[position + k] for k, p in enumerate(cue.patterns[1:], 1)
                ):
                    continue
                if not cue.negated and clauses is not None and _negated(text, clauses, position):
                    continue
                found.append((cue_id, position, end))
    return found


def _negated(text: _Text, clauses: list[int], position: int) -> bool:
    clause = clauses[text.content[position]]
    for back in range(1, NEGATION_REACH + 1):
        before = position - back
        if before < 0 or clauses[text.content[before]] != clause:
            return False
        if text.tokens.words[text.content[before]] in NEGATIONS:
            around = (before - 1, before + 1)
            return not any(
                0 <= i < len(text.content) and text.tokens.words[text.content[i]] in _UNCERTAIN
                for i in around
            )
    return False


def _tightest(spans: list[list[tuple[int, int]]], window: int) -> list[tuple[int, int]] | None:
    """One occurrence per group, all within `window` content words, as close as can be."""
    events = sorted(
        (start, end, group) for group, found in enumerate(spans) for start, end in found
    )
    best: tuple[int, list[tuple[int, int]]] | None = None
    latest: dict[int, tuple[int, int]] = {}
    for start, end, group in events:
        latest[group] = (start, end)
        if len(latest) < len(spans):
            continue
        first = min(s for s, _ in latest.values())
        last = max(e for _, e in latest.values())
        if last - first <= window and (best is None or last - first < best[0]):
            best = (last - first, [latest[g] for g in range(len(spans))])
    return best[1] if best else None


def _words_of(text: _Text, chosen: list[tuple[int, int]]) -> str:
    # A quote that opens on a negation takes its verb along: "does not keep", "ist nicht".
    chosen = [
        (start - 1, end)
        if start > 0
        and text.tokens.words[text.content[start]] in NEGATIONS
        and text.tokens.words[text.content[start - 1]] in _AUXILIARIES
        else (start, end)
        for start, end in chosen
    ]
    first = min(s for s, _ in chosen)
    last = max(e for _, e in chosen)
    if last - first < MAX_QUOTED_WORDS:
        return text.quote(first, last)
    return " … ".join(text.quote(s, e) for s, e in sorted(set(chosen)))


def _exclusions(text: _Text, language: str) -> dict[str, str]:
    """Concepts the text rules out, with the words that do."""
    words = text.tokens.words
    excluded: dict[str, str] = {}
    content_at = {token: position for position, token in enumerate(text.content)}
    clauses: list[int] | None = None
    for index, word in enumerate(words):
        reach, end = 0, index
        if word in _NOUN_NEGATIONS:
            reach = 2
        elif word in _ARTICLE_NEGATIONS:
            reach = 1
        else:
            for phrase in _CONTRASTS:
                if tuple(words[index : index + len(phrase)]) == phrase:
                    reach, end = 2, index + len(phrase) - 1
                    break
        if not reach or (end + 1 < len(words) and words[end + 1] in _NOT_ONLY):
            continue
        if word in _NOUN_NEGATIONS and index > 0 and words[index - 1] in _DESCRIBING:
            continue
        if clauses is None:
            clauses = text.tokens.clauses()
        following = [
            content_at[t]
            for t in range(end + 1, min(end + 12, len(words)))
            if t in content_at and clauses[t] == clauses[index]
        ]
        # A quantifier or a verb form may stand in between ("no more", "plutôt qu'en multipliant").
        heads = [p for p in following if words[text.content[p]] not in _QUANTIFIERS][:reach]
        for head in heads:
            span = text.quote(head, min(head + 4, following[-1]))
            mentions = [
                m
                for m in analyse_text(span, language=language, surfaces=True).mentions
                if not m.negated and fold(span).startswith(fold(m.surface))
            ]
            if not mentions:
                continue
            for mention in mentions:
                # Quoted from the cue to the end of what it rules out, as the request says it.
                last = text.content[head] + len(tokenize(fold(mention.surface)).words) - 1
                excluded.setdefault(mention.concept, text.span(index, min(last, len(words) - 1)))
            break
    return excluded


def read_problems(texts: Iterable[str], *, language: str) -> ProblemReading:
    """The problems stated in a request's texts (title, description) and what they call for."""
    reading = ProblemReading()
    for source in texts:
        if not source.strip():
            continue
        text = _read(source)
        for concept, words in _exclusions(text, language).items():
            reading.excluded.setdefault(concept, words)
        spans: dict[int, list[list[tuple[int, int]]]] = {}
        for cue_id, start, end in _occurrences(text):
            for problem_index, group in _KNOWLEDGE.cues[cue_id].groups:
                problem = _KNOWLEDGE.problems[problem_index]
                groups = spans.setdefault(problem_index, [[] for _ in range(problem.groups)])
                groups[group].append((start, end))
        for problem_index, groups in sorted(spans.items()):
            if not all(groups):
                continue
            problem = _KNOWLEDGE.problems[problem_index]
            chosen = _tightest(groups, problem.window)
            if chosen is None or any(p.problem is problem for p in reading.problems):
                continue
            reading.problems.append(Inference(problem, _words_of(text, chosen)))
    for inference in reading.problems:
        for need in inference.problem.needs:
            if reading.is_excluded(need.concept) is not None:
                continue
            known = reading.needs.get(need.concept)
            if known is None or need.weight > known[0]:
                reading.needs[need.concept] = (need.weight, inference)
        for concept in inference.problem.context:
            reading.context.setdefault(concept, inference)
        reading.stressed.update(inference.problem.stress)
    return reading


def problems_in(text: str, language: str = "en") -> list[str]:
    """The ids of the problems stated in a text (for tests and tooling)."""
    return [i.problem.id for i in read_problems([text], language=language).problems]
