"""The catalogue's pages for cluster staff over HTTP: search, one organisation, CSV import and
download."""

import re
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlmodel import Session, select

from ce4big.catalogue.csvio import parse_catalogue_csv
from ce4big.catalogue.store import upsert_organisations
from ce4big.models import Organisation
from ce4big.settings import Settings
from tests.api.conftest import CSRF, ClientFactory, sign_in
from tests.ce4big.catalogue.samples import csv_text, row
from tests.factories import add_organisation, user_with_token

BROKER = "broker@biom.example"
SME = "sme@bm-sme.example"
ROWS = [
    row(
        "bm-tox",
        "biom",
        "cro",
        "GLP genetic toxicology CRO: Ames test, in vitro micronucleus and comet assay.",
        name="Isar Genetic Toxicology",
        certifications="GLP",
        contact_name="Jonas Weber",
        contact_email="j.weber@bm-tox.example",
    ),
    row(
        "kr-tox",
        "klsk",
        "cro",
        "GLP toxicology: Ames test and micronucleus assays for small molecules.",
        name="Wawel Preclinical",
        certifications="GLP",
        accepting_new_projects="false",
    ),
    row(
        "at-seq",
        "atlanpole",
        "core_facility",
        "Single-cell RNA sequencing of tumour biopsies with bioinformatic analysis.",
        name="Erdre Sequencing Core",
    ),
]


@pytest.fixture
def people(session: Session) -> None:
    upsert_organisations(session=session, rows=parse_catalogue_csv(csv_text(ROWS).encode()))
    add_organisation(session, "bm-sme", "biom", country="DE")
    user_with_token(session, BROKER, "broker", "biom")
    user_with_token(session, SME, "sme", organisation="bm-sme")


@pytest.fixture
async def open_client(
    api_client: ClientFactory, settings: Settings, people: None
) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(settings) as client:
        yield client


@pytest.fixture
def broker(
    open_client: httpx.AsyncClient, session: Session, settings: Settings
) -> httpx.AsyncClient:
    sign_in(open_client, session, settings, BROKER)
    return open_client


async def upload(client: httpx.AsyncClient, text: str, *, csrf: bool = True) -> httpx.Response:
    page = await client.get("/catalogue/import")
    found = CSRF.search(page.text)
    assert found, page.text
    data = {"csrf_token": found.group(1)} if csrf else {}
    return await client.post(
        "/catalogue/import", data=data, files={"file": ("catalogue.csv", text, "text/csv")}
    )


def names(html: str) -> set[str]:
    return {r["name"] for r in ROWS if r["name"] in html}


class TestSearch:
    async def test_filters_narrow_the_list(self, broker: httpx.AsyncClient) -> None:
        everything = await broker.get("/catalogue")
        in_biom = await broker.get("/catalogue", params={"cluster": "biom"})
        accepting_cros = await broker.get("/catalogue", params={"kind": "cro", "accepting": "yes"})
        glp = await broker.get("/catalogue", params={"certification": "GLP"})
        words = await broker.get("/catalogue", params={"q": "toxicology"})

        assert everything.status_code == 200
        assert names(everything.text) == {r["name"] for r in ROWS}
        assert names(in_biom.text) == {"Isar Genetic Toxicology"}
        assert names(accepting_cros.text) == {"Isar Genetic Toxicology"}
        assert names(glp.text) == {"Isar Genetic Toxicology", "Wawel Preclinical"}
        assert names(words.text) == {"Isar Genetic Toxicology", "Wawel Preclinical"}

    async def test_an_unknown_filter_value_is_told_not_a_crash(
        self, broker: httpx.AsyncClient
    ) -> None:
        response = await broker.get("/catalogue", params={"cluster": "mars"})

        assert response.status_code == 422
        assert 'href="#filter-cluster"' in response.text

    async def test_the_organisation_page_shows_its_contact_to_staff(
        self, broker: httpx.AsyncClient
    ) -> None:
        response = await broker.get("/catalogue/bm-tox")
        missing = await broker.get("/catalogue/nowhere")

        assert response.status_code == 200
        assert "Jonas Weber" in response.text and "j.weber@bm-tox.example" in response.text
        assert missing.status_code == 404

    async def test_an_organisation_id_with_nul_is_not_found(
        self, broker: httpx.AsyncClient
    ) -> None:
        response = await broker.get("/catalogue/bm%00x")

        assert response.status_code == 404

    async def test_smes_do_not_browse_the_catalogue(
        self, open_client: httpx.AsyncClient, session: Session, settings: Settings
    ) -> None:
        sign_in(open_client, session, settings, SME)

        for path in (
            "/catalogue",
            "/catalogue/bm-tox",
            "/catalogue/import",
            "/catalogue/export.csv",
        ):
            assert (await open_client.get(path)).status_code == 403, path


class TestImport:
    async def test_a_bad_file_reports_every_line_and_field_and_loads_nothing(
        self, broker: httpx.AsyncClient, session: Session
    ) -> None:
        text = csv_text(
            [
                row("bm-new", "biom", "cro", "A fine new CRO."),
                row("bm-bad", "biom", "bakery", "Bread."),
                row("bm-worse", "biom", "cro", "Mail.", contact_email="not-an-address"),
            ]
        )

        response = await upload(broker, text)

        assert response.status_code == 422
        problems = re.findall(
            r'<tr><th scope="row">(\d+)</th><td><code>(\w+)</code>', response.text
        )
        assert problems == [("3", "kind"), ("4", "contact_email")]
        assert 'href="#file"' in response.text
        found = session.exec(select(Organisation.id).where(Organisation.id.startswith("bm-"))).all()
        assert sorted(found) == ["bm-sme", "bm-tox"]

    async def test_a_good_file_reports_the_counts(
        self, broker: httpx.AsyncClient, session: Session
    ) -> None:
        changed = {**ROWS[0], "city": "Planegg"}
        text = csv_text([row("bm-new", "biom", "cdmo", "AAV vectors under GMP."), changed])

        response = await upload(broker, text)

        assert response.status_code == 200
        assert "2 rows imported." in response.text
        assert "1 organisation created" in response.text
        assert "1 organisation updated" in response.text
        assert session.get(Organisation, "bm-new") is not None

    async def test_an_upload_without_the_csrf_token_is_refused(
        self, broker: httpx.AsyncClient, session: Session
    ) -> None:
        response = await upload(
            broker, csv_text([row("bm-new", "biom", "cro", "New.")]), csrf=False
        )

        assert response.status_code == 403
        assert session.get(Organisation, "bm-new") is None

    async def test_a_file_over_the_limit_is_refused_with_the_form(
        self, api_client: ClientFactory, settings: Settings, people: None, session: Session
    ) -> None:
        small = settings.model_copy(update={"catalogue_max_upload_bytes": 2048})
        async with api_client(small) as client:
            sign_in(client, session, small, BROKER)
            text = csv_text([row(f"bm-{n}", "biom", "cro", "x" * 200) for n in range(20)])
            response = await upload(client, text)

        assert response.status_code == 413
        assert 'id="file-error"' in response.text


class TestExport:
    async def test_downloads_the_catalogue_with_formulas_defused(
        self, broker: httpx.AsyncClient, session: Session
    ) -> None:
        add_organisation(session, "bm-evil", "biom", name='=HYPERLINK("http://x.example")')
        session.commit()

        response = await broker.get("/catalogue/export.csv")

        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/csv")
        assert "attachment" in response.headers["content-disposition"]
        assert '"\'=HYPERLINK(""http://x.example"")"' in response.text
        ids = [r.id for r in parse_catalogue_csv(response.content)]
        assert {"bm-tox", "kr-tox", "at-seq", "bm-evil"} <= set(ids)
