"""report tallies: the facts the funnel, the cluster matrix and the outcomes count, and their
monthly tallies

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 23:40:00.000000

Measured with bench/reports.py at 100,000 exchanges: the funnel, the matrix and the outcomes read
1.7 million timeline events and every survey answer per request; with the tallies, a few thousand
rows and the facts of one month. The backfill runs the product's own code (ce4big/tallies.py): a
later change of the facts brings its own migration that rebuilds them.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

from ce4big.tallies import rebuild

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "reportfact",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("exchange_id", sa.Integer(), nullable=False),
        sa.Column("fact", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("home_cluster", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("partner_cluster", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("submitted_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["exchange_id"], ["exchange.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("reportfact", schema=None) as batch_op:
        batch_op.create_index(
            "ix_reportfact_at_fact",
            ["at", "fact", "home_cluster", "partner_cluster", "submitted_at", "value"],
            unique=False,
        )
        batch_op.create_index(
            "ix_reportfact_submitted_at_at",
            ["submitted_at", "at", "fact", "home_cluster", "partner_cluster", "value"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_reportfact_exchange_id"), ["exchange_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_reportfact_source"), ["source"], unique=False)
    op.create_table(
        "reporttally",
        sa.Column("fact", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
        sa.Column("home_cluster", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("partner_cluster", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("submitted_month", sa.Date(), nullable=False),
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("total", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint(
            "fact", "home_cluster", "partner_cluster", "submitted_month", "month"
        ),
    )
    rebuild(op.get_bind())


def downgrade() -> None:
    op.drop_table("reporttally")
    with op.batch_alter_table("reportfact", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reportfact_source"))
        batch_op.drop_index(batch_op.f("ix_reportfact_exchange_id"))
        batch_op.drop_index("ix_reportfact_submitted_at_at")
        batch_op.drop_index("ix_reportfact_at_fact")
    op.drop_table("reportfact")
