"""ce4big/catalogue/matching.py: hard filters, multilingual ranking, reasons, order, fairness."""

from datetime import timedelta
from typing import Any

import pytest
from sqlmodel import Session, select

from ce4big.catalogue.matching import (
    Candidate,
    MatchRequest,
    rank_candidates,
    request_from_json,
    search_organisations,
)
from ce4big.domain import CooperationType, Outcome, Role
from ce4big.errors import Invalid
from ce4big.models import Exchange, ExchangeCandidate, Organisation, User, utcnow
from ce4big.settings import Settings
from tests.ce4big.catalogue.samples import load, row
from tests.factories import add_organisation


def request(
    title: str,
    description: str = "",
    *,
    home: str = "atlanpole",
    language: str = "en",
    **values: Any,
) -> MatchRequest:
    fields: dict[str, Any] = {
        "target_clusters": [],
        "partner_kinds": [],
        "required_certifications": [],
    }
    fields.update(values)
    return MatchRequest(
        title=title, description=description, home_cluster=home, language=language, **fields
    )


def ids(candidates: list[Candidate]) -> list[str]:
    return [c.organisation_id for c in candidates]


@pytest.fixture
def catalogue(session: Session) -> Session:
    load(session)
    return session


class TestHardFilters:
    def test_never_proposes_the_requesters_own_cluster(
        self, catalogue: Session, settings: Settings
    ) -> None:
        found = rank_candidates(
            session=catalogue,
            request=request("GLP genotoxicity: Ames test", home="biom"),
            settings=settings,
        )

        assert "en-tox" not in ids(found)
        assert "fr-tox" in ids(found)

    def test_keeps_to_the_target_clusters(self, catalogue: Session, settings: Settings) -> None:
        found = rank_candidates(
            session=catalogue,
            request=request("GLP genotoxicity: Ames test", home="biowin", target_clusters=["biom"]),
            settings=settings,
        )

        assert ids(found) == ["en-tox"]

    def test_keeps_to_the_partner_kinds(self, catalogue: Session, settings: Settings) -> None:
        found = rank_candidates(
            session=catalogue,
            request=request("single-cell and bulk RNA sequencing", partner_kinds=["cro"]),
            settings=settings,
        )

        assert found == []

    def test_requires_every_required_certification(
        self, catalogue: Session, settings: Settings
    ) -> None:
        wanted = request("GMP manufacturing", required_certifications=["GMP", "ISO 9001"])

        found = rank_candidates(session=catalogue, request=wanted, settings=settings)

        assert ids(found) == ["en-cell"]

    def test_reads_required_certifications_in_any_language(
        self, catalogue: Session, settings: Settings
    ) -> None:
        wanted = request("génotoxicité", home="biowin", required_certifications=["BPL"])

        found = rank_candidates(session=catalogue, request=wanted, settings=settings)

        assert set(ids(found)) == {"fr-tox", "en-tox"}

    def test_an_unknown_required_certification_matches_nobody(
        self, catalogue: Session, settings: Settings
    ) -> None:
        wanted = request("genotoxicity", required_certifications=["Michelin"])

        assert rank_candidates(session=catalogue, request=wanted, settings=settings) == []

    def test_skips_organisations_not_accepting_new_projects(
        self, catalogue: Session, settings: Settings
    ) -> None:
        found = rank_candidates(
            session=catalogue, request=request("Ames test micronucleus"), settings=settings
        )

        assert "closed-tox" not in ids(found)
        assert "en-tox" in ids(found)

    def test_never_proposes_the_requesters_own_organisation(
        self, catalogue: Session, settings: Settings
    ) -> None:
        wanted = request("Ames test", home="klsk", requester_organisation_id="en-tox")

        found = rank_candidates(session=catalogue, request=wanted, settings=settings)

        assert "en-tox" not in ids(found)


class TestMultilingualRanking:
    def test_a_french_request_finds_an_english_described_partner(
        self, catalogue: Session, settings: Settings
    ) -> None:
        wanted = request(
            "Batterie de génotoxicité BPL",
            "Nous cherchons un prestataire pour le test d'Ames et le test des comètes.",
            home="atlanpole",
            language="fr",
        )

        found = rank_candidates(session=catalogue, request=wanted, settings=settings)

        assert ids(found)[0] == "en-tox"

    def test_a_german_request_finds_an_english_described_partner(
        self, catalogue: Session, settings: Settings
    ) -> None:
        wanted = request(
            "GMP-Herstellung von CAR-T-Zellen",
            "Wir suchen einen Auftragshersteller für unsere autologe Zelltherapie (Phase I).",
            home="biom",
            language="de",
        )

        found = rank_candidates(session=catalogue, request=wanted, settings=settings)

        assert ids(found)[0] == "en-cell"

    def test_a_polish_request_finds_an_english_described_partner(
        self, catalogue: Session, settings: Settings
    ) -> None:
        wanted = request(
            "Sekwencjonowanie pojedynczych komórek",
            "Potrzebujemy analizy transkryptomu pojedynczych komórek z biopsji guza.",
            home="atlanpole",
            language="pl",
        )

        found = rank_candidates(session=catalogue, request=wanted, settings=settings)

        assert ids(found)[0] == "en-sc"

    @pytest.mark.parametrize(
        ("title", "home", "expected"),
        [
            ("GLP genotoxicity testing with Ames and micronucleus", "biom", "fr-tox"),
            ("GMP manufacturing of AAV vectors for a phase I trial", "atlanpole", "de-vec"),
            ("Colorectal cancer PDX models for an efficacy study", "atlanpole", "pl-onco"),
        ],
    )
    def test_an_english_request_finds_partners_described_in_other_languages(
        self, catalogue: Session, settings: Settings, title: str, home: str, expected: str
    ) -> None:
        found = rank_candidates(
            session=catalogue, request=request(title, home=home), settings=settings
        )

        assert ids(found)[0] == expected

    def test_an_organisation_that_says_it_does_not_offer_it_ranks_below(
        self, catalogue: Session, settings: Settings
    ) -> None:
        found = rank_candidates(
            session=catalogue, request=request("single-cell RNA-seq"), settings=settings
        )

        assert ids(found)[0] == "en-sc"
        assert "en-bulk" not in ids(found)[:1]


class TestReasons:
    def test_every_candidate_says_why(self, catalogue: Session, settings: Settings) -> None:
        wanted = request("Genotoxicity in cancer", home="biowin", required_certifications=["GLP"])

        found = rank_candidates(session=catalogue, request=wanted, settings=settings)

        assert found and all(c.reasons for c in found)

    def test_reasons_state_facts_of_the_entry(self, catalogue: Session, settings: Settings) -> None:
        wanted = request(
            "BPL genotoxicity battery",
            "Ames test for an oncology compound.",
            home="biowin",
            partner_kinds=["cro"],
            required_certifications=["GLP"],
        )

        (first, *_) = rank_candidates(session=catalogue, request=wanted, settings=settings)

        assert first.organisation_id == "en-tox"
        assert first.reasons[:2] == ["GLP certified (required)", "kind: CRO (as requested)"]
        assert "service: Ames test" in first.reasons
        assert any(
            r.startswith("service: genotoxicity (matched 'genotoxicity") for r in first.reasons
        )
        assert "cluster: BioM (DE)" in first.reasons
        assert not any("oncology" in r for r in first.reasons)

    def test_reasons_name_the_word_that_matched_across_languages(
        self, catalogue: Session, settings: Settings
    ) -> None:
        wanted = request("Tumour models: PDX", home="atlanpole")

        (first, *_) = rank_candidates(session=catalogue, request=wanted, settings=settings)

        assert first.organisation_id == "pl-onco"
        assert any("listed as" in r and "PDX" in r for r in first.reasons)

    def test_no_certification_reason_without_the_certification(
        self, catalogue: Session, settings: Settings
    ) -> None:
        found = rank_candidates(
            session=catalogue, request=request("Colorectal cancer PDX models"), settings=settings
        )

        for candidate in found:
            certified = catalogue.get(Organisation, candidate.organisation_id)
            assert certified is not None
            for reason in candidate.reasons:
                if reason.endswith("certified") or "certified (" in reason:
                    assert reason.split()[0] in certified.certifications


class TestOrder:
    def test_same_input_same_order(self, catalogue: Session, settings: Settings) -> None:
        wanted = request("toxicology and genotoxicity, GMP manufacturing", home="klsk")

        first = rank_candidates(session=catalogue, request=wanted, settings=settings)
        second = rank_candidates(session=catalogue, request=wanted, settings=settings)

        assert first == second
        assert [c.score for c in first] == sorted((c.score for c in first), reverse=True)
        assert all(0 < c.score <= 1 for c in first)

    def test_ties_are_broken_by_id(self, session: Session, settings: Settings) -> None:
        twin = "Organoid platform for drug screening."
        load(session, [row(i, "biom", "platform", twin) for i in ("twin-b", "twin-c", "twin-a")])

        found = rank_candidates(
            session=session, request=request("organoids", home="klsk"), settings=settings
        )

        assert ids(found) == ["twin-a", "twin-b", "twin-c"]
        assert len({c.score for c in found}) == 1
        cut = rank_candidates(
            session=session, request=request("organoids", home="klsk"), top=2, settings=settings
        )
        assert ids(cut) == ["twin-a", "twin-b"]

    def test_top_limits_the_list(self, catalogue: Session, settings: Settings) -> None:
        wanted = request("GLP toxicology, GMP manufacturing, sequencing", home="klsk")

        assert (
            len(rank_candidates(session=catalogue, request=wanted, top=2, settings=settings)) == 2
        )


class TestIndexConsistency:
    def test_sees_rows_written_without_a_profile(
        self, session: Session, settings: Settings
    ) -> None:
        add_organisation(session, "raw-1", "biom", "cro", description="Comet assay under GLP.")

        found = rank_candidates(session=session, request=request("comet assay"), settings=settings)

        assert ids(found) == ["raw-1"]

    def test_follows_changes_to_the_table(self, catalogue: Session, settings: Settings) -> None:
        wanted = request("single-cell RNA-seq")
        assert (
            ids(rank_candidates(session=catalogue, request=wanted, settings=settings))[0] == "en-sc"
        )

        closed = catalogue.get(Organisation, "en-sc")
        assert closed is not None
        closed.accepting_new_projects = False
        catalogue.add(closed)
        catalogue.commit()

        assert "en-sc" not in ids(
            rank_candidates(session=catalogue, request=wanted, settings=settings)
        )


def _exchange(
    session: Session, *, organisation_id: str, outcome: Outcome | None = None
) -> Exchange:
    user = session.exec(select(User).where(User.email == "sme@example.org")).first() or User(
        email="sme@example.org", role=Role.SME
    )
    session.add(user)
    session.flush()
    assert user.id is not None
    exchange = Exchange(
        title="t",
        description="d",
        requester_id=user.id,
        organisation_id=organisation_id,
        home_cluster="atlanpole",
        cooperation_type=CooperationType.SERVICE_AGREEMENT,
        outcome=outcome,
    )
    session.add(exchange)
    session.flush()
    return exchange


def _introduce(
    session: Session, exchange: Exchange, organisation_id: str, status: str, **v: object
) -> None:
    assert exchange.id is not None
    session.add(
        ExchangeCandidate(
            exchange_id=exchange.id,
            organisation_id=organisation_id,
            rank=1,
            score=1.0,
            intro_status=status,
            **v,  # type: ignore[arg-type]
        )
    )
    session.flush()


class TestFairness:
    @pytest.fixture
    def requester(self, catalogue: Session) -> str:
        add_organisation(catalogue, "req-sme", "atlanpole", "sme")
        return "req-sme"

    def wanted(self, requester: str) -> MatchRequest:
        return request("GLP genotoxicity: Ames test", requester_organisation_id=requester)

    def test_busy_organisations_rank_after_the_others(
        self, catalogue: Session, settings: Settings, requester: str
    ) -> None:
        before = ids(
            rank_candidates(session=catalogue, request=self.wanted(requester), settings=settings)
        )
        busy = before[0]
        for status in ("asked", "accepted", "asked"):
            _introduce(catalogue, _exchange(catalogue, organisation_id=requester), busy, status)

        found = rank_candidates(
            session=catalogue, request=self.wanted(requester), settings=settings
        )

        assert ids(found)[-1] == busy
        assert any("already in introduction for 3 open exchanges" in r for r in found[-1].reasons)

    def test_closed_exchanges_and_other_statuses_do_not_count(
        self, catalogue: Session, settings: Settings, requester: str
    ) -> None:
        before = ids(
            rank_candidates(session=catalogue, request=self.wanted(requester), settings=settings)
        )
        for outcome, status in (
            (None, "asked"),
            (None, "accepted"),
            (Outcome.COMPLETED, "asked"),
            (None, "no_answer"),
        ):
            exchange = _exchange(catalogue, organisation_id=requester, outcome=outcome)
            _introduce(catalogue, exchange, before[0], status)

        found = rank_candidates(
            session=catalogue, request=self.wanted(requester), settings=settings
        )

        assert ids(found) == before

    def test_a_recent_decline_of_this_requester_ranks_after_the_others(
        self, catalogue: Session, settings: Settings, requester: str
    ) -> None:
        before = ids(
            rank_candidates(session=catalogue, request=self.wanted(requester), settings=settings)
        )
        _introduce(
            catalogue, _exchange(catalogue, organisation_id=requester), before[0], "declined"
        )

        found = rank_candidates(
            session=catalogue, request=self.wanted(requester), settings=settings
        )

        assert ids(found)[-1] == before[0]
        assert any(
            "declined an introduction from your organisation" in r for r in found[-1].reasons
        )

    def test_an_old_decline_or_another_requesters_decline_does_not_count(
        self, catalogue: Session, settings: Settings, requester: str
    ) -> None:
        before = ids(
            rank_candidates(session=catalogue, request=self.wanted(requester), settings=settings)
        )
        old = utcnow() - timedelta(days=settings.fairness_decline_days + 1)
        _introduce(
            catalogue,
            _exchange(catalogue, organisation_id=requester),
            before[0],
            "declined",
            updated_at=old,
        )
        add_organisation(catalogue, "other-sme", "atlanpole", "sme")
        _introduce(
            catalogue, _exchange(catalogue, organisation_id="other-sme"), before[0], "declined"
        )

        found = rank_candidates(
            session=catalogue, request=self.wanted(requester), settings=settings
        )

        assert ids(found) == before


class TestSearchOrganisations:
    def test_finds_by_meaning_in_any_language(self, catalogue: Session) -> None:
        assert search_organisations(session=catalogue, q="Zelltherapie") == ["en-cell"]
        found = search_organisations(session=catalogue, q="génotoxicité")
        assert set(found) == {"en-tox", "fr-tox", "closed-tox"}

    def test_applies_the_filters(self, catalogue: Session) -> None:
        found = search_organisations(session=catalogue, q="genotoxicity", cluster="atlanpole")

        assert found == ["fr-tox"]


class TestRequestFromJson:
    def test_reads_a_requests_line_and_ignores_judgments(self) -> None:
        parsed = request_from_json(
            {
                "id": "r-1",
                "title": "t",
                "description": "d",
                "home_cluster": "biom",
                "partner_kinds": ["cro"],
                "judgments": {"x": 3},
            }
        )

        assert parsed.home_cluster == "biom"
        assert parsed.partner_kinds == ["cro"]

    @pytest.mark.parametrize(
        "data",
        [
            [],
            {"title": "t", "description": "d"},
            {"title": "t", "description": "d", "home_cluster": "x"},
            {"title": "t", "description": "d", "home_cluster": "biom", "partner_kinds": "cro"},
        ],
    )
    def test_refuses_what_is_no_request(self, data: object) -> None:
        with pytest.raises(Invalid):
            request_from_json(data)


PROBLEM_CATALOGUE = [
    row(
        "en-form",
        "biowin",
        "cdmo",
        "Formulation development of biologics: liquid and lyophilised formulations, "
        "excipient screening and ICH stability studies.",
    ),
    row(
        "en-fill",
        "biom",
        "cdmo",
        "Aseptic fill-finish of vials and prefilled syringes, visual inspection.",
        certifications="GMP",
    ),
    row(
        "fr-liver",
        "atlanpole",
        "academic_lab",
        "Équipe académique : organoïdes hépatiques humains et tests d'hépatotoxicité.",
        languages="fr;en",
    ),
    row(
        "en-dogtox",
        "biom",
        "cro",
        "GLP general toxicology in dogs and minipigs with histopathology.",
        certifications="GLP",
    ),
    row(
        "pl-stats",
        "klsk",
        "cro",
        "Biostatystyka i zarządzanie danymi klinicznymi: plany analizy statystycznej, "
        "analizy pośrednie, projekty adaptacyjne.",
        languages="pl;en",
    ),
    row(
        "en-stats",
        "biowin",
        "academic_lab",
        "University biostatistics group: statistical analysis plans and adaptive designs.",
    ),
]


@pytest.fixture
def problem_catalogue(session: Session) -> Session:
    load(session, PROBLEM_CATALOGUE)
    return session


class TestProblems:
    def test_a_problem_finds_the_service_that_solves_it(
        self, problem_catalogue: Session, settings: Settings
    ) -> None:
        found = rank_candidates(
            session=problem_catalogue,
            request=request(
                "Our antibody does not keep in the liquid vial",
                "After three weeks in the fridge it aggregates.",
                home="klsk",
            ),
            settings=settings,
        )

        assert ids(found)[0] == "en-form"

    def test_the_reason_shows_the_chain_from_the_words_to_the_service(
        self, problem_catalogue: Session, settings: Settings
    ) -> None:
        found = rank_candidates(
            session=problem_catalogue,
            request=request(
                "Our antibody does not keep in the liquid vial",
                "After three weeks in the fridge it aggregates.",
                home="klsk",
            ),
            settings=settings,
        )

        assert found[0].reasons[0] == (
            "problem: a product that does not keep (degrades, aggregates or loses activity in "
            "storage) ('does not keep in the liquid') → service: formulation (listed as "
            "'Formulation development')"
        )

    def test_the_switch_ranks_on_the_named_services_only(
        self, problem_catalogue: Session, settings: Settings
    ) -> None:
        told = request("Our product does not keep in the liquid vial", home="klsk")
        named = rank_candidates(
            session=problem_catalogue, request=told, settings=settings, infer_problems=False
        )
        inferred = rank_candidates(session=problem_catalogue, request=told, settings=settings)

        # Read as named, "does not keep in the liquid vial" negates the vial and asks nothing.
        assert ids(named) == []
        assert ids(inferred)[0] == "en-form"

    def test_a_polish_problem_finds_a_french_entry(
        self, problem_catalogue: Session, settings: Settings
    ) -> None:
        found = rank_candidates(
            session=problem_catalogue,
            request=request(
                "Wątroba psa zareagowała, szczura nie",
                "Po dawce pośredniej u psów wzrosły transaminazy, u szczurów nie. Czy to "
                "ryzyko dotyczy ludzi? Chcemy to sprawdzić na modelach z ludzkich komórek.",
                home="klsk",
                language="pl",
            ),
            settings=settings,
        )

        assert ids(found)[0] == "fr-liver"
        # The dogs are the history of the problem: the dog toxicology CRO comes after.
        assert ids(found).index("en-dogtox") > 0

    def test_a_french_problem_finds_an_english_entry_and_a_polish_one(
        self, problem_catalogue: Session, settings: Settings
    ) -> None:
        found = rank_candidates(
            session=problem_catalogue,
            request=request(
                "Combien de patients pour notre essai ?",
                "Nous ne savons pas combien de patients inclure en phase II.",
                home="atlanpole",
                language="fr",
            ),
            settings=settings,
        )

        assert set(ids(found)[:2]) == {"pl-stats", "en-stats"}

    def test_a_ruled_out_kind_ranks_after_the_others_and_says_why(
        self, problem_catalogue: Session, settings: Settings
    ) -> None:
        found = rank_candidates(
            session=problem_catalogue,
            request=request(
                "How many patients do we need?",
                "The effect size is unknown. We are not looking for a CRO.",
                home="atlanpole",
            ),
            settings=settings,
        )

        assert ids(found)[:2] == ["en-stats", "pl-stats"]
        cro = next(c for c in found if c.organisation_id == "pl-stats")
        assert "note: the request rules out CRO ('not looking for a CRO')" in cro.reasons
