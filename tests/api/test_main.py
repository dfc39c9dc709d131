import socket
from datetime import timedelta

import httpx
from sqlmodel import Session, select
from temporalio.testing import WorkflowEnvironment

from ce4big.models import ApiToken, utcnow
from ce4big.settings import Settings
from tests.api.conftest import ClientFactory
from tests.conftest import make_settings
from tests.factories import add_organisation, user_with_token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class TestHealth:
    async def test_ok_when_database_and_temporal_answer(
        self, api_client: ClientFactory, dev_server_env: WorkflowEnvironment
    ) -> None:
        async with api_client(temporal_client=dev_server_env.client) as client:
            response = await client.get("/healthz")
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}

    async def test_names_temporal_when_it_does_not_answer(
        self, api_client: ClientFactory, settings: Settings
    ) -> None:
        unreachable = make_settings(
            settings.database_url, temporal_address=f"127.0.0.1:{closed_port()}"
        )
        async with api_client(unreachable) as client:
            response = await client.get("/healthz")
        assert response.status_code == 503
        assert response.json()["failing"] == ["temporal"]
        assert "temporal" in response.json()["error"]["message"]

    async def test_names_the_database_when_it_does_not_answer(
        self, api_client: ClientFactory, dev_server_env: WorkflowEnvironment
    ) -> None:
        broken = make_settings(f"postgresql+psycopg://postgres@127.0.0.1:{closed_port()}/none")
        async with api_client(broken, temporal_client=dev_server_env.client) as client:
            response = await client.get("/healthz")
        assert response.status_code == 503
        assert response.json()["failing"] == ["database"]


class TestErrors:
    async def test_unknown_route_is_json_404(self, api_client: ClientFactory) -> None:
        async with api_client() as client:
            response = await client.get("/api/v1/nothing-here")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"

    async def test_wrong_method_is_json_405(self, api_client: ClientFactory) -> None:
        async with api_client() as client:
            response = await client.delete("/healthz")
        assert response.status_code == 405
        assert response.json()["error"]["code"] == "method_not_allowed"


class TestAuthentication:
    async def test_me_with_a_valid_token(self, api_client: ClientFactory, session: Session) -> None:
        add_organisation(session, "org-1", "biom")
        _, token = user_with_token(session, "anna@org-1.example", "sme", organisation="org-1")
        async with api_client() as client:
            response = await client.get("/api/v1/me", headers=bearer(token))
        assert response.status_code == 200
        body = response.json()
        assert body["email"] == "anna@org-1.example"
        assert body["role"] == "sme"
        assert body["cluster_id"] == "biom"
        assert body["organisation_id"] == "org-1"

    async def test_missing_token_is_401(self, api_client: ClientFactory) -> None:
        async with api_client() as client:
            response = await client.get("/api/v1/me")
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"

    async def test_wrong_token_is_401(self, api_client: ClientFactory, session: Session) -> None:
        user_with_token(session, "m@ce4big.example", "manager")
        async with api_client() as client:
            response = await client.get("/api/v1/me", headers=bearer("c4b_not-a-token"))
        assert response.status_code == 401

    async def test_expired_token_is_401(self, api_client: ClientFactory, session: Session) -> None:
        _, token = user_with_token(session, "m@ce4big.example", "manager")
        row = session.exec(select(ApiToken)).one()
        row.expires_at = utcnow() - timedelta(seconds=1)
        session.add(row)
        session.commit()
        async with api_client() as client:
            response = await client.get("/api/v1/me", headers=bearer(token))
        assert response.status_code == 401

    async def test_revoked_token_is_401(self, api_client: ClientFactory, session: Session) -> None:
        _, token = user_with_token(session, "m@ce4big.example", "manager")
        row = session.exec(select(ApiToken)).one()
        row.revoked_at = utcnow()
        session.add(row)
        session.commit()
        async with api_client() as client:
            response = await client.get("/api/v1/me", headers=bearer(token))
        assert response.status_code == 401

    async def test_token_is_stored_hashed(self, session: Session) -> None:
        _, token = user_with_token(session, "m@ce4big.example", "manager")
        row = session.exec(select(ApiToken)).one()
        assert token not in row.token_hash and len(row.token_hash) == 64


class TestClusters:
    async def test_lists_the_four_clusters(
        self, api_client: ClientFactory, session: Session
    ) -> None:
        _, token = user_with_token(session, "m@ce4big.example", "manager")
        async with api_client() as client:
            response = await client.get("/api/v1/clusters", headers=bearer(token))
        assert response.status_code == 200
        assert [c["id"] for c in response.json()] == ["atlanpole", "biom", "biowin", "klsk"]
        assert response.json()[0]["timezone"] == "Europe/Paris"

    async def test_needs_authentication(self, api_client: ClientFactory) -> None:
        async with api_client() as client:
            response: httpx.Response = await client.get("/api/v1/clusters")
        assert response.status_code == 401
