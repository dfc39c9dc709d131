"""The `ce4big` command as a user runs it: a subprocess with its own environment."""

import csv
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select
from uvicorn.logging import AccessFormatter

from api.main import create_app
from bench.stack import free_port
from ce4big.models import ApiToken, User
from cli.main import RedactLinkTokens
from tests.conftest import make_settings
from tests.exchange_world import add_world
from tests.factories import add_organisation, user_with_token

CE4BIG = str(Path(sys.executable).parent / "ce4big")


def cli_env(engine: Engine) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": engine.url.render_as_string(hide_password=False),
        "CE4BIG_ENV": "test",
        "SECRET_KEY": "cli-test-secret-0123456789",
    }


def run_cli(engine: Engine, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CE4BIG, *args],
        capture_output=True,
        text=True,
        env=cli_env(engine),
        timeout=60,
        check=False,
    )


class TestUsersAndTokens:
    async def test_token_from_the_cli_is_accepted_by_the_api(self, db: Engine) -> None:
        added = run_cli(db, "users", "add", "lea@biom.example", "--role", "broker",
                        "--cluster", "biom", "--name", "Lea Broker")  # fmt: skip
        assert added.returncode == 0, added.stderr
        created = run_cli(db, "token", "create", "lea@biom.example")
        assert created.returncode == 0, created.stderr
        token = created.stdout.strip()

        app = create_app(make_settings(db.url.render_as_string(hide_password=False)))
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c,
        ):
            me = await c.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
            wrong = await c.get("/api/v1/me", headers={"Authorization": f"Bearer {token}x"})
        assert me.status_code == 200
        assert me.json()["email"] == "lea@biom.example"
        assert me.json()["role"] == "broker"
        assert wrong.status_code == 401

    async def test_a_deactivated_users_token_is_refused_until_reactivated(self, db: Engine) -> None:
        run_cli(db, "users", "add", "m@ce4big.example", "--role", "manager")
        token = run_cli(db, "token", "create", "m@ce4big.example").stdout.strip()
        app = create_app(make_settings(db.url.render_as_string(hide_password=False)))
        answers = []
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c,
        ):
            for command in ("deactivate", "activate"):
                result = run_cli(db, "users", command, "m@ce4big.example")
                assert result.returncode == 0, result.stderr
                me = await c.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
                answers.append(me.status_code)
        unknown = run_cli(db, "users", "deactivate", "nobody@ce4big.example")
        assert answers == [401, 200]
        assert unknown.returncode == 1 and "no user" in unknown.stderr

    def test_adding_a_user_twice_updates_it(self, db: Engine, session: Session) -> None:
        for name in ("First", "Second"):
            result = run_cli(db, "users", "add", "m@ce4big.example", "--role", "manager",
                             "--name", name)  # fmt: skip
            assert result.returncode == 0, result.stderr
        users = session.exec(select(User)).all()
        assert [(u.email, u.name) for u in users] == [("m@ce4big.example", "Second")]

    def test_sme_user_takes_the_cluster_of_its_organisation(
        self, db: Engine, session: Session
    ) -> None:
        add_organisation(session, "kr-sme", "klsk", country="PL")
        session.commit()
        result = run_cli(db, "users", "add", "ola@kr.example", "--role", "sme",
                         "--organisation", "kr-sme")  # fmt: skip
        assert result.returncode == 0, result.stderr
        user = session.exec(select(User)).one()
        assert (user.cluster_id, user.organisation_id) == ("klsk", "kr-sme")

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["users", "add", "x@y.example", "--role", "king"], "role: 'king'"),
            (["users", "add", "x@y.example", "--role", "broker", "--cluster", "mars"],
             "cluster: 'mars'"),
            (["users", "add", "x@y.example", "--role", "broker"], "needs --cluster"),
            (["users", "add", "not-an-email", "--role", "manager"], "email"),
            (["users", "add", "x@y.example", "--role", "sme", "--organisation", "nope"],
             "organisation"),
            (["token", "create", "ghost@nowhere.example"], "no user with e-mail"),
        ],
    )  # fmt: skip
    def test_bad_input_is_one_line_and_writes_nothing(
        self, db: Engine, session: Session, args: list[str], message: str
    ) -> None:
        result = run_cli(db, *args)
        assert result.returncode == 1
        assert result.stderr.count("\n") == 1, result.stderr
        assert message in result.stderr
        assert session.exec(select(User)).all() == []

    @pytest.mark.parametrize(
        "args",
        [["users"], ["token", "create"], ["nonsense"], ["token", "create", "a@b.c", "--days", "0"]],
    )
    def test_bad_arguments_exit_2_with_one_line(self, db: Engine, args: list[str]) -> None:
        result = run_cli(db, *args)
        assert result.returncode == 2
        assert result.stderr.count("\n") == 1, result.stderr
        assert "error:" in result.stderr


def states(session: Session, user: User) -> dict[str, bool]:
    """Each token of the user by name: revoked or not."""
    session.expire_all()
    tokens = session.exec(select(ApiToken).where(ApiToken.user_id == user.id)).all()
    return {t.name: t.revoked_at is not None for t in tokens}


class TestTokenRevoke:
    def test_list_then_revoke_one_by_id_and_one_by_the_token_itself(
        self, db: Engine, session: Session
    ) -> None:
        user, leaked = user_with_token(session, "lea@biom.example", "broker", "biom")
        for name in ("script", "laptop"):
            assert run_cli(db, "token", "create", user.email, "--name", name).returncode == 0
        listed = run_cli(db, "token", "list", user.email)
        script_id = next(
            line.split("\t")[0] for line in listed.stdout.splitlines() if "\tscript\t" in line
        )

        by_id = run_cli(db, "token", "revoke", script_id)
        by_token = run_cli(db, "token", "revoke", leaked)
        after = run_cli(db, "token", "list", user.email)

        assert listed.returncode == 0, listed.stderr
        assert len(listed.stdout.splitlines()) == 3 and "\tactive\t" in listed.stdout
        assert by_id.returncode == 0 and f"token {script_id} of lea@biom.example" in by_id.stdout
        assert by_token.returncode == 0, by_token.stderr
        assert leaked not in by_token.stdout + by_token.stderr
        assert states(session, user) == {"": True, "script": True, "laptop": False}
        assert after.stdout.count("\trevoked\t") == 2

    async def test_revoking_every_token_of_a_user_locks_the_api_out(
        self, db: Engine, session: Session
    ) -> None:
        user, token = user_with_token(session, "lea@biom.example", "broker", "biom")
        other, kept = user_with_token(session, "m@ce4big.example", "manager")

        revoked = run_cli(db, "token", "revoke", "--user", user.email)
        again = run_cli(db, "token", "revoke", "--user", user.email)

        app = create_app(make_settings(db.url.render_as_string(hide_password=False)))
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c,
        ):
            answers = [
                (await c.get("/api/v1/me", headers={"Authorization": f"Bearer {t}"})).status_code
                for t in (token, kept)
            ]
        assert (revoked.returncode, revoked.stdout.strip()) == (
            0,
            "1 token of lea@biom.example revoked",
        )
        assert again.stdout.strip() == "0 tokens of lea@biom.example revoked"
        assert answers == [401, 200]
        assert states(session, other) == {"": False}

    @pytest.mark.parametrize(
        ("args", "code", "message"),
        [
            (["token", "revoke", "999999"], 1, "no API token '999999'"),
            (["token", "revoke", "c4b_not-a-token"], 1, "no API token"),
            (["token", "revoke", "yesterday"], 1, "no API token"),
            (["token", "revoke", "--user", "ghost@nowhere.example"], 1, "no user"),
            (["token", "list", "ghost@nowhere.example"], 1, "no user"),
            (["token", "revoke"], 2, "error:"),
            (["token", "revoke", "1", "--user", "a@b.example"], 2, "not allowed with"),
        ],
    )
    def test_bad_input_is_one_line(
        self, db: Engine, args: list[str], code: int, message: str
    ) -> None:
        result = run_cli(db, *args)

        assert result.returncode == code
        assert result.stderr.count("\n") == 1, result.stderr
        assert message in result.stderr


TOKEN_PATHS = ("/t/{}", "/login/{}", "/api/v1/actions/{}", "/t/{}?utm=x")


class TestAccessLog:
    def test_the_filter_replaces_the_token_of_a_link_path(self) -> None:
        token = secrets.token_urlsafe(32)
        formatter = AccessFormatter(
            '%(client_addr)s - "%(request_line)s" %(status_code)s', use_colors=False
        )
        lines = []
        for path in (*TOKEN_PATHS, "/exchanges/12"):
            record = logging.LogRecord(
                "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                ("127.0.0.1:5000", "GET", path.format(token), "1.1", 200), None,
            )  # fmt: skip
            assert RedactLinkTokens().filter(record)
            lines.append(formatter.format(record))

        assert lines == [
            '127.0.0.1:5000 - "GET /t/… HTTP/1.1" 200 OK',
            '127.0.0.1:5000 - "GET /login/… HTTP/1.1" 200 OK',
            '127.0.0.1:5000 - "GET /api/v1/actions/… HTTP/1.1" 200 OK',
            '127.0.0.1:5000 - "GET /t/…?utm=x HTTP/1.1" 200 OK',
            '127.0.0.1:5000 - "GET /exchanges/12 HTTP/1.1" 200 OK',
        ]

    @pytest.mark.slow
    def test_the_api_command_logs_no_link_token(self, db: Engine) -> None:
        port = free_port()
        env = {**cli_env(db), "CE4BIG_HOST": "127.0.0.1", "CE4BIG_PORT": str(port)}
        token = secrets.token_urlsafe(32)
        process = subprocess.Popen(
            [CE4BIG, "api"], env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        try:
            answers: list[int] = []
            deadline = time.monotonic() + 60
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
                while not answers:
                    try:
                        answers = [client.get(p.format(token)).status_code for p in TOKEN_PATHS]
                    except httpx.TransportError:
                        assert time.monotonic() < deadline, "ce4big api did not start"
                        time.sleep(0.2)
        finally:
            process.send_signal(signal.SIGINT)
            logged, _ = process.communicate(timeout=30)

        assert len(answers) == len(TOKEN_PATHS)
        for path in TOKEN_PATHS:
            assert f'"GET {path.format("…")} HTTP/1.1"' in logged, logged
        assert token not in logged


class TestDatabaseCommand:
    def test_upgrade_reports_the_database(self, db: Engine) -> None:
        result = run_cli(db, "db", "upgrade")
        assert result.returncode == 0, result.stderr
        assert "up to date" in result.stdout

    def test_invalid_setting_is_one_line(self, db: Engine) -> None:
        env = {**os.environ, "CE4BIG_TIME_SCALE": "0", "CE4BIG_ENV": "test",
               "SECRET_KEY": "0123456789abcdef"}  # fmt: skip
        result = subprocess.run([CE4BIG, "db", "upgrade"], capture_output=True, text=True,
                                env=env, timeout=60, check=False)  # fmt: skip
        assert result.returncode == 1
        assert "ce4big_time_scale" in result.stderr
        assert result.stderr.count("\n") == 1


class TestReportCommand:
    def test_csv_has_a_row_per_exchange_and_bad_dates_are_one_line(
        self, db: Engine, session: Session, tmp_path: Path
    ) -> None:
        add_world(session)
        target = tmp_path / "exchanges.csv"
        written = run_cli(db, "report", "csv", "--from", "2020-01-01", str(target))
        bad = run_cli(db, "report", "csv", "--from", "yesterday")
        backwards = run_cli(db, "report", "csv", "--from", "2026-05-01", "--to", "2026-04-01")

        assert written.returncode == 0, written.stderr
        rows = list(csv.DictReader(target.read_text(encoding="utf-8").splitlines()))
        assert [r["title"] for r in rows] == ["GLP genotoxicity battery"]
        assert "1 exchanges written" in written.stderr
        assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0
        assert "'yesterday' is not a date" in bad.stderr
        assert backwards.returncode == 1 and "--to" in backwards.stderr
