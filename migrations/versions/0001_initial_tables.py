"""initial tables

Revision ID: 0001
Revises:
Create Date: 2026-11-27 23:51:38.542391
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    cluster = op.create_table(
        "cluster",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("city", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("country", sqlmodel.sql.sqltypes.AutoString(length=2), nullable=False),
        sa.Column("timezone", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("language", sqlmodel.sql.sqltypes.AutoString(length=5), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    # The four CE4BIG clusters are reference data, present from the first revision on.
    op.bulk_insert(
        cluster,
        [
            {
                "id": "atlanpole",
                "name": "Atlanpole Biotherapies",
                "city": "Nantes",
                "country": "FR",
                "timezone": "Europe/Paris",
                "language": "fr",
            },
            {
                "id": "biowin",
                "name": "BioWin",
                "city": "Wallonia",
                "country": "BE",
                "timezone": "Europe/Brussels",
                "language": "fr",
            },
            {
                "id": "biom",
                "name": "BioM",
                "city": "Martinsried/Munich",
                "country": "DE",
                "timezone": "Europe/Berlin",
                "language": "de",
            },
            {
                "id": "klsk",
                "name": "Klaster LifeScience Kraków",
                "city": "Kraków",
                "country": "PL",
                "timezone": "Europe/Warsaw",
                "language": "pl",
            },
        ],
    )
    op.create_table(
        "devmessage",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("received_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("mail_from", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column("recipients", sa.JSON(), nullable=False),
        sa.Column("subject", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column("message_id", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column("raw", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "organisation",
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("cluster_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("country", sqlmodel.sql.sqltypes.AutoString(length=2), nullable=False),
        sa.Column("city", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("website", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("accepting_new_projects", sa.Boolean(), nullable=False),
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("services", sa.JSON(), nullable=False),
        sa.Column("technologies", sa.JSON(), nullable=False),
        sa.Column("therapeutic_areas", sa.JSON(), nullable=False),
        sa.Column("modalities", sa.JSON(), nullable=False),
        sa.Column("stages", sa.JSON(), nullable=False),
        sa.Column("certifications", sa.JSON(), nullable=False),
        sa.Column("languages", sa.JSON(), nullable=False),
        sa.Column("contact_name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("contact_email", sqlmodel.sql.sqltypes.AutoString(length=254), nullable=False),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["cluster_id"],
            ["cluster.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("organisation", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_organisation_cluster_id"), ["cluster_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_organisation_kind"), ["kind"], unique=False)
        batch_op.create_index(batch_op.f("ix_organisation_name"), ["name"], unique=False)

    op.create_table(
        "user",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sqlmodel.sql.sqltypes.AutoString(length=254), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("role", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("cluster_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.Column("organisation_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("language", sqlmodel.sql.sqltypes.AutoString(length=5), nullable=True),
        sa.Column("timezone", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["cluster_id"],
            ["cluster.id"],
        ),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisation.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("user", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_user_email"), ["email"], unique=True)
        batch_op.create_index(
            batch_op.f("ix_user_organisation_id"), ["organisation_id"], unique=False
        )

    op.create_table(
        "apitoken",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("expires_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("last_used_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("revoked_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["user.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("apitoken", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_apitoken_token_hash"), ["token_hash"], unique=True)
        batch_op.create_index(batch_op.f("ix_apitoken_user_id"), ["user_id"], unique=False)

    op.create_table(
        "exchange",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("title", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("requester_id", sa.Integer(), nullable=False),
        sa.Column("organisation_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("home_cluster", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("target_clusters", sa.JSON(), nullable=False),
        sa.Column("partner_kinds", sa.JSON(), nullable=False),
        sa.Column("required_certifications", sa.JSON(), nullable=False),
        sa.Column("cooperation_type", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("meeting_format", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("languages", sa.JSON(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("outcome", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.Column("workflow_id", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
        sa.Column("idempotency_key", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("closed_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["home_cluster"],
            ["cluster.id"],
        ),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisation.id"],
        ),
        sa.ForeignKeyConstraint(
            ["requester_id"],
            ["user.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("requester_id", "idempotency_key"),
        # An exchange id names its workflow for ever: SQLite must never hand it out again.
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("exchange", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_exchange_created_at"), ["created_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_exchange_home_cluster"), ["home_cluster"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_exchange_requester_id"), ["requester_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_exchange_status"), ["status"], unique=False)

    op.create_table(
        "actiontoken",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("issue_key", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("exchange_id", sa.Integer(), nullable=False),
        sa.Column("recipient", sqlmodel.sql.sqltypes.AutoString(length=254), nullable=False),
        sa.Column("action", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("expires_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("used_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("revoked_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["exchange_id"],
            ["exchange.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("issue_key"),
    )
    with op.batch_alter_table("actiontoken", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_actiontoken_exchange_id"), ["exchange_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_actiontoken_token_hash"), ["token_hash"], unique=True)

    op.create_table(
        "emaillog",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("exchange_id", sa.Integer(), nullable=True),
        sa.Column("recipient", sqlmodel.sql.sqltypes.AutoString(length=254), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("language", sqlmodel.sql.sqltypes.AutoString(length=5), nullable=False),
        sa.Column("subject", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column("message_id", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("sent_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["exchange_id"],
            ["exchange.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("emaillog", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_emaillog_exchange_id"), ["exchange_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_emaillog_idempotency_key"), ["idempotency_key"], unique=True
        )

    op.create_table(
        "exchangeevent",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("exchange_id", sa.Integer(), nullable=False),
        sa.Column("event_key", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("actor", sqlmodel.sql.sqltypes.AutoString(length=254), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["exchange_id"],
            ["exchange.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_key"),
    )
    with op.batch_alter_table("exchangeevent", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_exchangeevent_exchange_id"), ["exchange_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("exchangeevent", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_exchangeevent_exchange_id"))

    op.drop_table("exchangeevent")
    with op.batch_alter_table("emaillog", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_emaillog_idempotency_key"))
        batch_op.drop_index(batch_op.f("ix_emaillog_exchange_id"))

    op.drop_table("emaillog")
    with op.batch_alter_table("actiontoken", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_actiontoken_token_hash"))
        batch_op.drop_index(batch_op.f("ix_actiontoken_exchange_id"))

    op.drop_table("actiontoken")
    with op.batch_alter_table("exchange", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_exchange_status"))
        batch_op.drop_index(batch_op.f("ix_exchange_requester_id"))
        batch_op.drop_index(batch_op.f("ix_exchange_home_cluster"))
        batch_op.drop_index(batch_op.f("ix_exchange_created_at"))

    op.drop_table("exchange")
    with op.batch_alter_table("apitoken", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_apitoken_user_id"))
        batch_op.drop_index(batch_op.f("ix_apitoken_token_hash"))

    op.drop_table("apitoken")
    with op.batch_alter_table("user", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_user_organisation_id"))
        batch_op.drop_index(batch_op.f("ix_user_email"))

    op.drop_table("user")
    with op.batch_alter_table("organisation", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_organisation_name"))
        batch_op.drop_index(batch_op.f("ix_organisation_kind"))
        batch_op.drop_index(batch_op.f("ix_organisation_cluster_id"))

    op.drop_table("organisation")
    op.drop_table("devmessage")
    op.drop_table("cluster")
