"""api/routes/catalogue.py: browse, search, read and import over HTTP."""

from collections.abc import Iterator
from functools import partial
from typing import Any

import httpx
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from sqlmodel import Session, func, select

from api.main import create_app
from ce4big.models import Organisation
from ce4big.settings import Settings
from tests.ce4big.catalogue.samples import CATALOGUE, csv_text, load, row
from tests.conftest import make_settings
from tests.factories import user_with_token


class PortalClient:
    """A blocking client on the app (with its lifespan) run by an event loop in a thread, so
    these tests read like the synchronous database code around them."""

    def __init__(self, portal: BlockingPortal, client: httpx.AsyncClient) -> None:
        self._portal = portal
        self._client = client

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self._portal.call(partial(self._client.get, url, **kwargs))

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self._portal.call(partial(self._client.post, url, **kwargs))


def open_client(settings: Settings) -> Iterator[PortalClient]:
    app = create_app(settings)
    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(app.router.lifespan_context(app)),
    ):
        transport = httpx.ASGITransport(app=app)
        client = httpx.AsyncClient(transport=transport, base_url="http://testserver")
        try:
            yield PortalClient(portal, client)
        finally:
            portal.call(client.aclose)


@pytest.fixture
def client(settings: Settings) -> Iterator[PortalClient]:
    yield from open_client(settings)


def bearer(session: Session, role: str, cluster: str | None = None) -> dict[str, str]:
    organisation = None
    if role == "sme":
        if session.get(Organisation, "home-sme") is None:
            load(session, [row("home-sme", cluster or "atlanpole", "sme", "Our start-up")])
        organisation = "home-sme"
    _, token = user_with_token(
        session, f"{role}.{cluster or 'all'}@example.org", role, cluster, organisation
    )
    return {"Authorization": f"Bearer {token}"}


def count(session: Session) -> int:
    session.expire_all()
    return session.exec(select(func.count()).select_from(Organisation)).one()


class TestListCatalogue:
    def test_lists_every_organisation_by_name_with_the_total(
        self, client: PortalClient, session: Session
    ) -> None:
        load(session)
        headers = bearer(session, "manager", "biom")

        body = client.get("/api/v1/catalogue", headers=headers).json()

        assert body["count"] == len(CATALOGUE)
        names = [o["name"] for o in body["data"]]
        assert names == sorted(names)
        assert body["data"][0]["contact_email"].endswith(".example")

    def test_filters_by_cluster_kind_and_certification(
        self, client: PortalClient, session: Session
    ) -> None:
        load(session)
        headers = bearer(session, "broker", "biom")

        by_cluster = client.get("/api/v1/catalogue?cluster=klsk", headers=headers).json()
        by_kind = client.get("/api/v1/catalogue?kind=cdmo", headers=headers).json()
        by_certification = client.get("/api/v1/catalogue?certification=BPL", headers=headers).json()

        assert {o["id"] for o in by_cluster["data"]} == {"pl-onco", "en-sc", "closed-tox"}
        assert {o["id"] for o in by_kind["data"]} == {"de-vec", "en-cell"}
        assert {o["id"] for o in by_certification["data"]} == {"fr-tox", "en-tox", "closed-tox"}
        assert by_certification["count"] == 3

    def test_pages_with_limit_and_offset(self, client: PortalClient, session: Session) -> None:
        load(session)
        headers = bearer(session, "admin")

        first = client.get("/api/v1/catalogue?limit=3", headers=headers).json()
        second = client.get("/api/v1/catalogue?limit=3&offset=3", headers=headers).json()

        assert first["count"] == second["count"] == len(CATALOGUE)
        assert len(first["data"]) == len(second["data"]) == 3
        assert not {o["id"] for o in first["data"]} & {o["id"] for o in second["data"]}

    def test_searches_by_meaning_in_any_language(
        self, client: PortalClient, session: Session
    ) -> None:
        load(session)
        headers = bearer(session, "sme", "atlanpole")

        body = client.get(
            "/api/v1/catalogue", params={"q": "Zelltherapie", "kind": "cdmo"}, headers=headers
        ).json()

        assert [o["id"] for o in body["data"]] == ["en-cell"]
        assert body["count"] == 1

    def test_pages_search_results(self, client: PortalClient, session: Session) -> None:
        load(session)
        headers = bearer(session, "admin")

        everything = client.get("/api/v1/catalogue?q=toxicology", headers=headers).json()
        second = client.get(
            "/api/v1/catalogue?q=toxicology&limit=1&offset=1", headers=headers
        ).json()

        assert second["count"] == everything["count"] >= 2
        assert [o["id"] for o in second["data"]] == [everything["data"][1]["id"]]

    def test_hides_contact_details_from_smes(self, client: PortalClient, session: Session) -> None:
        load(session)
        headers = bearer(session, "sme", "atlanpole")

        body = client.get("/api/v1/catalogue", headers=headers).json()
        one = client.get("/api/v1/catalogue/fr-tox", headers=headers).json()

        for shown in [*body["data"], one]:
            assert "contact_email" not in shown
            assert "contact_name" not in shown

    def test_refuses_an_unknown_filter_value(self, client: PortalClient, session: Session) -> None:
        headers = bearer(session, "admin")

        response = client.get("/api/v1/catalogue?cluster=paris", headers=headers)

        assert response.status_code == 422
        assert response.json()["error"]["code"] == "invalid"

    def test_needs_a_token(self, client: PortalClient) -> None:
        assert client.get("/api/v1/catalogue").status_code == 401


class TestReadOrganisation:
    def test_returns_one_organisation(self, client: PortalClient, session: Session) -> None:
        load(session)
        headers = bearer(session, "broker", "klsk")

        body = client.get("/api/v1/catalogue/de-vec", headers=headers).json()

        assert body["id"] == "de-vec"
        assert body["cluster_id"] == "biom"
        assert body["certifications"] == ["GMP"]
        assert body["contact_name"] == "Contact Person"

    def test_an_unknown_id_is_a_404_error(self, client: PortalClient, session: Session) -> None:
        headers = bearer(session, "admin")

        response = client.get("/api/v1/catalogue/nobody", headers=headers)

        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"


class TestImportCatalogue:
    def test_a_manager_imports_a_csv_body(self, client: PortalClient, session: Session) -> None:
        headers = {**bearer(session, "manager", "biom"), "Content-Type": "text/csv"}

        response = client.post(
            "/api/v1/catalogue/import", content=csv_text(CATALOGUE), headers=headers
        )

        assert response.status_code == 200
        assert response.json() == {
            "rows": len(CATALOGUE),
            "created": len(CATALOGUE),
            "updated": 0,
            "unchanged": 0,
        }
        assert count(session) == len(CATALOGUE)

    def test_an_upload_upserts_by_id(self, client: PortalClient, session: Session) -> None:
        load(session)
        headers = bearer(session, "admin")
        changed = [dict(r) for r in CATALOGUE[:2]]
        changed[0]["name"] = "Renamed"
        changed.append(row("new-1", "biowin", "sme", "New member"))

        response = client.post(
            "/api/v1/catalogue/import",
            files={"file": ("members.csv", csv_text(changed, ";").encode(), "text/csv")},
            headers=headers,
        )

        assert response.json() == {"rows": 3, "created": 1, "updated": 1, "unchanged": 1}
        session.expire_all()
        renamed = session.get(Organisation, changed[0]["id"])
        assert renamed is not None and renamed.name == "Renamed"

    def test_a_broker_imports_rows_of_their_cluster(
        self, client: PortalClient, session: Session
    ) -> None:
        headers = bearer(session, "broker", "biom")
        rows = [row("b-1", "biom", "cro", "Toxikologie"), row("b-2", "biom", "sme", "KMU")]

        response = client.post(
            "/api/v1/catalogue/import",
            content=csv_text(rows),
            headers={**headers, "Content-Type": "text/csv"},
        )

        assert response.status_code == 200
        assert count(session) == 2

    def test_a_broker_cannot_import_another_clusters_rows(
        self, client: PortalClient, session: Session
    ) -> None:
        headers = bearer(session, "broker", "biom")
        rows = [row("b-1", "biom", "cro", ""), row("k-1", "klsk", "cro", "")]

        response = client.post(
            "/api/v1/catalogue/import",
            content=csv_text(rows),
            headers={**headers, "Content-Type": "text/csv"},
        )

        assert response.status_code == 403
        assert "line 3 (k-1, klsk)" in response.json()["error"]["message"]
        assert count(session) == 0

    def test_a_broker_cannot_move_another_clusters_organisation(
        self, client: PortalClient, session: Session
    ) -> None:
        load(session)
        headers = bearer(session, "broker", "biom")
        taken = row("pl-onco", "biom", "cro", "Now ours")

        response = client.post(
            "/api/v1/catalogue/import",
            content=csv_text([taken]),
            headers={**headers, "Content-Type": "text/csv"},
        )

        assert response.status_code == 403
        assert "pl-onco belongs to klsk" in response.json()["error"]["message"]

    def test_an_sme_cannot_import(self, client: PortalClient, session: Session) -> None:
        headers = bearer(session, "sme", "biom")

        response = client.post(
            "/api/v1/catalogue/import",
            content=csv_text(CATALOGUE),
            headers={**headers, "Content-Type": "text/csv"},
        )

        assert response.status_code == 403

    def test_an_invalid_file_is_422_with_every_bad_row_and_imports_nothing(
        self, client: PortalClient, session: Session
    ) -> None:
        headers = bearer(session, "admin")
        rows = [
            row("a", "biom", "cro", ""),
            row("b", "mars", "bakery", ""),
            row("a", "klsk", "cro", ""),
        ]

        response = client.post(
            "/api/v1/catalogue/import",
            content=csv_text(rows),
            headers={**headers, "Content-Type": "text/csv"},
        )

        assert response.status_code == 422
        error = response.json()["error"]
        assert error["code"] == "invalid"
        assert [(r["line"], r["field"]) for r in error["rows"]] == [
            (3, "cluster"),
            (3, "kind"),
            (4, "id"),
        ]
        assert count(session) == 0

    def test_a_file_over_the_limit_is_413(self, session: Session, db: object) -> None:
        settings = make_settings(
            str(session.get_bind().engine.url.render_as_string(hide_password=False)),
            catalogue_max_upload_bytes=2048,
        )
        headers = bearer(session, "admin")
        big = csv_text([row(f"x-{i}", "biom", "cro", "x" * 200) for i in range(20)])

        for client in open_client(settings):
            body = client.post(
                "/api/v1/catalogue/import",
                content=big,
                headers={**headers, "Content-Type": "text/csv"},
            )
            upload = client.post(
                "/api/v1/catalogue/import",
                files={"file": ("big.csv", big.encode(), "text/csv")},
                headers=headers,
            )

        assert body.status_code == upload.status_code == 413
        assert body.json()["error"]["code"] == "payload_too_large"
        assert count(session) == 0

    def test_a_multipart_request_without_a_file_is_refused(
        self, client: PortalClient, session: Session
    ) -> None:
        headers = bearer(session, "admin")

        response = client.post(
            "/api/v1/catalogue/import", data={"note": "no file"}, headers=headers
        )

        assert response.status_code == 422
