"""Catalogue rows in the database, with the matcher's profile of each one kept beside it."""

import json
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import JSON, Table, bindparam, case, delete, insert, select, update
from sqlmodel import Session

from ce4big.catalogue.csvio import LIST_FIELDS, CatalogueRow
from ce4big.catalogue.profile import organisation_profiles
from ce4big.catalogue.vocabulary import VOCABULARY_VERSION
from ce4big.domain import CLUSTERS
from ce4big.models import Organisation, OrganisationProfile, utcnow

ORGANISATIONS = Organisation.__table__  # type: ignore[attr-defined]
PROFILES = OrganisationProfile.__table__  # type: ignore[attr-defined]
# Large imports go through in statements of this many rows (and SQLite's variable limit).
CHUNK = 500
VALUE_COLUMNS = (
    "name",
    "cluster_id",
    "kind",
    "country",
    "city",
    "website",
    "description",
    "contact_name",
    "contact_email",
    "accepting_new_projects",
    *LIST_FIELDS,
)


def organisation_values(row: CatalogueRow) -> dict[str, Any]:
    values: dict[str, Any] = {
        "name": row.name,
        "cluster_id": row.cluster,
        "kind": row.kind,
        "country": row.country,
        "city": row.city,
        "website": row.website,
        "description": row.description,
        "contact_name": row.contact_name,
        "contact_email": row.contact_email,
        "accepting_new_projects": row.accepting_new_projects,
    }
    values.update({name: getattr(row, name) for name in LIST_FIELDS})
    return values


def upsert_organisations(*, session: Session, rows: Sequence[CatalogueRow]) -> tuple[int, int]:
    """Insert new ids, update changed ones, refresh their profiles; returns (created, updated).
    The caller commits, so a failure leaves nothing half-imported."""
    ids = [row.id for row in rows]
    existing: dict[str, dict[str, Any]] = {}
    fresh_profiles: set[str] = set()
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        found = session.execute(
            select(ORGANISATIONS.c.id, *(ORGANISATIONS.c[name] for name in VALUE_COLUMNS)).where(
                ORGANISATIONS.c.id.in_(chunk)
            )
        )
        existing.update((r.id, dict(r._mapping)) for r in found)
        profiled = session.execute(
            select(PROFILES.c.organisation_id)
            .join(ORGANISATIONS, ORGANISATIONS.c.id == PROFILES.c.organisation_id)
            .where(
                PROFILES.c.organisation_id.in_(chunk),
                PROFILES.c.vocabulary_version == VOCABULARY_VERSION,
                PROFILES.c.source_updated_at == ORGANISATIONS.c.updated_at,
            )
        )
        fresh_profiles.update(profiled.scalars())

    now = utcnow()
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    to_profile: list[dict[str, Any]] = []
    stale: list[str] = []
    for row in rows:
        values = organisation_values(row)
        current = existing.get(row.id)
        if current is None:
            inserts.append({"id": row.id, "updated_at": now, **values})
        elif any(current[name] != value for name, value in values.items()):
            updates.append(
                {"b_id": row.id, "v_updated_at": now, **{f"v_{k}": v for k, v in values.items()}}
            )
        elif row.id in fresh_profiles:
            continue
        else:
            # Unchanged, but read with an older vocabulary: profile it again, keep its timestamp.
            stale.append(row.id)
            continue
        to_profile.append({**values, "id": row.id})
    profiles = [
        {
            "organisation_id": values["id"],
            "vocabulary_version": VOCABULARY_VERSION,
            "source_updated_at": now,
            "terms": terms,
        }
        for values, terms in zip(to_profile, organisation_profiles(to_profile), strict=True)
    ]

    _insert_many(session=session, table=ORGANISATIONS, rows=inserts)
    if updates:
        statement = (
            update(ORGANISATIONS)
            .where(ORGANISATIONS.c.id == bindparam("b_id"))
            .values({name: bindparam(f"v_{name}") for name in ("updated_at", *VALUE_COLUMNS)})
        )
        session.connection().execute(statement, updates)
    if stale:
        profiles.extend(_stale_profiles(session=session, ids=stale))
    _replace_profiles(session=session, profiles=profiles, known=set(existing))
    return len(inserts), len(updates)


def _stale_profiles(*, session: Session, ids: list[str]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for start in range(0, len(ids), CHUNK):
        found = session.execute(
            select(ORGANISATIONS).where(ORGANISATIONS.c.id.in_(ids[start : start + CHUNK]))
        )
        rows.extend(dict(row._mapping) for row in found)
    return [
        {
            "organisation_id": values["id"],
            "vocabulary_version": VOCABULARY_VERSION,
            "source_updated_at": values["updated_at"],
            "terms": terms,
        }
        for values, terms in zip(rows, organisation_profiles(rows), strict=True)
    ]


def _replace_profiles(
    *, session: Session, profiles: list[dict[str, Any]], known: set[str] | None = None
) -> None:
    """Write profiles, dropping the previous ones first (of `known` ids only, when given: a
    new organisation has none)."""
    stale = [p["organisation_id"] for p in profiles]
    if known is not None:
        stale = [ident for ident in stale if ident in known]
    for start in range(0, len(stale), CHUNK):
        session.execute(
            delete(PROFILES).where(PROFILES.c.organisation_id.in_(stale[start : start + CHUNK]))
        )
    _insert_many(session=session, table=PROFILES, rows=profiles)


def _insert_many(*, session: Session, table: Table, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    if session.get_bind().dialect.name != "postgresql":
        for start in range(0, len(rows), CHUNK):
            session.execute(insert(table), rows[start : start + CHUNK])
        return
    # COPY is several times faster than batched INSERTs for a large import; it runs on the
    # session's own connection, so it belongs to the same transaction.
    columns = list(rows[0])
    json_columns = {c for c in columns if isinstance(table.c[c].type, JSON)}
    quote = session.get_bind().dialect.identifier_preparer.quote
    statement = f"COPY {quote(table.name)} ({', '.join(quote(c) for c in columns)}) FROM STDIN"
    driver = session.connection().connection.driver_connection
    assert driver is not None
    with driver.cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row([json.dumps(row[c]) if c in json_columns else row[c] for c in columns])


def refresh_profiles(*, session: Session) -> int:
    """Profile again every organisation whose profile is missing or stale; returns how many."""
    stale = session.execute(
        select(ORGANISATIONS.c.id)
        .outerjoin(PROFILES, PROFILES.c.organisation_id == ORGANISATIONS.c.id)
        .where(
            (PROFILES.c.organisation_id.is_(None))
            | (PROFILES.c.vocabulary_version != VOCABULARY_VERSION)
            | (PROFILES.c.source_updated_at != ORGANISATIONS.c.updated_at)
        )
        .order_by(ORGANISATIONS.c.id)
    )
    ids = list(stale.scalars())
    _replace_profiles(session=session, profiles=_stale_profiles(session=session, ids=ids))
    return len(ids)


def export_rows(*, session: Session) -> Iterator[dict[str, Any]]:
    """Every organisation in CSV terms, cluster by cluster in the programme's order, then id."""
    cluster_order = case(
        {cluster.id: position for position, cluster in enumerate(CLUSTERS)},
        value=ORGANISATIONS.c.cluster_id,
        else_=len(CLUSTERS),
    )
    found = session.execute(
        select(ORGANISATIONS).order_by(
            cluster_order, ORGANISATIONS.c.cluster_id, ORGANISATIONS.c.id
        )
    )
    for row in found:
        values = dict(row._mapping)
        values["cluster"] = values.pop("cluster_id")
        yield values
