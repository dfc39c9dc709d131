"""ce4big/catalogue/problems.py: problems told in four languages, the needs they call for,
negation and what a request rules out. The requests are written for these tests."""

import pytest

from ce4big.catalogue.problems import PROBLEMS, _parse, problems_in, read_problems
from ce4big.catalogue.vocabulary import CONCEPTS


def needs_of(text: str, language: str) -> set[str]:
    return set(read_problems([text], language=language).needs)


class TestKnowledge:
    def test_every_need_and_context_is_a_vocabulary_concept(self) -> None:
        for problem in PROBLEMS:
            assert problem.needs, problem.id
            for need in problem.needs:
                assert need.concept in CONCEPTS, (problem.id, need.concept)
            for concept in problem.context:
                assert concept in CONCEPTS, (problem.id, concept)

    def test_refuses_an_unknown_need(self) -> None:
        with pytest.raises(ValueError, match="unknown need"):
            _parse("problem x.y | a label\nwhen: vial\nneeds: svc.no_such_service\n")

    def test_refuses_a_problem_without_cues(self) -> None:
        with pytest.raises(ValueError, match="no cues"):
            _parse("problem x.y | a label\nneeds: svc.formulation\n")


class TestProblemsInFourLanguages:
    @pytest.mark.parametrize(
        ("text", "language"),
        [
            ("Our antibody aggregates after two weeks in the liquid vial.", "en"),
            ("Notre anticorps forme des agrégats dans le flacon après un mois au frigo.", "fr"),
            ("Unser Peptid zerfällt in Lösung innerhalb weniger Tage bei Raumtemperatur.", "de"),
            ("Nasze białko wytrąca się w roztworze po kilku tygodniach w lodówce.", "pl"),
        ],
    )
    def test_a_product_that_does_not_keep_calls_for_formulation(
        self, text: str, language: str
    ) -> None:
        reading = read_problems([text], language=language)

        assert [i.problem.id for i in reading.problems] == ["product.does_not_keep"]
        assert {"svc.formulation", "svc.stability"} <= set(reading.needs)

    @pytest.mark.parametrize(
        ("text", "language"),
        [
            ("We cannot tell how many patients our phase II trial needs.", "en"),
            ("Nous ignorons combien de patients inclure, l'effet attendu est incertain.", "fr"),
            ("Die Effektstärke ist unbekannt, die Fallzahl müssen wir erst bestimmen.", "de"),
            ("Nie wiemy, ilu pacjentów trzeba włączyć do badania.", "pl"),
        ],
    )
    def test_an_unknown_number_of_patients_calls_for_biostatistics(
        self, text: str, language: str
    ) -> None:
        assert "svc.biostatistics" in needs_of(text, language)

    @pytest.mark.parametrize(
        ("text", "language"),
        [
            ("A metabolite is found only in humans, not in our rat or dog studies.", "en"),
            ("Un métabolite n'apparaît que chez l'homme.", "fr"),
            ("Ein Metabolit tritt nur beim Menschen auf.", "de"),
            ("Jeden metabolit występuje tylko u ludzi.", "pl"),
        ],
    )
    def test_a_human_metabolite_calls_for_metabolism_and_bioanalysis(
        self, text: str, language: str
    ) -> None:
        assert {"svc.dmpk", "svc.bioanalysis"} <= needs_of(text, language)

    @pytest.mark.parametrize(
        ("text", "language"),
        [
            ("Same vector genome titre, yet potency varies three-fold between batches.", "en"),
            ("Même titre, mais l'activité des lots varie du simple au triple.", "fr"),
            ("Gleicher Titer, aber die Potenz der Chargen schwankt stark.", "de"),
            ("To samo miano, a siła działania serii bardzo się różni.", "pl"),
        ],
    )
    def test_potency_differing_at_equal_titre_calls_for_potency_and_capsid_analytics(
        self, text: str, language: str
    ) -> None:
        assert {"svc.potency_assays", "svc.capsid_analytics"} <= needs_of(text, language)

    def test_a_species_discordant_liver_finding_calls_for_human_liver_models(self) -> None:
        reading = read_problems(
            ["Le foie du chien a réagi, pas celui du rat : et chez l'homme ?"], language="fr"
        )

        assert {"safety.species_relevance", "safety.liver_signal"} <= {
            i.problem.id for i in reading.problems
        }
        assert "svc.hepatotoxicity" in reading.needs
        # The dog is the history, not the partner sought.
        assert reading.is_context("svc.large_animal_models") is not None

    def test_the_reason_quotes_the_words_of_the_request(self) -> None:
        reading = read_problems(
            ["Bei 40 Patienten fehlt die genetische Bestätigung der Diagnose."], language="de"
        )

        words = reading.needs["svc.wgs"][1].words
        assert "genetische Bestätigung" in words

    def test_a_request_that_mixes_two_languages(self) -> None:
        # An English title over a Polish description, and a sentence that switches language.
        found = problems_in(
            "Our LNP loses potency: po trzech tygodniach w lodówce cząstki rosną", "en"
        )
        mixed = read_problems(
            [
                "Same titre, different potency",
                "Nasze serie AAV mają to samo miano, a siła działania bardzo się różni.",
            ],
            language="en",
        )

        assert "product.does_not_keep" in found
        assert "product.potency_varies" in {i.problem.id for i in mixed.problems}

    def test_a_service_request_states_no_problem(self) -> None:
        assert problems_in("GLP genotoxicity: Ames test and in vitro micronucleus.") == []


class TestNegation:
    @pytest.mark.parametrize(
        ("text", "language"),
        [
            ("Our formulation shows no aggregation after 12 months of storage.", "en"),
            ("Aucune agrégation après douze mois de stockage au frigo.", "fr"),
            ("Keine Aggregation nach zwölf Monaten Lagerung im Kühlschrank.", "de"),
            ("Brak agregacji po dwunastu miesiącach przechowywania w lodówce.", "pl"),
        ],
    )
    def test_a_negated_cue_states_no_problem(self, text: str, language: str) -> None:
        assert problems_in(text, language) == []

    def test_not_knowing_the_target_is_still_the_problem(self) -> None:
        found = problems_in(
            "Nous ne savons pas sur quelle protéine agit la molécule issue du criblage.", "fr"
        )

        assert "discovery.unknown_target" in found

    @pytest.mark.parametrize(
        ("text", "language", "concept", "words"),
        [
            ("We are not looking for a CRO.", "en", "kind.cro", "not looking for a CRO"),
            ("Nous ne voulons pas de CRO.", "fr", "kind.cro", "pas de CRO"),
            ("Wir suchen keine CRO.", "de", "kind.cro", "keine CRO"),
            ("Nie szukamy CRO.", "pl", "kind.cro", "Nie szukamy CRO"),
            ("No animal work, please.", "en", "svc.animal_models", "No animal work"),
            (
                "Sans expérimentation animale.",
                "fr",
                "svc.animal_models",
                "Sans expérimentation animale",
            ),
            ("Ohne Tierversuche.", "de", "svc.animal_models", "Ohne Tierversuche"),
            (
                "Bez badań na zwierzętach.",
                "pl",
                "svc.animal_models",
                "Bez badań na zwierzętach",
            ),
            (
                "On human cells rather than more animal studies.",
                "en",
                "svc.animal_models",
                "rather than more animal studies",
            ),
        ],
    )
    def test_what_the_request_rules_out(
        self, text: str, language: str, concept: str, words: str
    ) -> None:
        assert read_problems([text], language=language).excluded == {concept: words}

    def test_a_described_absence_rules_nothing_out(self) -> None:
        assert read_problems(["Many particles carry no genome."], language="en").excluded == {}

    def test_a_ruled_out_need_is_not_inferred(self) -> None:
        text = "Our mouse data are not enough for the reviewers."

        assert "svc.large_animal_models" in needs_of(text, "en")
        assert "svc.large_animal_models" not in needs_of(f"{text} No animal work, though.", "en")
