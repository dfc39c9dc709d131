"""ce4big/catalogue/store.py: upsert with profiles, refresh, export."""

from sqlmodel import Session, select

from ce4big.catalogue.csvio import HEADER, parse_catalogue_csv, write_catalogue_csv
from ce4big.catalogue.store import export_rows, refresh_profiles, upsert_organisations
from ce4big.catalogue.vocabulary import VOCABULARY_VERSION
from ce4big.models import Organisation, OrganisationProfile
from tests.ce4big.catalogue.samples import CATALOGUE, csv_text, row
from tests.factories import add_organisation


def parsed(rows: list[dict[str, str]]) -> list:  # type: ignore[type-arg]
    return parse_catalogue_csv(csv_text(rows).encode())


class TestUpsertOrganisations:
    def test_creates_new_ids_with_their_profiles(self, session: Session) -> None:
        created, updated = upsert_organisations(session=session, rows=parsed(CATALOGUE))
        session.commit()

        assert (created, updated) == (len(CATALOGUE), 0)
        profiles = session.exec(select(OrganisationProfile)).all()
        assert len(profiles) == len(CATALOGUE)
        assert {p.vocabulary_version for p in profiles} == {VOCABULARY_VERSION}
        organisation = session.get(Organisation, "fr-tox")
        assert organisation is not None
        assert organisation.certifications == ["GLP"]
        assert organisation.languages == ["fr", "en"]

    def test_updates_changed_rows_and_leaves_the_others(self, session: Session) -> None:
        upsert_organisations(session=session, rows=parsed(CATALOGUE))
        session.commit()
        before = session.get(Organisation, "en-sc")
        assert before is not None
        stamp = before.updated_at
        changed = [dict(r) for r in CATALOGUE]
        changed[0]["description"] = "Nouvelle description : cancérologie."

        created, updated = upsert_organisations(session=session, rows=parsed(changed))
        session.commit()
        session.expire_all()

        assert (created, updated) == (0, 1)
        organisation = session.get(Organisation, "fr-tox")
        assert organisation is not None
        assert organisation.description == "Nouvelle description : cancérologie."
        profile = session.get(OrganisationProfile, "fr-tox")
        assert profile is not None
        assert profile.source_updated_at == organisation.updated_at
        unchanged = session.get(Organisation, "en-sc")
        assert unchanged is not None and unchanged.updated_at == stamp

    def test_profiles_again_rows_read_with_an_older_vocabulary(self, session: Session) -> None:
        upsert_organisations(session=session, rows=parsed(CATALOGUE[:1]))
        session.commit()
        profile = session.get(OrganisationProfile, "fr-tox")
        assert profile is not None
        profile.vocabulary_version = "old"
        session.add(profile)
        session.commit()

        assert upsert_organisations(session=session, rows=parsed(CATALOGUE[:1])) == (0, 0)
        session.commit()
        session.expire_all()

        refreshed = session.get(OrganisationProfile, "fr-tox")
        assert refreshed is not None and refreshed.vocabulary_version == VOCABULARY_VERSION


class TestRefreshProfiles:
    def test_profiles_rows_written_without_one(self, session: Session) -> None:
        add_organisation(session, "raw-1", "biom", "cro", description="Comet assay")
        session.commit()

        assert refresh_profiles(session=session) == 1
        session.commit()
        assert session.get(OrganisationProfile, "raw-1") is not None
        assert refresh_profiles(session=session) == 0


class TestExportRows:
    def test_round_trips_what_was_imported(self, session: Session) -> None:
        shuffled = [
            row("z-1", "klsk", "sme", "Last"),
            *CATALOGUE,
            row("a-1", "atlanpole", "sme", "x"),
        ]
        upsert_organisations(session=session, rows=parsed(shuffled))
        session.commit()

        exported = write_catalogue_csv(export_rows(session=session))

        assert parse_catalogue_csv(exported.encode()) == parsed(shuffled) or sorted(
            r.id for r in parse_catalogue_csv(exported.encode())
        ) == sorted(r["id"] for r in shuffled)
        again = write_catalogue_csv(
            {name: getattr(r, name) for name in HEADER}
            for r in parse_catalogue_csv(exported.encode())
        )
        assert again == exported

    def test_lists_cluster_by_cluster_then_by_id(self, session: Session) -> None:
        rows = [
            row("k-2", "klsk", "sme", ""),
            row("b-1", "biom", "sme", ""),
            row("w-1", "biowin", "sme", ""),
            row("k-1", "klsk", "sme", ""),
            row("a-1", "atlanpole", "sme", ""),
        ]
        upsert_organisations(session=session, rows=parsed(rows))
        session.commit()

        assert [r["id"] for r in export_rows(session=session)] == [
            "a-1",
            "w-1",
            "b-1",
            "k-1",
            "k-2",
        ]
