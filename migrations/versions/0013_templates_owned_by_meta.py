"""templates owned by Meta: the workspace's WABA id, synced template fields, events where/when

* workspace.waba_id: the WhatsApp Business Account whose templates SyncTemplates reads.
* invite_send_run.send_plan: the header, parameter format and buttons its messages send.
* event: an IANA time zone (template dates and times are written in it; existing events UTC),
  an address and coordinates (both or neither).
* template: source (meta | manual), Meta's template id, quality, parameter format, the
  components as Meta describes them, the category before a recategorisation, the reason of the
  last status change, a recategorisation Meta announced, when it was last synced, when a sync
  stopped finding it on Meta, and Meta's time of the last template webhook applied per field.

Revision ID: 0013
Revises: 0011
Create Date: 2026-12-04 19:15:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0013"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("workspace", sa.Column("waba_id", sa.Text(), nullable=True))
    op.add_column(
        "invite_send_run",
        sa.Column(
            "send_plan",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default="{}",
            nullable=False,
        ),
    )
    op.add_column("event", sa.Column("time_zone", sa.Text(), server_default="UTC", nullable=False))
    op.add_column("event", sa.Column("address", sa.Text(), server_default="", nullable=False))
    op.add_column("event", sa.Column("latitude", sa.Double(), nullable=True))
    op.add_column("event", sa.Column("longitude", sa.Double(), nullable=True))
    op.create_check_constraint(
        op.f("ck_event_coordinates_paired"), "event", "(latitude IS NULL) = (longitude IS NULL)"
    )
    op.create_check_constraint(
        op.f("ck_event_latitude_range"), "event", "latitude BETWEEN -90 AND 90"
    )
    op.create_check_constraint(
        op.f("ck_event_longitude_range"), "event", "longitude BETWEEN -180 AND 180"
    )
    op.add_column(
        "template", sa.Column("source", sa.Text(), server_default="manual", nullable=False)
    )
    op.add_column("template", sa.Column("meta_template_id", sa.Text(), nullable=True))
    op.add_column("template", sa.Column("quality", sa.Text(), nullable=True))
    op.add_column(
        "template",
        sa.Column("parameter_format", sa.Text(), server_default="positional", nullable=False),
    )
    op.add_column(
        "template",
        sa.Column(
            "components",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default="[]",
            nullable=False,
        ),
    )
    op.add_column("template", sa.Column("previous_category", sa.Text(), nullable=True))
    op.add_column("template", sa.Column("pending_category", sa.Text(), nullable=True))
    op.add_column("template", sa.Column("status_reason", sa.Text(), nullable=True))
    op.add_column(
        "template",
        sa.Column(
            "webhook_times",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default="{}",
            nullable=False,
        ),
    )
    op.add_column("template", sa.Column("synced_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column(
        "template", sa.Column("deleted_on_meta_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.create_check_constraint(
        op.f("ck_template_source_valid"), "template", "source IN ('meta', 'manual')"
    )
    op.create_check_constraint(
        op.f("ck_template_parameter_format_valid"),
        "template",
        "parameter_format IN ('positional', 'named')",
    )
    op.create_index(
        op.f("ix_template_workspace_id_template_meta_template_id"),
        "template",
        ["workspace_id", "meta_template_id"],
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_template_workspace_id_template_meta_template_id"), table_name="template")
    op.drop_constraint(op.f("ck_template_parameter_format_valid"), "template", type_="check")
    op.drop_constraint(op.f("ck_template_source_valid"), "template", type_="check")
    for column in (
        "deleted_on_meta_at",
        "synced_at",
        "webhook_times",
        "status_reason",
        "pending_category",
        "previous_category",
        "components",
        "parameter_format",
        "quality",
        "meta_template_id",
        "source",
    ):
        op.drop_column("template", column)
    for name in ("longitude_range", "latitude_range", "coordinates_paired"):
        op.drop_constraint(op.f(f"ck_event_{name}"), "event", type_="check")
    for column in ("longitude", "latitude", "address", "time_zone"):
        op.drop_column("event", column)
    op.drop_column("invite_send_run", "send_plan")
    op.drop_column("workspace", "waba_id")
