"""Catalogue rows in the database."""

from collections.abc import Iterator, Sequence
from typing import Any

from sqlmodel import Session, select

from api.catalogue.csvio import LIST_FIELDS, CatalogueRow
from api.models import Organisation, utcnow


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
    """Insert new ids, update known ones; returns (created, updated). The caller commits."""
    ids = [row.id for row in rows]
    existing: dict[str, Organisation] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        found = session.exec(
            select(Organisation).where(Organisation.id.in_(chunk))  # type: ignore[attr-defined]
        )
        existing.update((o.id, o) for o in found)
    now = utcnow()
    created = updated = 0
    for row in rows:
        values = organisation_values(row)
        current = existing.get(row.id)
        if current is None:
            session.add(Organisation(id=row.id, updated_at=now, **values))
            created += 1
        elif any(getattr(current, k) != v for k, v in values.items()):
            for key, value in values.items():
                setattr(current, key, value)
            current.updated_at = now
            session.add(current)
            updated += 1
    return created, updated


def export_rows(*, session: Session) -> Iterator[dict[str, Any]]:
    for organisation in session.exec(select(Organisation).order_by(Organisation.id)):
        row = organisation.model_dump()
        row["cluster"] = row.pop("cluster_id")
        yield row
