import pytest
from sqlmodel import Session, select

from ce4big.models import User
from tests.api.conftest import ClientFactory
from tests.factories import add_organisation, user_with_token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class TestUsers:
    async def test_admin_adds_and_lists_users(
        self, api_client: ClientFactory, session: Session
    ) -> None:
        add_organisation(session, "bm-sme", "biom", country="DE")
        _, token = user_with_token(session, "admin@ce4big.example", "admin")
        async with api_client() as client:
            created = await client.post(
                "/api/v1/users",
                json={"email": "eva@bm-sme.example", "role": "sme", "organisation": "bm-sme"},
                headers=bearer(token),
            )
            listed = await client.get("/api/v1/users", headers=bearer(token))
        assert created.status_code == 201
        assert created.json()["cluster_id"] == "biom"
        assert listed.json()["count"] == 2
        assert {u["email"] for u in listed.json()["data"]} == {
            "admin@ce4big.example",
            "eva@bm-sme.example",
        }

    @pytest.mark.parametrize("role", ["sme", "broker", "manager"])
    async def test_only_admins_manage_users(
        self, api_client: ClientFactory, session: Session, role: str
    ) -> None:
        add_organisation(session, "bw-sme", "biowin", country="BE")
        organisation = "bw-sme" if role == "sme" else None
        cluster = "biowin" if role == "broker" else None
        _, token = user_with_token(session, f"{role}@x.example", role, cluster, organisation)
        async with api_client() as client:
            listed = await client.get("/api/v1/users", headers=bearer(token))
            created = await client.post(
                "/api/v1/users",
                json={"email": "new@x.example", "role": "admin"},
                headers=bearer(token),
            )
        assert (listed.status_code, created.status_code) == (403, 403)
        assert session.exec(select(User).where(User.email == "new@x.example")).first() is None

    async def test_unknown_role_is_422_and_saves_nothing(
        self, api_client: ClientFactory, session: Session
    ) -> None:
        _, token = user_with_token(session, "admin@ce4big.example", "admin")
        async with api_client() as client:
            response = await client.post(
                "/api/v1/users",
                json={"email": "x@y.example", "role": "king"},
                headers=bearer(token),
            )
        assert response.status_code == 422
        assert response.json()["error"]["message"].startswith("role")
        assert session.exec(select(User).where(User.email == "x@y.example")).first() is None
