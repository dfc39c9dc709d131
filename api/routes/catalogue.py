"""The skills catalogue: browse and search, one organisation, CSV import."""

from collections.abc import AsyncGenerator, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from sqlalchemy import String, cast
from sqlmodel import Session, func, select
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from api.deps import CurrentUser, EngineDep, SessionDep, SettingsDep, StaffUser
from ce4big.catalogue.csvio import CatalogueRow, parse_catalogue_csv
from ce4big.catalogue.matching import search_organisations
from ce4big.catalogue.store import upsert_organisations
from ce4big.catalogue.vocabulary import canonical_certification
from ce4big.db import run_in_session
from ce4big.domain import CLUSTER_IDS, OrganisationKind, Role
from ce4big.errors import Forbidden, Invalid, NotFound, PayloadTooLarge
from ce4big.models import (
    CatalogueImportResult,
    Organisation,
    OrganisationPublic,
    OrganisationsPublic,
    User,
)
from ce4big.schemas import ID_MAX, error_responses
from ce4big.settings import Settings

router = APIRouter(
    prefix="/catalogue", tags=["catalogue"], responses=error_responses(401, 422, 503)
)

STAFF = frozenset({Role.BROKER, Role.MANAGER, Role.ADMIN})
KINDS = frozenset(k.value for k in OrganisationKind)
# Room for the multipart envelope around an uploaded file of the maximum size.
MULTIPART_OVERHEAD = 64 * 1024
MAX_LISTED = 50


def public_organisation(organisation: Organisation, *, user: User) -> OrganisationPublic:
    shown = OrganisationPublic.model_validate(organisation, from_attributes=True)
    if user.role not in STAFF:
        shown.contact_name = None
        shown.contact_email = None
    return shown


def _checked_filters(
    cluster: str | None, kind: str | None, certification: str | None
) -> tuple[str | None, str | None, str | None]:
    if cluster is not None and cluster not in CLUSTER_IDS:
        raise Invalid(f"cluster: unknown cluster {cluster!r} ({', '.join(sorted(CLUSTER_IDS))})")
    if kind is not None and kind not in KINDS:
        raise Invalid(f"kind: unknown kind {kind!r} ({', '.join(sorted(KINDS))})")
    if certification is not None:
        canonical = canonical_certification(certification)
        if canonical is None:
            raise Invalid(f"certification: unknown certification {certification!r}")
        certification = canonical
    return cluster, kind, certification


def search_catalogue(
    *,
    session: Session,
    q: str = "",
    cluster: str | None = None,
    kind: str | None = None,
    certification: str | None = None,
    accepting: bool | None = None,
    limit: int = MAX_LISTED,
    offset: int = 0,
) -> tuple[Sequence[Organisation], int]:
    """One page of organisations and how many there are in all: by relevance to `q` (any of
    en, fr, de, pl) when given, else by name. Raises Invalid for an unknown filter value."""
    cluster, kind, certification = _checked_filters(cluster, kind, certification)
    if q.strip():
        ids = search_organisations(
            session=session, q=q, cluster=cluster, kind=kind, certification=certification
        )
        if accepting is not None:
            keep = set(
                session.exec(
                    select(Organisation.id).where(Organisation.accepting_new_projects == accepting)
                ).all()
            )
            ids = [i for i in ids if i in keep]
        page_ids = ids[offset : offset + limit]
        found = {
            o.id: o
            for o in session.exec(
                select(Organisation).where(Organisation.id.in_(page_ids))  # type: ignore[attr-defined]
            )
        }
        return [found[i] for i in page_ids if i in found], len(ids)
    conditions: list[Any] = []
    if cluster is not None:
        conditions.append(Organisation.cluster_id == cluster)
    if kind is not None:
        conditions.append(Organisation.kind == kind)
    if certification is not None:
        # JSON lists are stored as text on both databases: look for the quoted name.
        conditions.append(cast(Organisation.certifications, String).like(f'%"{certification}"%'))
    if accepting is not None:
        conditions.append(Organisation.accepting_new_projects == accepting)
    count = session.exec(select(func.count()).select_from(Organisation).where(*conditions)).one()
    page = session.exec(
        select(Organisation)
        .where(*conditions)
        .order_by(Organisation.name, Organisation.id)
        .offset(offset)
        .limit(limit)
    ).all()
    return page, count


@router.get("", response_model_exclude_none=True)
def list_catalogue(
    session: SessionDep,
    user: CurrentUser,
    q: Annotated[str, Query(max_length=500)] = "",
    cluster: str | None = None,
    kind: str | None = None,
    certification: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = MAX_LISTED,
    offset: Annotated[int, Query(ge=0, le=ID_MAX)] = 0,
) -> OrganisationsPublic:
    """Organisations by name, or by relevance to `q` (any of en, fr, de, pl) when given."""
    page, count = search_catalogue(
        session=session,
        q=q,
        cluster=cluster,
        kind=kind,
        certification=certification,
        limit=limit,
        offset=offset,
    )
    return OrganisationsPublic(data=[public_organisation(o, user=user) for o in page], count=count)


@router.get("/{organisation_id}", response_model_exclude_none=True, responses=error_responses(404))
def read_organisation(
    organisation_id: str, session: SessionDep, user: CurrentUser
) -> OrganisationPublic:
    # No imported id holds NUL (PostgreSQL text cannot): such an id names nothing.
    organisation = None if "\x00" in organisation_id else session.get(Organisation, organisation_id)
    if organisation is None:
        raise NotFound(f"no organisation {organisation_id!r} in the catalogue")
    return public_organisation(organisation, user=user)


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed `limit` (never read whole)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the file is larger than the {limit:,}-byte limit")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"the file is larger than the {limit:,}-byte limit")
    return bytes(body)


async def _uploaded_file(request: Request, body: bytes, limit: int) -> bytes:
    async def once() -> AsyncGenerator[bytes, None]:
        yield body

    try:
        form = await MultiPartParser(request.headers, once(), max_files=1, max_fields=10).parse()
    except MultiPartException as exc:
        raise Invalid(f"file: {exc.message}") from None
    uploads = [v for v in form.values() if isinstance(v, UploadFile)]
    if not uploads:
        raise Invalid("file: send the CSV as a multipart file field, or as a text/csv body")
    data = await uploads[0].read()
    await form.close()
    if len(data) > limit:
        raise PayloadTooLarge(f"the file is larger than the {limit:,}-byte limit")
    return data


def _check_scope(*, session: Session, user: User, rows: Sequence[CatalogueRow]) -> None:
    """A broker imports rows of their own cluster only, and cannot move another cluster's row."""
    if user.role in (Role.MANAGER, Role.ADMIN):
        return
    if not user.cluster_id:
        raise Forbidden("a broker without a cluster cannot import catalogue rows")
    foreign = [f"line {r.line} ({r.id}, {r.cluster})" for r in rows if r.cluster != user.cluster_id]
    ids = [r.id for r in rows]
    owned: dict[str, str] = {}
    for start in range(0, len(ids), 500):
        owned.update(
            session.exec(
                select(Organisation.id, Organisation.cluster_id).where(
                    Organisation.id.in_(ids[start : start + 500])  # type: ignore[attr-defined]
                )
            ).all()
        )
    foreign += [
        f"line {r.line} ({r.id} belongs to {owned[r.id]})"
        for r in rows
        if r.cluster == user.cluster_id and owned.get(r.id, user.cluster_id) != user.cluster_id
    ]
    if foreign:
        shown = "; ".join(foreign[:20]) + (
            f" and {len(foreign) - 20} more" if len(foreign) > 20 else ""
        )
        raise Forbidden(
            f"a broker of {user.cluster_id} imports rows of {user.cluster_id} only; "
            f"refused, nothing imported: {shown}"
        )


def import_catalogue_rows(*, session: Session, user: User, data: bytes) -> CatalogueImportResult:
    rows = parse_catalogue_csv(data)
    _check_scope(session=session, user=user, rows=rows)
    created, updated = upsert_organisations(session=session, rows=rows)
    return CatalogueImportResult(
        rows=len(rows), created=created, updated=updated, unchanged=len(rows) - created - updated
    )


@router.post(
    "/import",
    responses=error_responses(403, 413),
    openapi_extra={
        "requestBody": {
            "content": {
                "text/csv": {"schema": {"type": "string"}},
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {"file": {"type": "string", "format": "binary"}},
                    }
                },
            }
        }
    },
)
async def import_catalogue(
    request: Request, engine: EngineDep, settings: SettingsDep, user: StaffUser
) -> CatalogueImportResult:
    """Upsert organisations from a CSV file (DESIGN section 3): all rows or none."""
    limit = _limit(settings)
    multipart = request.headers.get("content-type", "").startswith("multipart/form-data")
    body = await _read_body(request, limit + MULTIPART_OVERHEAD if multipart else limit)
    data = await _uploaded_file(request, body, limit) if multipart else body
    return await run_in_session(
        engine, lambda session: import_catalogue_rows(session=session, user=user, data=data)
    )


def _limit(settings: Settings) -> int:
    return settings.catalogue_max_upload_bytes
