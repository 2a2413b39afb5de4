"""`invites guests ...`: import a CSV (streamed, with a progress bar), add rows, list outcomes
and households.

    invites guests import guests.csv            # key: the file's SHA-256 (same file: no-op)
    invites guests rows <import run id> --outcome warning_malformed_phone
    invites guests add --household "Lee" --name "Kim Lee" --phone "+1 202 555 0111" --contact
    invites guests list
    invites guests imports                      # every import run, newest first
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from cli.client import Client
from cli.commands.admin_support import (
    PAGE_SIZE,
    add_command,
    add_group,
    console,
    errors,
    every_page,
    table,
)
from cli.output import enum_name, print_json, timestamp
from common.generated.invites.v1 import admin_pb2 as pb

CHUNK_BYTES = 64 * 1024
IMPORT_DEADLINE_SECONDS = 900.0
PROBLEM_ROWS_SHOWN = 20
OUTCOMES = {
    name.removeprefix("IMPORT_ROW_OUTCOME_").lower(): number
    for name, number in pb.ImportRowOutcome.items()
    if number
}
PROBLEMS = (
    pb.IMPORT_ROW_OUTCOME_WARNING_MALFORMED_PHONE,
    pb.IMPORT_ROW_OUTCOME_SKIPPED_NO_PHONE,
)


def register(commands: Any) -> None:
    """Add `guests import|add|rows|list`."""
    guests = add_group(commands, "guests", "import guests and see households and import outcomes")
    importing = add_command(guests, "import", "import a guest CSV (see docs/guests.md)", run_import)
    importing.add_argument("file", type=Path)
    importing.add_argument(
        "--key",
        default="",
        help="idempotency key (default: the file's SHA-256, so importing it again changes nothing)",
    )
    importing.add_argument("--json", action="store_true", help="print the import run as JSON")

    add = add_command(guests, "add", "add or update one guest (a manual import row)", run_add)
    add.add_argument("--household", default="", help="household name (default: the guest's)")
    add.add_argument("--name", required=True)
    add.add_argument("--phone", required=True)
    add.add_argument("--tag", action="append", default=[], help="repeatable")
    add.add_argument("--side", default="")
    add.add_argument("--language", default="", help="the household's language (es, pt_BR)")
    add.add_argument("--contact", action="store_true", help="the household's designated contact")
    add.add_argument("--key", default="", help="idempotency key (default: derived from the row)")
    add.add_argument("--json", action="store_true", help="print JSON")

    rows = add_command(guests, "rows", "an import run's rows and their outcomes", run_rows)
    rows.add_argument("import_run_id")
    rows.add_argument(
        "--outcome", action="append", choices=sorted(OUTCOMES), default=[], help="repeatable"
    )
    rows.add_argument("--json", action="store_true", help="print JSON lines, one per row")

    imports = add_command(
        guests, "imports", "the workspace's import runs, newest first", run_imports
    )
    imports.add_argument("--json", action="store_true", help="print JSON lines, one per run")

    listing = add_command(guests, "list", "the workspace's households", run_list)
    listing.add_argument("--json", action="store_true", help="print JSON lines, one per household")


def file_key(path: Path) -> str:
    """The file's SHA-256 (read in chunks)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


async def csv_import_requests(
    path: Path, key: str, progress: Progress | None = None, size: int = 0
) -> AsyncIterator[pb.ImportGuestsRequest]:
    """The ImportGuests stream for a CSV file: the header, then chunks (advancing `progress`)."""
    yield pb.ImportGuestsRequest(
        header=pb.ImportHeader(
            idempotency_key=key, source=pb.IMPORT_SOURCE_CSV, file_name=path.name
        )
    )
    task = progress.add_task("uploading", total=size) if progress else None
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            yield pb.ImportGuestsRequest(chunk=chunk)
            if progress is not None and task is not None:
                progress.advance(task, len(chunk))


def show_run(run: pb.ImportRun, created: bool) -> None:
    """The run's counters."""
    state = "imported" if created else "already imported under this key (nothing changed)"
    console.print(f"import run [bold]{run.import_run_id}[/]: {state}")
    table(
        "outcomes",
        ("outcome", "rows"),
        [
            ("created", run.created),
            ("updated", run.updated),
            ("reactivated", run.reactivated),
            ("warning_malformed_phone", run.warning_malformed_phone),
            ("skipped_no_phone", run.skipped_no_phone),
            ("total", run.total_rows),
        ],
    )


async def _show_problems(client: Client, run_id: str) -> None:
    reply = await client.call(
        client.admin.ListImportRows,
        pb.ListImportRowsRequest(
            import_run_id=run_id, outcomes=PROBLEMS, page_size=PROBLEM_ROWS_SHOWN
        ),
    )
    if reply.rows:
        _rows_table("rows needing attention", reply.rows)
    console.print(f"every row: invites guests rows {run_id}")


async def run_import(client: Client, args: argparse.Namespace) -> int:
    """Stream the file to ImportGuests, then show counters and the rows needing attention."""
    path: Path = args.file
    if not await asyncio.to_thread(path.is_file):
        errors.print(f"error: no such file: {path}")
        return 2
    size = (await asyncio.to_thread(path.stat)).st_size
    key = args.key or await asyncio.to_thread(file_key, path)
    if args.json:
        reply = await client.call(
            client.admin.ImportGuests,
            csv_import_requests(path, key, None, size),
            IMPORT_DEADLINE_SECONDS,
        )
        print_json(reply)
        return 0
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn())
    with Progress(*columns, TransferSpeedColumn(), console=errors, transient=True) as progress:
        reply = await client.call(
            client.admin.ImportGuests,
            csv_import_requests(path, key, progress, size),
            IMPORT_DEADLINE_SECONDS,
        )
    show_run(reply.import_run, reply.created)
    await _show_problems(client, reply.import_run.import_run_id)
    return 0


async def run_add(client: Client, args: argparse.Namespace) -> int:
    """UpsertGuests with one manual row."""
    row = pb.GuestRow(
        household=args.household,
        name=args.name,
        phone=args.phone,
        tags=args.tag,
        side=args.side,
        language=args.language,
        is_contact=args.contact,
    )
    key = (
        args.key
        or "manual:" + hashlib.sha256(row.SerializeToString(deterministic=True)).hexdigest()
    )
    reply = await client.call(
        client.admin.UpsertGuests,
        pb.UpsertGuestsRequest(idempotency_key=key, source=pb.IMPORT_SOURCE_MANUAL, rows=[row]),
    )
    if args.json:
        print_json(reply)
        return 0
    show_run(reply.import_run, reply.created)
    await _show_problems(client, reply.import_run.import_run_id)
    return 0


def _rows_table(title: str, rows: Any) -> None:
    table(
        title,
        ("row", "outcome", "phone", "message", "person_id"),
        [
            (
                r.row_number,
                enum_name(pb.ImportRowOutcome, r.outcome),
                r.phone_e164,
                r.message,
                r.person_id,
            )
            for r in rows
        ],
    )


async def run_rows(client: Client, args: argparse.Namespace) -> int:
    """Every row of an import run (all pages), optionally only some outcomes."""
    listed, last = await every_page(
        lambda token: client.call(
            client.admin.ListImportRows,
            pb.ListImportRowsRequest(
                import_run_id=args.import_run_id,
                outcomes=[OUTCOMES[o] for o in args.outcome],
                page_size=PAGE_SIZE,
                page_token=token,
            ),
        ),
        lambda page: page.rows,
        args.json,
    )
    if not args.json:
        run = last.import_run
        console.print(f"import run {run.import_run_id}, finished {timestamp(run.finished_at)}")
        _rows_table("rows", listed)
    return 0


async def run_imports(client: Client, args: argparse.Namespace) -> int:
    """Every import run (all pages), newest first."""
    listed, _ = await every_page(
        lambda token: client.call(
            client.admin.ListImportRuns,
            pb.ListImportRunsRequest(page_size=PAGE_SIZE, page_token=token),
        ),
        lambda page: page.import_runs,
        args.json,
    )
    if not args.json:
        table(
            "import runs",
            (
                "import_run_id",
                "file",
                "source",
                "finished",
                "rows",
                "created",
                "updated",
                "reactivated",
                "malformed",
                "no phone",
            ),
            [
                (
                    r.import_run_id,
                    r.file_name,
                    enum_name(pb.ImportSource, r.source),
                    timestamp(r.finished_at),
                    r.total_rows,
                    r.created,
                    r.updated,
                    r.reactivated,
                    r.warning_malformed_phone,
                    r.skipped_no_phone,
                )
                for r in listed
            ],
        )
    return 0


async def run_list(client: Client, args: argparse.Namespace) -> int:
    """Every household (all pages)."""
    listed, _ = await every_page(
        lambda token: client.call(
            client.admin.ListGuestUnits,
            pb.ListGuestUnitsRequest(page_size=PAGE_SIZE, page_token=token),
        ),
        lambda page: page.guest_units,
        args.json,
    )
    if not args.json:
        table(
            "households",
            (
                "guest_unit_id",
                "name",
                "contact phone",
                "members",
                "tags",
                "side",
                "language",
                "active",
            ),
            [
                (
                    u.guest_unit_id,
                    u.name,
                    u.contact_phone_e164,
                    u.member_count,
                    ";".join(u.tags),
                    u.side,
                    u.preferred_language,
                    "yes" if u.active else "no",
                )
                for u in listed
            ],
        )
    return 0
