import socket
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import uvicorn
from sqlalchemy import event
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Session, select
from temporalio.testing import WorkflowEnvironment

from api.main import serving_refusal
from ce4big.models import ApiToken, User, utcnow
from ce4big.settings import Settings, get_settings
from cli.main import main as cli_main
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


class TestCommitBeforeResponse:
    async def test_a_commit_that_fails_answers_5xx_and_saves_nothing(
        self, api_client: ClientFactory, session: Session
    ) -> None:
        _, admin = user_with_token(session, "admin@ce4big.example", "admin")

        def mark(db_session: OrmSession, *_: object) -> None:
            if any(isinstance(o, User) and o.email == "new@ce4big.example" for o in db_session.new):
                db_session.info["doomed"] = True

        def fail(db_session: OrmSession) -> None:
            if db_session.info.get("doomed"):
                raise OperationalError("COMMIT", {}, Exception("disk full"))

        event.listen(OrmSession, "before_flush", mark)
        event.listen(OrmSession, "before_commit", fail)
        try:
            async with api_client() as client:
                response = await client.post(
                    "/api/v1/users",
                    json={"email": "new@ce4big.example", "role": "manager"},
                    headers=bearer(admin),
                )
        finally:
            event.remove(OrmSession, "before_flush", mark)
            event.remove(OrmSession, "before_commit", fail)
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "unavailable"
        session.expire_all()
        assert session.exec(select(User).where(User.email == "new@ce4big.example")).all() == []


class TestSecurityHeaders:
    async def test_the_api_openapi_and_docs_send_them(self, api_client: ClientFactory) -> None:
        async with api_client() as client:
            answers = {path: await client.get(path) for path in ("/api/v1/me", "/openapi.json")}
            docs = await client.get("/docs")
        for path, response in answers.items():
            assert response.headers["X-Content-Type-Options"] == "nosniff", path
            assert response.headers["X-Frame-Options"] == "DENY", path
            assert response.headers["Referrer-Policy"] == "no-referrer", path
            assert "default-src 'none'" in response.headers["Content-Security-Policy"], path
            assert "Strict-Transport-Security" not in response.headers, path
        assert answers["/api/v1/me"].headers["Cache-Control"] == "no-store"
        assert docs.status_code == 200
        assert docs.headers["X-Frame-Options"] == "DENY"
        assert "frame-ancestors 'none'" in docs.headers["Content-Security-Policy"]

    async def test_pages_keep_their_own_policy(self, api_client: ClientFactory) -> None:
        async with api_client() as client:
            page = await client.get("/login")
        assert "script-src 'self'" in page.headers["Content-Security-Policy"]

    async def test_hsts_once_the_base_url_is_https(
        self, api_client: ClientFactory, settings: Settings
    ) -> None:
        https = make_settings(settings.database_url, base_url="https://exchange.ce4big.example")
        async with api_client(https) as client:
            response = await client.get("/api/v1/me")
            static = await client.get("/static/app.css")
        assert response.headers["Strict-Transport-Security"] == "max-age=31536000"
        assert static.headers["Strict-Transport-Security"] == "max-age=31536000"


class TestBodyLimit:
    async def test_a_chunked_body_over_the_limit_is_413(
        self, api_client: ClientFactory, session: Session
    ) -> None:
        _, admin = user_with_token(session, "admin@ce4big.example", "admin")

        async def chunks() -> AsyncIterator[bytes]:
            yield b'{"email": "big@ce4big.example", "role": "manager", "name": "'
            for _ in range(40):
                yield b"x" * 50_000
            yield b'"}'

        async with api_client() as client:
            response = await client.post(
                "/api/v1/users",
                content=chunks(),
                headers={**bearer(admin), "Content-Type": "application/json"},
            )
        assert "content-length" not in response.request.headers
        assert response.status_code == 413, response.text
        assert response.json()["error"]["code"] == "payload_too_large"


class TestServing:
    def test_development_settings_are_served_on_this_machine_only(self) -> None:
        development = make_settings(ce4big_env="development")
        production = make_settings(ce4big_env="production")
        assert serving_refusal(development, "127.0.0.1") is None
        assert serving_refusal(development, "localhost") is None
        assert serving_refusal(production, "0.0.0.0") is None
        refusal = serving_refusal(development, "0.0.0.0")
        assert refusal is not None and "CE4BIG_ENV" in refusal and "\n" not in refusal

    def test_ce4big_api_refuses_to_listen_beyond_this_machine_in_development(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
    ) -> None:
        served: list[object] = []
        monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: served.append(args))
        monkeypatch.chdir(tmp_path)
        for name, value in {
            "CE4BIG_ENV": "development",
            "CE4BIG_HOST": "0.0.0.0",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'app.db'}",
        }.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        try:
            with pytest.raises(SystemExit) as exited:
                cli_main(["api"])
        finally:
            get_settings.cache_clear()
        assert exited.value.code == 1
        assert served == []
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and "CE4BIG_ENV" in lines[0] and "0.0.0.0" in lines[0]
