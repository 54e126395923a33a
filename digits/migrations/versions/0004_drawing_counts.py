"""The drawings per label as a table; the gallery's indexes hold the name.

The counts and the gallery's totals counted the index on every request (a scan of every row),
and a deep gallery page read every row its OFFSET skipped. Now the counts are kept as drawings
are added and deleted, and a page's OFFSET steps over index entries alone.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07 22:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

OLD_INDEXES = {
    "ix_drawings_deleted_sort_key": ["deleted", "sort_key"],
    "ix_drawings_label_deleted_sort_key": ["label", "deleted", "sort_key"],
}
NEW_INDEXES = {
    "ix_drawings_deleted_sort_key_name": ["deleted", "sort_key", "name"],
    "ix_drawings_label_deleted_sort_key_name": ["label", "deleted", "sort_key", "name"],
}


def upgrade() -> None:
    counts = op.create_table(
        "drawing_counts",
        sa.Column("label", sa.String(length=4), nullable=False),
        sa.Column("drawings", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("label", name=op.f("pk_drawing_counts")),
    )
    drawings = sa.table("drawings", sa.column("label"), sa.column("deleted", sa.Boolean))
    shown = sa.select(drawings.c.label, sa.func.count()).where(drawings.c.deleted.is_(False))
    op.execute(counts.insert().from_select(["label", "drawings"], shown.group_by("label")))
    swap_indexes(drop=OLD_INDEXES, create=NEW_INDEXES)


def downgrade() -> None:
    swap_indexes(drop=NEW_INDEXES, create=OLD_INDEXES)
    op.drop_table("drawing_counts")


def swap_indexes(drop: dict, create: dict) -> None:
    with op.batch_alter_table("drawings", schema=None) as batch_op:
        for name in drop:
            batch_op.drop_index(name)
        for name, columns in create.items():
            batch_op.create_index(name, columns, unique=False)
