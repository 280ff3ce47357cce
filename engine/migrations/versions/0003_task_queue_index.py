"""task queue: open, unclaimed tasks in due order; candidate rows know whether the task is claimed

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_tasks_queue", "tasks", ["status", "assignee", "due_at"])
    with op.batch_alter_table("task_candidates") as batch:
        batch.add_column(sa.Column("claimed", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.execute("UPDATE task_candidates SET claimed = (SELECT tasks.assignee IS NOT NULL FROM tasks "
               "WHERE tasks.id = task_candidates.task_id)")
    op.create_index("ix_task_candidates_queue", "task_candidates", ["kind", "ident", "claimed", "task_id"])


def downgrade() -> None:
    op.drop_index("ix_task_candidates_queue", table_name="task_candidates")
    with op.batch_alter_table("task_candidates") as batch:
        batch.drop_column("claimed")
    op.drop_index("ix_tasks_queue", table_name="tasks")
