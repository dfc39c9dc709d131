"""ce4big/catalogue/text.py: folding, stems, language, clauses, negation, German compounds."""

import pytest

from ce4big.catalogue.text import (
    detect_language,
    fold,
    fold_with_offsets,
    negated_positions,
    split_compound,
    stem,
    tokenize,
)


class TestFold:
    def test_drops_case_and_accents_in_every_language(self) -> None:
        assert fold("Génotoxicité Łódź Straße ÆØ") == "genotoxicite lodz strasse aeo"

    def test_maps_offsets_back_when_the_length_changes(self) -> None:
        folded, offsets = fold_with_offsets("Straße X")

        assert folded == "strasse x"
        assert offsets is not None and offsets[folded.index("x")] == 7


class TestStem:
    @pytest.mark.parametrize(
        ("words", "language"),
        [
            (("toxicology", "toxicological"), "en"),
            (("genotoxicity", "genotoxic"), "en"),
            (("toxicologie", "toxicologique"), "fr"),
            (("vecteurs", "vecteur"), "fr"),
            (("vektoren", "vektor"), "de"),
            (("toksykologia", "toksykologii", "toksykologie"), "pl"),
            (("wektorow", "wektory"), "pl"),
        ],
    )
    def test_conflates_inflections(self, words: tuple[str, ...], language: str) -> None:
        assert len({stem(w, language) for w in words}) == 1

    def test_leaves_short_words_and_codes_alone(self) -> None:
        assert stem("aav8", "en") == "aav8"
        assert stem("cell", "en") == "cell"


class TestDetectLanguage:
    def test_counts_frequent_words(self) -> None:
        assert (
            detect_language(tokenize("nous cherchons un partenaire pour la production").words)
            == "fr"
        )
        assert (
            detect_language(tokenize("wir suchen einen partner fur die produktion").words) == "de"
        )

    def test_falls_back_to_english(self) -> None:
        assert detect_language(["aav", "gmp"]) == "en"


class TestNegatedPositions:
    def negated(self, text: str) -> list[str]:
        tokens = tokenize(fold(text))
        return [tokens.words[i] for i in sorted(negated_positions(tokens))]

    def test_a_no_cue_negates_the_rest_of_its_clause(self) -> None:
        assert self.negated("Mouse models; no primates, rats.") == ["primates"]

    def test_a_trailing_not_negates_what_came_before(self) -> None:
        assert self.negated("We do RNA-seq. Single-cell workflows are not offered.") == [
            "single",
            "cell",
            "workflows",
            "are",
            "offered",
        ]

    def test_a_hyphenated_cue_negates_one_word(self) -> None:
        assert self.negated("Non-GLP screening") == ["glp"]

    def test_not_only_is_no_negation(self) -> None:
        assert self.negated("not only GLP but also GMP") == []

    def test_a_contrast_ends_the_scope(self) -> None:
        assert self.negated("no GLP but GMP") == ["glp"]


class TestSplitCompound:
    def test_splits_when_every_part_is_known(self) -> None:
        lexicon = frozenset({"gen", "therapie", "vektor", "vektoren"})

        assert split_compound("gentherapievektoren", lexicon) == ["gen", "therapie", "vektoren"]

    def test_keeps_unknown_words_whole(self) -> None:
        assert split_compound("donaudampfschiff", frozenset({"donau"})) is None
