"""Guest tables: one key check per row and person, in the row's own workspace.

Importing 100,000 rows ran about 950,000 key checks (a `SELECT ... FOR KEY SHARE` each, 7-10 µs
on the bench machine): two thirds of what Postgres spent storing the rows. Measured on the COPY of
one import's rows into an empty schema (the import bench's ceiling), 8.8-11.4 s with every key,
3.8 s with none.

* `guest_identity`, `guest_unit_membership` and `guest_unit` (its contact) named their person
  and their workspace with two keys, which let the two differ. They now name the person by
  `(workspace_id, person_id)`: one check, and the person must be in the row's workspace.
  `person`'s index on `workspace_id` becomes `UNIQUE (workspace_id, id)`, which those keys need
  and which serves the same lookups.
* `import_row` (the import's log of what it did with each input row) loses its keys to
  `import_run` and `person`: the import writes it in the one transaction that inserts its run and
  writes the person it names, and neither runs nor people are ever deleted (as for
  `precheck_candidate` in 0009; `ON DELETE CASCADE` from the run never fired).
* The roots keep theirs: `person` and `guest_unit` to `workspace`, `guest_unit_membership` and
  `guest_unit_tag` to `guest_unit`, `guest_unit_tag` to `tag`.
* The keys among the rows an import writes are `DEFERRABLE INITIALLY IMMEDIATE`: every writer
  checks them as its statement ends, as before, but the import, which defers them and checks a
  batch's while it plans the next (`GUEST_KEYS` in dispatch_service/persistence/guests.py).

About 395,000 checks fewer per 100,000-row import (from about 950,000 to 555,000).

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-07 02:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PERSON_INDEX = "ix_person_workspace_id"
PERSON_KEY = "uq_person_workspace_id_id"
# table -> (its person column, the single-column keys the composite one replaces)
CHILDREN = {
    "guest_identity": (
        "person_id",
        {
            "fk_guest_identity_person_id_person": ("person_id", "person"),
            "fk_guest_identity_workspace_id_workspace": ("workspace_id", "workspace"),
        },
    ),
    "guest_unit_membership": (
        "person_id",
        {
            "fk_guest_unit_membership_person_id_person": ("person_id", "person"),
            "fk_guest_unit_membership_workspace_id_workspace": ("workspace_id", "workspace"),
        },
    ),
    "guest_unit": (
        "contact_person_id",
        {"fk_guest_unit_contact_person_id_person": ("contact_person_id", "person")},
    ),
}
# The other keys among the rows an import writes (name -> table): made deferrable, still checked
# as each statement ends unless a transaction defers them (GUEST_KEYS in
# dispatch_service/persistence/guests.py).
OTHER_GUEST_KEYS = {
    "fk_person_workspace_id_workspace": "person",
    "fk_guest_unit_workspace_id_workspace": "guest_unit",
    "fk_guest_unit_membership_guest_unit_id_guest_unit": "guest_unit_membership",
    "fk_guest_unit_tag_guest_unit_id_guest_unit": "guest_unit_tag",
    "fk_guest_unit_tag_tag_id_tag": "guest_unit_tag",
}
IMPORT_ROW_KEYS = {
    "fk_import_row_import_run_id_import_run": ("import_run_id", "import_run", "CASCADE"),
    "fk_import_row_person_id_person": ("person_id", "person", None),
}


def upgrade() -> None:
    op.create_unique_constraint(PERSON_KEY, "person", ["workspace_id", "id"])
    op.drop_index(PERSON_INDEX, "person")
    for table, (column, replaced) in CHILDREN.items():
        for name in replaced:
            op.drop_constraint(name, table, type_="foreignkey")
        op.create_foreign_key(
            f"fk_{table}_workspace_id_person",
            table,
            "person",
            ["workspace_id", column],
            ["workspace_id", "id"],
            deferrable=True,
            initially="IMMEDIATE",
        )
    for name, table in OTHER_GUEST_KEYS.items():
        op.execute(f"ALTER TABLE {table} ALTER CONSTRAINT {name} DEFERRABLE INITIALLY IMMEDIATE")
    for name in IMPORT_ROW_KEYS:
        op.drop_constraint(name, "import_row", type_="foreignkey")


def downgrade() -> None:
    for name, table in OTHER_GUEST_KEYS.items():
        op.execute(f"ALTER TABLE {table} ALTER CONSTRAINT {name} NOT DEFERRABLE")
    for name, (column, target, ondelete) in IMPORT_ROW_KEYS.items():
        op.create_foreign_key(name, "import_row", target, [column], ["id"], ondelete=ondelete)
    for table, (_column, replaced) in CHILDREN.items():
        op.drop_constraint(f"fk_{table}_workspace_id_person", table, type_="foreignkey")
        for name, (column, target) in replaced.items():
            op.create_foreign_key(name, table, target, [column], ["id"])
    op.create_index(PERSON_INDEX, "person", ["workspace_id"])
    op.drop_constraint(PERSON_KEY, "person", type_="unique")
