"""index for the completion-estimate history: the newest COMPLETED jobs of a type

Revision ID: 0003
Revises: 0002

Every start reads the last ETA_HISTORY_JOBS completed jobs of its type (api.launch.completed_history);
without this index that read sorts every completed job of the type.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_ps_type_completed",
        "processing_states",
        ["type", sa.literal_column("completed_at DESC")],
        unique=False,
        postgresql_where=sa.text("status = 'COMPLETED'"),
    )


def downgrade() -> None:
    op.drop_index("ix_ps_type_completed", table_name="processing_states")
