"""`ce4big catalogue ...` commands."""

import json
import sys
from dataclasses import asdict
from pathlib import Path

from sqlmodel import Session

from ce4big.catalogue.csvio import CatalogueInvalid, parse_catalogue_csv, write_catalogue_csv
from ce4big.catalogue.matching import rank_candidates, request_from_json
from ce4big.catalogue.store import export_rows, refresh_profiles, upsert_organisations
from ce4big.catalogue.vocabulary import VOCABULARY_VERSION
from ce4big.db import make_engine, session_scope
from ce4big.errors import Invalid
from ce4big.settings import Settings


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
    engine = make_engine(settings.database_url)
    try:
        with session_scope(engine) as session:
            created, updated = upsert_organisations(session=session, rows=rows)
    finally:
        engine.dispose()
    print(f"{path}: {len(rows)} rows, {created} created, {updated} updated")
    return 0


def export_command(*, settings: Settings, path: Path | None) -> int:
    engine = make_engine(settings.database_url)
    try:
        with session_scope(engine) as session:
            rows = list(export_rows(session=session))
    finally:
        engine.dispose()
    text = write_catalogue_csv(rows)
    if path is None:
        sys.stdout.write(text)
    else:
        path.write_text(text, encoding="utf-8")
        print(f"{path}: {len(rows)} organisations written", file=sys.stderr)
    return 0


def reindex_command(*, settings: Settings) -> int:
    engine = make_engine(settings.database_url)
    try:
        with session_scope(engine) as session:
            count = refresh_profiles(session=session)
    finally:
        engine.dispose()
    print(f"{count} catalogue entries profiled again with vocabulary {VOCABULARY_VERSION}")
    return 0


def match_command(*, settings: Settings, path: Path, top: int, as_json: bool) -> int:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        print(f"ce4big: error: cannot read {path}: {exc.strerror}", file=sys.stderr)
        return 1
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        print(f"ce4big: error: {path}: not a JSON request: {exc}", file=sys.stderr)
        return 1
    try:
        request = request_from_json(data)
    except Invalid as exc:
        print(f"ce4big: error: {path}: {exc.message}", file=sys.stderr)
        return 1
    engine = make_engine(settings.database_url)
    try:
        with Session(engine) as session:
            candidates = rank_candidates(
                session=session, request=request, top=top, settings=settings
            )
    finally:
        engine.dispose()
    if as_json:
        print(json.dumps([asdict(c) for c in candidates], ensure_ascii=False, indent=2))
        return 0
    if not candidates:
        print("no organisation passes the hard filters with any relevance")
    for rank, candidate in enumerate(candidates, start=1):
        print(f"{rank:>2}. {candidate.organisation_id}  {candidate.score:.4f}")
        for reason in candidate.reasons:
            print(f"      - {reason}")
    return 0
