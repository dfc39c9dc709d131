from datetime import UTC, date, datetime, timedelta

from sqlalchemy import Connection, Engine, inspect, text
from sqlmodel import Session, col, select

from ce4big.db import make_engine, upgrade_database
from ce4big.domain import CLUSTERS, Party
from ce4big.models import Cluster, ExchangeStage, StageRollup
from ce4big.rollup import StageFigures, bucket_of

BEFORE = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)
AFTER = datetime(2026, 11, 20, 16, 0, tzinfo=UTC)


def insert_exchanges(connection: Connection, *exchanges: tuple[int, str, datetime | None]) -> None:
    """Rows as an older revision wrote them: (id, status, closed_at), by user 1, in biowin."""
    connection.execute(
        text(
            'INSERT INTO "user" (id, email, name, role, is_active, created_at) '
            "VALUES (1, 'sme@x.example', '', 'sme', true, :at)"
        ),
        {"at": BEFORE},
    )
    for exchange_id, status, closed_at in exchanges:
        connection.execute(
            text(
                "INSERT INTO exchange (id, title, description, requester_id, "
                "home_cluster, target_clusters, partner_kinds, "
                "required_certifications, cooperation_type, meeting_format, "
                "languages, status, created_at, updated_at, closed_at) VALUES "
                "(:id, 't', 'd', 1, 'biowin', '[]', '[]', '[]', "
                "'service_agreement', 'any', '[\"en\"]', :status, :at, :at, :closed)"
            ),
            {"id": exchange_id, "status": status, "at": BEFORE, "closed": closed_at},
        )


class TestMigrations:
    def test_every_table_exists(self, db: Engine) -> None:
        tables = set(inspect(db).get_table_names())
        assert {
            "cluster",
            "organisation",
            "user",
            "apitoken",
            "exchange",
            "exchangeevent",
            "exchangecandidate",
            "actiontoken",
            "emaillog",
            "surveyresponse",
            "devmessage",
            "signinlink",
            "signinrequest",
            "websession",
            "exchangestage",
        } <= tables

    def test_clusters_are_reference_data(self, session: Session) -> None:
        rows = session.exec(select(Cluster).order_by(Cluster.id)).all()
        assert [(c.id, c.timezone, c.language) for c in rows] == sorted(
            (c.id, c.timezone, c.language) for c in CLUSTERS
        )

    def test_upgrade_twice_changes_nothing(self, db: Engine, session: Session) -> None:
        upgrade_database(db.url.render_as_string(hide_password=False))
        assert len(session.exec(select(Cluster)).all()) == 4


class TestStageBackfill:
    def test_exchanges_of_before_get_one_spell_for_their_stage(
        self, empty_database_url: str
    ) -> None:
        upgrade_database(empty_database_url, revision="0004")
        engine = make_engine(empty_database_url)
        try:
            with engine.begin() as connection:
                insert_exchanges(connection, (1, "matching", None), (2, "closed", AFTER))
            upgrade_database(empty_database_url)
            with Session(engine) as session:
                rows = session.exec(
                    select(ExchangeStage).order_by(col(ExchangeStage.exchange_id))
                ).all()
        finally:
            engine.dispose()
        assert [(r.exchange_id, r.stage, r.waiting_on) for r in rows] == [
            (1, "matching", []),
            (2, "closed", []),
        ]
        assert rows[0].left_at is None and rows[1].left_at == AFTER
        assert rows[0].entered_at == BEFORE


class TestStageRollupBackfill:
    def test_spells_of_before_get_their_hours_and_the_rollup(self, empty_database_url: str) -> None:
        upgrade_database(empty_database_url, revision="0006")
        engine = make_engine(empty_database_url)
        spells = [
            ("vetting", '["home_broker"]', BEFORE, BEFORE + timedelta(hours=30)),
            ("matching", '["home_broker"]', BEFORE + timedelta(hours=30), None),
        ]
        try:
            with engine.begin() as connection:
                insert_exchanges(connection, (1, "matching", None))
                for stage, waiting_on, entered_at, left_at in spells:
                    connection.execute(
                        text(
                            "INSERT INTO exchangestage (exchange_id, stage, waiting_on, "
                            "entered_at, left_at) VALUES (1, :stage, :waiting, :entered, :left)"
                        ),
                        {
                            "stage": stage,
                            "waiting": waiting_on,
                            "entered": entered_at,
                            "left": left_at,
                        },
                    )
            upgrade_database(empty_database_url)
            with Session(engine) as session:
                rows = session.exec(select(ExchangeStage).order_by(col(ExchangeStage.id))).all()
                rollup = session.exec(select(StageRollup)).all()
        finally:
            engine.dispose()
        assert [(r.hours, r.bucket, r.parties) for r in rows] == [
            (30.0, bucket_of(30.0), "home_broker"),
            (None, None, None),
        ]
        assert [(r.stage, r.home_cluster, r.submitted_month, r.left_month) for r in rollup] == [
            ("vetting", "biowin", date(2026, 11, 1), date(2026, 11, 1))
        ]
        figures = StageFigures()
        figures.add_row(rollup[0].stage, rollup[0].durations, rollup[0].waited)
        assert figures.durations["vetting"].percentile(0.5) == 30.0
        assert figures.waited[Party.HOME_BROKER] == 30.0
