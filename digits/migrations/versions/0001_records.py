"""The records: feedback, its tallies for the stats, the dataset's index, the trainer's progress.

Revision ID: 0001
Revises:
Create Date: 2026-12-07 19:10:35.470735
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "drawings",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("label", sa.String(length=4), nullable=False),
        sa.Column("sort_key", sa.String(length=100), nullable=False),
        sa.Column("created", sa.String(length=40), nullable=True),
        sa.Column("source", sa.String(length=16), nullable=True),
        sa.Column("prediction_id", sa.String(length=64), nullable=True),
        sa.Column("deleted", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_drawings")),
    )
    with op.batch_alter_table("drawings", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_drawings_deleted_sort_key"), ["deleted", "sort_key"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_drawings_label_deleted_sort_key"),
            ["label", "deleted", "sort_key"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_drawings_prediction_id"), ["prediction_id"], unique=False
        )

    op.create_table(
        "feedback",
        sa.Column("prediction_id", sa.String(length=64), nullable=False),
        sa.Column("created", sa.String(length=40), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("digit", sa.SmallInteger(), nullable=True),
        sa.Column("consent", sa.Boolean(), nullable=False),
        sa.Column("has_image", sa.Boolean(), nullable=False),
        sa.Column("held_out", sa.Boolean(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("fnn_digit", sa.SmallInteger(), nullable=False),
        sa.Column("cnn_digit", sa.SmallInteger(), nullable=False),
        sa.Column("fnn_version", sa.String(length=40), nullable=False),
        sa.Column("cnn_version", sa.String(length=40), nullable=False),
        sa.PrimaryKeyConstraint("prediction_id", name=op.f("pk_feedback")),
    )
    op.create_table(
        "feedback_tally",
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("net", sa.String(length=8), nullable=False),
        sa.Column("version", sa.String(length=40), nullable=False),
        sa.Column("truth", sa.SmallInteger(), nullable=False),
        sa.Column("said", sa.SmallInteger(), nullable=False),
        sa.Column("answers", sa.Integer(), nullable=False),
        sa.Column("seconds", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint(
            "day", "net", "version", "truth", "said", name=op.f("pk_feedback_tally")
        ),
    )
    op.create_table(
        "trainer_progress",
        sa.Column("net", sa.String(length=8), nullable=False),
        sa.Column("prediction_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("version", sa.String(length=40), nullable=True),
        sa.Column("at", sa.String(length=40), nullable=False),
        sa.PrimaryKeyConstraint("net", "prediction_id", name=op.f("pk_trainer_progress")),
    )


def downgrade() -> None:
    op.drop_table("trainer_progress")
    op.drop_table("feedback_tally")
    op.drop_table("feedback")
    with op.batch_alter_table("drawings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_drawings_prediction_id"))
        batch_op.drop_index(batch_op.f("ix_drawings_label_deleted_sort_key"))
        batch_op.drop_index(batch_op.f("ix_drawings_deleted_sort_key"))

    op.drop_table("drawings")
