"""ce4big/catalogue/profile.py: how an organisation is read and packed for the index."""

import pytest

from ce4big.catalogue import profile
from ce4big.catalogue.profile import (
    organisation_profile,
    organisation_profiles,
    profile_terms,
    read_organisation,
    unpack_terms,
)

VALUES = {
    "id": "o-1",
    "name": "Isar Genetox",
    "kind": "cro",
    "description": "GLP genetic toxicology. No AAV work. Single-cell assays are not offered.",
    "services": ["Ames test", "in vitro micronucleus"],
    "technologies": [],
    "therapeutic_areas": ["oncology"],
    "modalities": ["small molecule"],
    "stages": ["preclinical"],
    "certifications": ["GLP"],
}


class TestReadOrganisation:
    def test_collects_concepts_with_where_they_were_found(self) -> None:
        reading = read_organisation(VALUES, surfaces=True)

        assert reading.concepts["kind.cro"].field == "kind"
        assert reading.concepts["cert.glp"].field == "certifications"
        assert reading.concepts["svc.ames"].surface == "Ames test"
        assert reading.concepts["ta.oncology"].weight == 1.0
        assert reading.concepts["svc.genotoxicity"].field == "description"

    def test_keeps_what_the_entry_says_it_does_not_offer(self) -> None:
        reading = read_organisation(VALUES, surfaces=True)

        assert set(reading.negated) == {"tech.aav", "svc.single_cell"}
        assert "svc.single_cell" not in reading.concepts

    def test_a_concept_stated_elsewhere_is_not_negated(self) -> None:
        reading = read_organisation(
            {**VALUES, "description": "No GLP studies.", "certifications": ["GLP"]}
        )

        assert "cert.glp" not in reading.negated


class TestProfileTerms:
    def test_names_concepts_with_their_broader_ones_negations_and_words(self) -> None:
        terms = profile_terms(read_organisation(VALUES))

        stated = terms["c:svc.ames"]
        assert 0.5 < stated <= 1.0
        assert terms["c:svc.genotoxicity"] == pytest.approx(0.85 * stated)
        assert terms["c:svc.toxicology"] == pytest.approx(0.85**2 * stated)
        assert terms["n:svc.single_cell"] == 1.0
        assert 0 < terms["w:isar"] < 1

    def test_packs_into_hashes_and_weights(self) -> None:
        hashes, weights = unpack_terms(organisation_profile(VALUES))

        assert len(hashes) == len(weights) == len(profile_terms(read_organisation(VALUES)))

    def test_a_specialist_weighs_its_speciality_more_than_a_generalist(self) -> None:
        generalist = {
            **VALUES,
            "services": [
                *VALUES["services"],
                "PK",
                "ELISA",
                "flow cytometry",
                "histology",
                "LC-MS/MS",
                "qPCR",
                "RNA-seq",
                "proteomics",
                "microscopy",
                "CRISPR",
            ],
        }

        special = profile_terms(read_organisation(VALUES))["c:svc.ames"]
        general = profile_terms(read_organisation(generalist))["c:svc.ames"]

        assert general < special


class TestOrganisationProfiles:
    def test_a_large_batch_gives_the_same_profiles_on_several_cores(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        many = [{**VALUES, "id": f"o-{i}", "name": f"Lab {i}"} for i in range(8)]
        serial = [organisation_profile(v) for v in many]
        monkeypatch.setattr(profile, "PARALLEL_FROM", 4)
        monkeypatch.setattr("os.cpu_count", lambda: 2)

        assert organisation_profiles(many) == serial
