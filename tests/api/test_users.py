import pytest
from sqlmodel import Session, select

from ce4big.models import User
from ce4big.security import create_api_token
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


def admin_and_broker(session: Session) -> tuple[str, User, str]:
    """An admin's token, and a broker with a token of their own."""
    _, admin = user_with_token(session, "admin@ce4big.example", "admin")
    broker, token = user_with_token(session, "lea@biom.example", "broker", "biom")
    return admin, broker, token


class TestDeactivation:
    async def test_admin_deactivates_then_activates_a_user(
        self, api_client: ClientFactory, session: Session
    ) -> None:
        admin, broker, token = admin_and_broker(session)
        async with api_client() as client:
            off = await client.post(f"/api/v1/users/{broker.id}/deactivate", headers=bearer(admin))
            refused = await client.get("/api/v1/me", headers=bearer(token))
            on = await client.post(f"/api/v1/users/{broker.id}/activate", headers=bearer(admin))
            back = await client.get("/api/v1/me", headers=bearer(token))
        assert (off.status_code, off.json()["is_active"]) == (200, False)
        assert refused.status_code == 401
        assert (on.status_code, on.json()["is_active"]) == (200, True)
        assert back.status_code == 200

    async def test_an_admin_cannot_deactivate_themselves_and_unknown_users_are_404(
        self, api_client: ClientFactory, session: Session
    ) -> None:
        admin, _, _ = admin_and_broker(session)
        me = session.exec(select(User).where(User.email == "admin@ce4big.example")).one()
        async with api_client() as client:
            own = await client.post(f"/api/v1/users/{me.id}/deactivate", headers=bearer(admin))
            unknown = await client.post("/api/v1/users/999999/deactivate", headers=bearer(admin))
        assert own.status_code == 409 and own.json()["error"]["message"].startswith("user")
        assert unknown.status_code == 404
        session.refresh(me)
        assert me.is_active


class TestTokens:
    async def test_admin_lists_and_revokes_one_token(
        self, api_client: ClientFactory, session: Session
    ) -> None:
        admin, broker, token = admin_and_broker(session)
        assert broker.id is not None
        kept = create_api_token(session=session, user=broker, days=1, name="kept")
        session.commit()
        async with api_client() as client:
            listed = await client.get(f"/api/v1/users/{broker.id}/tokens", headers=bearer(admin))
            by_name = {t["name"]: t for t in listed.json()["data"]}
            revoked = await client.delete(
                f"/api/v1/users/{broker.id}/tokens/{by_name['']['id']}", headers=bearer(admin)
            )
            again = await client.get(f"/api/v1/users/{broker.id}/tokens", headers=bearer(admin))
            refused = await client.get("/api/v1/me", headers=bearer(token))
            still = await client.get("/api/v1/me", headers=bearer(kept))
            other = await client.delete(
                f"/api/v1/users/{broker.id}/tokens/{by_name['']['id'] + 999}",
                headers=bearer(admin),
            )
        assert listed.status_code == 200 and listed.json()["count"] == 2
        assert set(by_name) == {"", "kept"}
        assert all("token_hash" not in t for t in listed.json()["data"])
        assert revoked.status_code == 204
        states = {t["name"]: t["revoked_at"] is not None for t in again.json()["data"]}
        assert states == {"": True, "kept": False}
        assert (refused.status_code, still.status_code) == (401, 200)
        assert other.status_code == 404

    async def test_admin_revokes_every_token_of_a_user(
        self, api_client: ClientFactory, session: Session
    ) -> None:
        admin, broker, token = admin_and_broker(session)
        second = create_api_token(session=session, user=broker, days=1, name="script")
        session.commit()
        async with api_client() as client:
            revoked = await client.delete(
                f"/api/v1/users/{broker.id}/tokens", headers=bearer(admin)
            )
            again = await client.delete(f"/api/v1/users/{broker.id}/tokens", headers=bearer(admin))
            answers = [
                (await client.get("/api/v1/me", headers=bearer(t))).status_code
                for t in (token, second, admin)
            ]
        assert (revoked.json(), again.json()) == ({"revoked": 2}, {"revoked": 0})
        assert answers == [401, 401, 200]

    @pytest.mark.parametrize(
        ("method", "path"),
        [
            ("post", "/deactivate"),
            ("post", "/activate"),
            ("get", "/tokens"),
            ("delete", "/tokens"),
            ("delete", "/tokens/1"),
        ],
    )
    async def test_only_admins_may(
        self, api_client: ClientFactory, session: Session, method: str, path: str
    ) -> None:
        _, broker, token = admin_and_broker(session)
        _, manager = user_with_token(session, "m@ce4big.example", "manager")
        async with api_client() as client:
            answers = [
                (
                    await client.request(
                        method, f"/api/v1/users/{broker.id}{path}", headers=bearer(t)
                    )
                ).status_code
                for t in (token, manager)
            ]
            me = await client.get("/api/v1/me", headers=bearer(token))
        assert answers == [403, 403]
        assert me.status_code == 200

    async def test_the_endpoints_are_in_the_openapi_schema(self, api_client: ClientFactory) -> None:
        async with api_client() as client:
            paths = (await client.get("/openapi.json")).json()["paths"]
        assert {"post"} <= set(paths["/api/v1/users/{user_id}/deactivate"])
        assert {"post"} <= set(paths["/api/v1/users/{user_id}/activate"])
        assert {"get", "delete"} <= set(paths["/api/v1/users/{user_id}/tokens"])
        assert {"delete"} <= set(paths["/api/v1/users/{user_id}/tokens/{token_id}"])
