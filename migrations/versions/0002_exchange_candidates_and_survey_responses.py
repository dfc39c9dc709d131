"""exchange candidates and survey responses

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 23:54:18.833628
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "exchangecandidate",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("exchange_id", sa.Integer(), nullable=False),
        sa.Column("organisation_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("shortlist_position", sa.Integer(), nullable=True),
        sa.Column("host_decision", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
        sa.Column("intro_status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
        sa.Column("intro_reason", sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=True),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["exchange_id"],
            ["exchange.id"],
        ),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisation.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("exchange_id", "organisation_id"),
    )
    with op.batch_alter_table("exchangecandidate", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_exchangecandidate_exchange_id"), ["exchange_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_exchangecandidate_intro_status"), ["intro_status"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_exchangecandidate_organisation_id"), ["organisation_id"], unique=False
        )

    op.create_table(
        "surveyresponse",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("exchange_id", sa.Integer(), nullable=False),
        sa.Column("respondent", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("wave", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("outcome", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("satisfaction", sa.Integer(), nullable=True),
        sa.Column("recommend", sa.Integer(), nullable=True),
        sa.Column("agreement_type", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
        sa.Column("comment", sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
        sa.Column("at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["exchange_id"],
            ["exchange.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("exchange_id", "respondent", "wave"),
    )
    with op.batch_alter_table("surveyresponse", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_surveyresponse_exchange_id"), ["exchange_id"], unique=False
        )

    with op.batch_alter_table("exchange", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("result", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True)
        )
        batch_op.add_column(
            sa.Column("agreement_type", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("exchange", schema=None) as batch_op:
        batch_op.drop_column("agreement_type")
        batch_op.drop_column("result")

    with op.batch_alter_table("surveyresponse", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_surveyresponse_exchange_id"))

    op.drop_table("surveyresponse")
    with op.batch_alter_table("exchangecandidate", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_exchangecandidate_organisation_id"))
        batch_op.drop_index(batch_op.f("ix_exchangecandidate_intro_status"))
        batch_op.drop_index(batch_op.f("ix_exchangecandidate_exchange_id"))

    op.drop_table("exchangecandidate")
