"""report indexes: the steps reached, open spells by deadline, a cluster's period, partners

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 20:30:00.000000

Measured with bench/reports.py at 100,000 exchanges: the funnel reads the step events from
(kind, exchange_id, at) alone. Three single-column indexes become the first column of a
composite one, so each transition still updates as many indexes as before.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("exchangeevent", schema=None) as batch_op:
        batch_op.create_index(
            "ix_exchangeevent_kind_exchange_id_at", ["kind", "exchange_id", "at"], unique=False
        )
    with op.batch_alter_table("exchangestage", schema=None) as batch_op:
        batch_op.drop_index("ix_exchangestage_left_at")
        batch_op.create_index(
            "ix_exchangestage_left_at_deadline_at", ["left_at", "deadline_at"], unique=False
        )
    with op.batch_alter_table("exchange", schema=None) as batch_op:
        batch_op.drop_index("ix_exchange_home_cluster")
        batch_op.create_index(
            "ix_exchange_home_cluster_created_at", ["home_cluster", "created_at"], unique=False
        )
    with op.batch_alter_table("exchangecandidate", schema=None) as batch_op:
        batch_op.drop_index("ix_exchangecandidate_intro_status")
        batch_op.create_index(
            "ix_exchangecandidate_intro_status_exchange_id_organisation_id",
            ["intro_status", "exchange_id", "organisation_id"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("exchangecandidate", schema=None) as batch_op:
        batch_op.drop_index("ix_exchangecandidate_intro_status_exchange_id_organisation_id")
        batch_op.create_index("ix_exchangecandidate_intro_status", ["intro_status"], unique=False)
    with op.batch_alter_table("exchange", schema=None) as batch_op:
        batch_op.drop_index("ix_exchange_home_cluster_created_at")
        batch_op.create_index("ix_exchange_home_cluster", ["home_cluster"], unique=False)
    with op.batch_alter_table("exchangestage", schema=None) as batch_op:
        batch_op.drop_index("ix_exchangestage_left_at_deadline_at")
        batch_op.create_index("ix_exchangestage_left_at", ["left_at"], unique=False)
    with op.batch_alter_table("exchangeevent", schema=None) as batch_op:
        batch_op.drop_index("ix_exchangeevent_kind_exchange_id_at")
