"""Language plumbing for the vocabulary and the matcher: folding, tokens, light stemming per
language (en, fr, de, pl), stop words, language detection, German compounds and negation."""

import re
import unicodedata
from functools import lru_cache

from ce4big.domain import LANGUAGES


def word_set(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Characters that NFKD does not decompose (ł, ø, æ...) or that casefold would change in length.
_SPECIAL = {
    "\u0142": "l",
    "\u0141": "l",
    "\u00f8": "o",
    "\u00d8": "o",
    "\u00e6": "ae",
    "\u00c6": "ae",
    "\u0153": "oe",
    "\u0152": "oe",
    "\u00df": "ss",
    "\u0111": "d",
    "\u0131": "i",
    "\u2019": "'",
    "\u2018": "'",
    "\u2013": "-",
    "\u2014": "-",
    "\u2011": "-",
    "\u00b5": "u",
    "\u03bc": "u",
}


def _fold_char(char: str) -> str:
    if char in _SPECIAL:
        return _SPECIAL[char]
    decomposed = unicodedata.normalize("NFKD", char)
    kept = "".join(c for c in decomposed if not unicodedata.combining(c))
    return kept.lower()


_FOLD_TABLE = {
    code: _fold_char(chr(code))
    for code in list(range(0x00C0, 0x0250)) + [ord(c) for c in _SPECIAL] + [0x00B5]
}
_FOLD_TABLE.update(dict.fromkeys(range(768, 880), ""))  # stray combining marks


def fold(text: str) -> str:
    """Lower case without accents: 'Génotoxicité' -> 'genotoxicite', 'Łódź' -> 'lodz'."""
    return text.lower().translate(_FOLD_TABLE)


TOKEN_RE = re.compile(r"[a-z0-9]+")
# Clause breaks bound the scope of a negation: punctuation, and contrastive words.
CLAUSE_RE = re.compile(r"[.;:!?()\[\],\n]")
_CONTRASTIVE = frozenset(
    {"but", "however", "whereas", "mais", "cependant", "aber", "jedoch", "ale"}
)

# Function words dropped before phrase matching, so "test d'Ames" matches "test Ames" and
# "cancer du poumon" matches "cancer poumon". Kept small on purpose: "car", "ich" and "in" are
# domain words (CAR-T, ICH S2, in vivo) in other languages.
FUNCTION_WORDS = word_set(
    """
a an the of for and or to with by on at from as its their our your this that these those
le la les l de du des d un une et ou en au aux pour par sur avec dans der die das den
dem des ein eine einer eines einem einen und oder fur von vom mit im zur zum bei auf i
oraz lub w we z ze na do dla od o po przy
"""
)

STOP_WORDS: dict[str, frozenset[str]] = {
    "en": word_set(
        """
a about above after again all also am an and any are as at be because been before being
both but by can could did do does doing done during each few for from further had has
have having he her here hers him his how i if in into is it its itself just me more most
my no nor not now of off on once only or other our ours out over own same she should so
some such than that the their theirs them then there these they this those through to
too under until up very was we were what when where which while who whom why will with
would you your yours us via per within without using based including include includes
well new one two three four five six seven eight nine ten about around approximately
need needs needed want wants looking look seek seeking search find require requires
required requirement partner partners company companies organisation organization
provide provides providing offer offers offering service services support supporting
experience expertise project projects work working develop developing developed
development able must may might like help team teams year years next first
certified accredited compliant
"""
    ),
    "fr": word_set(
        """
a afin ai ainsi alors au aucun aucune aupres aussi autre autres aux avec avoir ce cela
celle celles celui ces cet cette chez comme dans de des deux donc dont du elle elles en
entre est et etre eux il ils je la le les leur leurs lui mais me meme mes moi mon ne ni
nos notre nous on ont ou par pas pour plus qu que qui sa sans se ses si son sont sur ta
te tes toi ton tous tout toute toutes tres tu un une vos votre vous y d l n s c j m t
nous besoin cherchons recherchons recherche souhaitons partenaire partenaires entreprise
societe projet projets offre offrons propose proposons service services travail
developpons expertise selon via notamment ainsi depuis chaque environ
"""
    ),
    "de": word_set(
        """
aber alle allem allen aller alles als also am an ander andere anderen auch auf aus bei
bin bis bist da damit dann das dass dein deine dem den der des dessen die dies diese
diesem diesen dieser dieses doch dort du durch ein eine einem einen einer eines er es
etwa euer fur gegen hab habe haben hat hatte hier hin hinter ihm ihn ihnen ihr ihre
ihrem ihren ihrer im in indem ins ist jede jedem jeden jeder jedes jetzt kann kein keine
konnen machen mein meine mit muss nach nicht nichts noch nun nur ob oder ohne sehr sein
seine sich sie sind so solche soll sollen sondern sowie uber um und uns unser unsere
unter vom von vor wann war waren warum was weil welche wenn werden wie wir wird wo zu
zum zur zwischen sowohl bzw insbesondere suchen gesucht benotigen brauchen partner firma
unternehmen projekt projekte angebot bieten bietet anbieten leistungen erfahrung
"""
    ),
    "pl": word_set(
        """
a aby ale bez by byc byl byla byli bylo cala cale caly chce chcemy co czy dla do go gdy
i ich ja jak jako je jego jej jest jestem jestesmy juz ktora ktore ktorego ktory ktorych
ktorym lub ma maja mamy mi mnie moze na nad nam nas naszego naszej nasz nasza nasze nie
niz o od oraz po pod poza przez przy sa sie ta tak takze tam te tego tej ten to tu tylko
tym u w we wiec z za ze zeby szukamy poszukujemy potrzebujemy partnera partner partnerow
firma firmy projekt projektu projekty oferujemy oferuje uslugi usluga doswiadczenie
wsparcie ramach
"""
    ),
}
# Frequent words that tell one language from the others in a paragraph.
_MARKERS: dict[str, frozenset[str]] = {
    "en": word_set(
        """
the and of for with we our in to is are from by on need this
"""
    ),
    "fr": word_set(
        """
le la les des du et pour avec nous notre un une dans sur est au aux
"""
    ),
    "de": word_set(
        """
der die das und fur mit wir unser ein eine von zur zum im ist auf
"""
    ),
    "pl": word_set(
        """
i w z na dla oraz do nasz sie jest od przez oraz ktore we
"""
    ),
}


_MARKER_LANGUAGES: dict[str, tuple[str, ...]] = {}
for _language, _markers in _MARKERS.items():
    for _marker in _markers:
        _MARKER_LANGUAGES[_marker] = (*_MARKER_LANGUAGES.get(_marker, ()), _language)


def detect_language(folded_tokens: list[str], default: str = "en") -> str:
    counts = dict.fromkeys(LANGUAGES, 0)
    for token in folded_tokens:
        for language in _MARKER_LANGUAGES.get(token, ()):
            counts[language] += 1
    best = max(LANGUAGES, key=lambda lang: (counts[lang], lang == default))
    return best if counts[best] > 0 else default


# Light suffix stripping: enough to conflate inflections (cancers, toxicologie/toxicologique,
# Toxizitätsstudien, toksykologii), never a full morphological analysis. Longest suffix first;
# a stem keeps at least `_MIN_STEM` characters.
_MIN_STEM = 4
_SUFFIXES: dict[str, tuple[str, ...]] = {
    "en": (
        "ational",
        "ization",
        "isation",
        "ations",
        "ation",
        "ically",
        "ical",
        "icity",
        "ities",
        "ity",
        "izing",
        "ising",
        "ating",
        "ized",
        "ised",
        "ated",
        "izes",
        "ises",
        "ates",
        "ize",
        "ise",
        "ate",
        "ings",
        "ing",
        "ness",
        "ments",
        "ment",
        "ives",
        "ive",
        "ers",
        "er",
        "ies",
        "ied",
        "ed",
        "es",
        "al",
        "ic",
        "ous",
        "s",
        "y",
        "e",
    ),
    "fr": (
        "issements",
        "issement",
        "ations",
        "ation",
        "ements",
        "ement",
        "ateurs",
        "atrices",
        "ateur",
        "atrice",
        "iques",
        "ique",
        "icites",
        "icite",
        "ites",
        "ite",
        "euses",
        "euse",
        "eux",
        "elles",
        "elle",
        "iennes",
        "ienne",
        "iens",
        "ien",
        "ees",
        "ee",
        "es",
        "ies",
        "ie",
        "aux",
        "al",
        "ales",
        "s",
        "e",
        "x",
    ),
    "de": (
        "ierungen",
        "ierung",
        "ungen",
        "ung",
        "heiten",
        "heit",
        "keiten",
        "keit",
        "ischen",
        "ische",
        "ischer",
        "isches",
        "isch",
        "lichen",
        "liche",
        "lich",
        "ionen",
        "ien",
        "ie",
        "ern",
        "em",
        "en",
        "er",
        "es",
        "e",
        "n",
        "s",
    ),
    "pl": (
        "owaniami",
        "owaniach",
        "owania",
        "owanie",
        "owaniu",
        "nosciami",
        "nosci",
        "nosc",
        "osciami",
        "osci",
        "osc",
        "iami",
        "ami",
        "iach",
        "ach",
        "iow",
        "ow",
        "iom",
        "om",
        "owi",
        "ego",
        "emu",
        "ymi",
        "imi",
        "ych",
        "ich",
        "ym",
        "im",
        "ej",
        "em",
        "ii",
        "ia",
        "ie",
        "iu",
        "a",
        "e",
        "i",
        "o",
        "u",
        "y",
    ),
}
_PL_ENDINGS = ("owa", "owe", "owy", "owej", "owych", "owym")


@lru_cache(maxsize=200_000)
def stem(token: str, language: str) -> str:
    """The light stem of a folded token in one language."""
    if len(token) <= _MIN_STEM or not token.isalpha():
        return token
    word = token
    if language == "fr" and word.endswith("aux") and len(word) > 5:
        return word[:-3] + "al"
    if language == "pl":
        for ending in _PL_ENDINGS:
            if word.endswith(ending) and len(word) - len(ending) >= _MIN_STEM:
                return word[: -len(ending)]
    for suffix in _SUFFIXES.get(language, ()):
        if word.endswith(suffix) and len(word) - len(suffix) >= _MIN_STEM:
            word = word[: -len(suffix)]
            break
    # A second, gentler pass for stacked endings (toxicologies -> toxicologi -> toxicolog).
    if language in ("en", "fr", "de") and word.endswith(("i", "e")) and len(word) > _MIN_STEM + 1:
        word = word[:-1]
    return word


# Negation cues. "not"-like cues negate what follows in the clause, or what precedes when only a
# verb follows ("single-cell workflows are not offered"); "no"-like cues negate what follows.
NEGATE_AFTER = word_set(
    """
no without excluding except non sans aucun aucune hors kein keine keinen keiner keines
keinem ohne bez brak zadnych zadnej zadnego
"""
)
NEGATE_EITHER = word_set(
    """
not never cannot doesn don isn aren pas jamais nicht nie
"""
)
_NOT_ONLY = frozenset({"only", "seulement", "nur", "tylko", "just", "uniquement"})


class Tokens:
    """The words of a folded text; offsets and clauses are worked out only when asked for,
    since most texts need neither (no negation, no surfaces for reasons)."""

    __slots__ = ("_clauses", "_spans", "folded", "words")

    def __init__(self, folded: str) -> None:
        self.folded = folded
        self.words: list[str] = TOKEN_RE.findall(folded)
        self._spans: list[tuple[int, int]] | None = None
        self._clauses: list[int] | None = None

    def __len__(self) -> int:
        return len(self.words)

    def spans(self) -> list[tuple[int, int]]:
        if self._spans is None:
            self._spans = [m.span() for m in TOKEN_RE.finditer(self.folded)]
        return self._spans

    def between(self, left: int, right: int) -> str:
        """The characters between two tokens."""
        spans = self.spans()
        return self.folded[spans[left][1] : spans[right][0]]

    def clauses(self) -> list[int]:
        if self._clauses is None:
            clauses: list[int] = []
            clause = 0
            for chunk in CLAUSE_RE.split(self.folded):
                for word in TOKEN_RE.findall(chunk):
                    if word in _CONTRASTIVE:
                        clause += 1
                    clauses.append(clause)
                clause += 1
            self._clauses = clauses
        return self._clauses


def tokenize(folded: str) -> Tokens:
    return Tokens(folded)


def negated_positions(tokens: Tokens) -> set[int]:
    """Indexes of tokens under a negation cue (the cue itself excluded)."""
    negated: set[int] = set()
    words = tokens.words
    count = len(words)
    for index, word in enumerate(words):
        if word not in NEGATE_AFTER and word not in NEGATE_EITHER:
            continue
        if index + 1 < count and words[index + 1] in _NOT_ONLY:
            continue
        if index + 1 < count and tokens.between(index, index + 1).startswith("-"):
            # "Non-GLP" and "Nicht-Nager" negate their word only (or name a phrase of their own).
            negated.add(index + 1)
            continue
        if word == "non":
            continue  # "non clinique", "non small cell": part of a phrase, not a negation
        clauses = tokens.clauses()
        after = [i for i in range(index + 1, count) if clauses[i] == clauses[index]]
        if word in NEGATE_EITHER and len(after) <= 3:
            negated.update(i for i in range(index) if clauses[i] == clauses[index])
        negated.update(after)
    return negated


# German compounds are split against a lexicon of known words so that "Gentherapievektoren"
# reads as "gen therapie vektoren" and "Toxizitätsstudien" as "toxizitats studien".
_LINKS = ("", "s", "es", "n", "en", "e")


def split_compound(word: str, lexicon: frozenset[str], min_part: int = 3) -> list[str] | None:
    """The parts of a German compound when every part is a known word, else None."""
    return _split(word, lexicon, min_part, 0)


def _split(word: str, lexicon: frozenset[str], min_part: int, depth: int) -> list[str] | None:
    if depth > 3:
        return None
    for cut in range(len(word) - min_part, min_part - 1, -1):
        head = word[:cut]
        if head not in lexicon and stem(head, "de") not in lexicon:
            continue
        rest = word[cut:]
        for link in _LINKS:
            if link and not rest.startswith(link):
                continue
            tail = rest[len(link) :]
            if len(tail) < min_part:
                continue
            if tail in lexicon or stem(tail, "de") in lexicon:
                return [head, tail]
            deeper = _split(tail, lexicon, min_part, depth + 1)
            if deeper:
                return [head, *deeper]
    return None


def fold_with_offsets(text: str) -> tuple[str, list[int] | None]:
    """The folded text and, when folding changed its length, each folded character's origin."""
    folded = fold(text)
    if len(folded) == len(text):
        return folded, None
    parts: list[str] = []
    offsets: list[int] = []
    for index, char in enumerate(text):
        piece = fold(char)
        parts.append(piece)
        offsets.extend([index] * len(piece))
    offsets.append(len(text))
    return "".join(parts), offsets
