from sqlalchemy import Engine, inspect
from sqlmodel import Session, select

from ce4big.db import upgrade_database
from ce4big.domain import CLUSTERS
from ce4big.models import Cluster


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
        } <= tables

    def test_clusters_are_reference_data(self, session: Session) -> None:
        rows = session.exec(select(Cluster).order_by(Cluster.id)).all()
        assert [(c.id, c.timezone, c.language) for c in rows] == sorted(
            (c.id, c.timezone, c.language) for c in CLUSTERS
        )

    def test_upgrade_twice_changes_nothing(self, db: Engine, session: Session) -> None:
        upgrade_database(db.url.render_as_string(hide_password=False))
        assert len(session.exec(select(Cluster)).all()) == 4
