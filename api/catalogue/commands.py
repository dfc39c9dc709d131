"""`ce4big catalogue ...` commands."""

import sys
from pathlib import Path

from api.catalogue.csvio import CatalogueInvalid, parse_catalogue_csv, write_catalogue_csv
from api.catalogue.store import export_rows, upsert_organisations
from api.config import Settings
from api.db import make_engine, session_scope


def import_command(*, settings: Settings, path: Path) -> int:
    try:
        data = path.read_bytes()
    except OSError as exc:
        print(f"ce4big: error: cannot read {path}: {exc.strerror}", file=sys.stderr)
        return 1
    try:
        rows = parse_catalogue_csv(data)
    except CatalogueInvalid as exc:
        print(
            f"ce4big: error: {path}: {len(exc.errors)} error(s), nothing imported", file=sys.stderr
        )
        for error in exc.errors:
            print(f"{path}:{error.line}: {error.field}: {error.reason}", file=sys.stderr)
        return 1
    with session_scope(make_engine(settings.database_url)) as session:
        created, updated = upsert_organisations(session=session, rows=rows)
    print(f"{path}: {len(rows)} rows, {created} created, {updated} updated")
    return 0


def export_command(*, settings: Settings, path: Path | None) -> int:
    with session_scope(make_engine(settings.database_url)) as session:
        rows = list(export_rows(session=session))
    text = write_catalogue_csv(rows)
    if path is None:
        sys.stdout.write(text)
    else:
        path.write_text(text, encoding="utf-8")
        print(f"{path}: {len(rows)} organisations written", file=sys.stderr)
    return 0
