"""ce4big/catalogue/vocabulary.py: concepts, synonyms across languages, analysis of texts."""

import pytest

from ce4big.catalogue.vocabulary import (
    CONCEPTS,
    VOCABULARY_VERSION,
    Facet,
    analyse_text,
    canonical_certification,
    expand_ancestors,
)
from ce4big.domain import CERTIFICATIONS, LANGUAGES, OrganisationKind


def concepts_of(text: str, language: str | None = None) -> list[str]:
    return analyse_text(text, language=language).concepts()


class TestConcepts:
    def test_every_concept_has_a_label_and_known_broader_concepts(self) -> None:
        for concept in CONCEPTS.values():
            assert concept.label
            assert all(parent in CONCEPTS for parent in concept.broader)

    def test_most_concepts_have_synonyms_in_all_four_languages(self) -> None:
        complete = [c for c in CONCEPTS.values() if all(c.synonyms.get(lang) for lang in LANGUAGES)]

        assert len(CONCEPTS) >= 300
        assert len(complete) / len(CONCEPTS) > 0.95

    def test_every_certification_and_kind_of_the_domain_is_a_concept(self) -> None:
        for name in CERTIFICATIONS:
            assert canonical_certification(name) == name
        for kind in OrganisationKind:
            assert CONCEPTS[f"kind.{kind.value}"].facet is Facet.KIND

    def test_broader_concepts_carry_their_distance(self) -> None:
        assert expand_ancestors("svc.ames") == {"svc.genotoxicity": 1, "svc.toxicology": 2}

    def test_the_version_is_a_stable_fingerprint(self) -> None:
        assert len(VOCABULARY_VERSION) == 16


class TestAnalyseText:
    @pytest.mark.parametrize(
        "text",
        ["oncology", "cancer", "tumours", "cancérologie", "Onkologie", "onkologia", "nowotworów"],
    )
    def test_cancer_is_oncology_in_every_language(self, text: str) -> None:
        assert concepts_of(text) == ["ta.oncology"]

    @pytest.mark.parametrize(
        "text", ["GLP", "BPL", "Gute Laborpraxis", "DPL", "bonnes pratiques de laboratoire"]
    )
    def test_glp_and_its_translations(self, text: str) -> None:
        assert concepts_of(text) == ["cert.glp"]

    @pytest.mark.parametrize("text", ["GMP", "BPF", "bonnes pratiques de fabrication"])
    def test_gmp_and_its_translations(self, text: str) -> None:
        assert concepts_of(text) == ["cert.gmp"]

    def test_gmp_manufacturing_in_german(self) -> None:
        assert "svc.gmp_manufacturing" in concepts_of("GMP-Herstellung")

    @pytest.mark.parametrize(
        ("text", "concept"),
        [
            ("viral vectors", "tech.viral_vectors"),
            ("vecteurs viraux", "tech.viral_vectors"),
            ("AAV8", "tech.aav"),
            ("lentivirus", "tech.lentivirus"),
            ("wektorów lentiwirusowych", "tech.lentivirus"),
            ("toxicology", "svc.toxicology"),
            ("safety assessment", "svc.toxicology"),
            ("Zelltherapie", "mod.cell_therapy"),
            ("thérapie cellulaire", "mod.cell_therapy"),
            ("terapii komórkowej", "mod.cell_therapy"),
        ],
    )
    def test_synonyms_reach_their_concept(self, text: str, concept: str) -> None:
        assert concept in concepts_of(text)

    def test_matching_ignores_case_and_accents(self) -> None:
        assert concepts_of("GENOTOXICITE") == concepts_of("génotoxicité") == ["svc.genotoxicity"]

    def test_stemming_follows_each_language(self) -> None:
        assert concepts_of("toksykologii", "pl") == concepts_of("toksykologia", "pl")
        assert concepts_of("Toxikologie", "de") == ["svc.toxicology"]
        assert concepts_of("organoïdes", "fr") == concepts_of("organoids", "en")

    def test_german_compounds_are_split_into_known_words(self) -> None:
        found = concepts_of("Wir liefern Gentherapievektoren und Tumororganoide.", "de")

        assert {"mod.gene_therapy", "tech.viral_vectors", "ta.oncology", "svc.organoids"} <= set(
            found
        )

    def test_phase_ranges_name_each_phase(self) -> None:
        assert concepts_of("Phasen I bis III") == ["stage.phase1", "stage.phase2", "stage.phase3"]
        assert concepts_of("faza I/II", "pl") == ["stage.phase1", "stage.phase2"]
        assert concepts_of("badanie kliniczne I fazy", "pl") == [
            "svc.clinical_trials",
            "stage.phase1",
        ]
        assert "stage.phase1" not in concepts_of("terapia genowa i komórkowa", "pl")

    def test_negations_are_marked(self) -> None:
        analysis = analyse_text("Bulk RNA-seq only. Single-cell workflows are not offered.")

        assert analysis.concepts(negated=True) == ["svc.single_cell"]
        assert "svc.transcriptomics" in analysis.concepts()

    @pytest.mark.parametrize(
        "text",
        [
            "Non-GLP screening assays.",
            "Keine GLP-Studien.",
            "Nie prowadzimy badań GLP.",
            "Pas de BPL.",
        ],
    )
    def test_negation_cues_in_every_language(self, text: str) -> None:
        analysis = analyse_text(text)

        assert "cert.glp" in analysis.concepts(negated=True)
        assert "cert.glp" not in analysis.concepts()

    def test_a_phrase_that_starts_with_a_cue_is_no_negation(self) -> None:
        assert concepts_of("études non cliniques", "fr") == ["stage.preclinical"]
        assert concepts_of("toxicology in rodents and non-rodents") == [
            "svc.toxicology",
            "svc.rodent_models",
            "svc.large_animal_models",
        ]

    def test_surfaces_are_the_written_words(self) -> None:
        analysis = analyse_text("Recherche en Cancérologie", surfaces=True)

        assert [(m.concept, m.surface) for m in analysis.mentions] == [
            ("ta.oncology", "Cancérologie")
        ]

    def test_free_terms_are_the_words_no_concept_accounts_for(self) -> None:
        analysis = analyse_text("Forskolin-induced swelling of CFTR organoids")

        assert "svc.cftr_assay" in analysis.concepts()
        assert "forskolin" in analysis.terms
        assert "organoid" in analysis.terms
        assert "organoid" not in analysis.free_terms

    def test_language_is_detected_when_not_given(self) -> None:
        assert analyse_text("Nous cherchons un partenaire pour la toxicologie").language == "fr"
        assert analyse_text("Wir suchen einen Partner für die Toxikologie").language == "de"
        assert analyse_text("Szukamy partnera do badań toksykologicznych w Polsce").language == "pl"


class TestCanonicalCertification:
    @pytest.mark.parametrize(
        ("name", "canonical"),
        [("glp", "GLP"), ("BPF", "GMP"), ("ISO 17025", "ISO/IEC 17025"), ("DPK", "GCP")],
    )
    def test_names_a_certification_by_any_of_its_names(self, name: str, canonical: str) -> None:
        assert canonical_certification(name) == canonical

    def test_refuses_what_is_no_certification(self) -> None:
        assert canonical_certification("Michelin star") is None
