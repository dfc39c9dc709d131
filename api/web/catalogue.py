"""The skills catalogue for cluster staff: search it, read one organisation, import a CSV file
(every bad row reported, nothing loaded unless all are good) and download it as CSV."""

import math
from datetime import date
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlmodel import Session
from starlette.datastructures import UploadFile

from api.deps import EngineDep, SettingsDep
from api.routes.catalogue import (
    import_catalogue_rows,
    public_organisation,
    search_catalogue,
)
from api.web.forms import FormErrors
from api.web.visitor import SignedInDep, Visitor, checked_form, page, require_role
from ce4big.catalogue.csvio import CatalogueInvalid, RowError, write_catalogue_csv
from ce4big.catalogue.store import export_rows
from ce4big.db import run_in_session
from ce4big.domain import (
    CERTIFICATIONS,
    CLUSTERS,
    Language,
    OrganisationKind,
    Role,
    cluster_name,
)
from ce4big.errors import Forbidden, Invalid, NotFound
from ce4big.i18n import LABELS, N_
from ce4big.models import CatalogueImportResult, Organisation, User
from ce4big.settings import Settings

router = APIRouter(include_in_schema=False)

STAFF = (Role.BROKER, Role.MANAGER, Role.ADMIN)
PER_PAGE = 20
FILTER_MESSAGE = N_("Choose the filters from the lists.")
NO_FILE = N_("Choose a CSV file to import.")
TOO_LARGE = N_("The file is too large: split it into smaller files.")
REFUSED = N_("Nothing was imported: every row has to be valid.")
OUT_OF_SCOPE = N_("Nothing was imported: you may import rows of your own cluster only.")


def _staff(visitor: Visitor) -> User:
    return require_role(visitor, *STAFF)


def _choices() -> dict[str, Any]:
    return {
        "clusters": [(c.id, c.name) for c in CLUSTERS],
        "kinds": LABELS[OrganisationKind],
        "certifications": CERTIFICATIONS,
    }


def _page_number(value: str) -> int:
    return int(value) if value.isdigit() and 0 < int(value) < 100_000 else 1


@router.get("/catalogue", name="catalogue")
async def catalogue(
    request: Request,
    visitor: SignedInDep,
    engine: EngineDep,
    settings: SettingsDep,
    q: Annotated[str, Query(max_length=500)] = "",
    cluster: Annotated[str, Query(max_length=32)] = "",
    kind: Annotated[str, Query(max_length=32)] = "",
    certification: Annotated[str, Query(max_length=32)] = "",
    accepting: Annotated[str, Query(max_length=8)] = "",
    page_: Annotated[str, Query(alias="page", max_length=8)] = "1",
) -> Response:
    user = _staff(visitor)
    filters = {
        "q": q.strip(),
        "cluster": cluster,
        "kind": kind,
        "certification": certification,
        "accepting": "yes" if accepting else "",
    }
    number = _page_number(page_)
    errors = FormErrors()

    def search(session: Session) -> tuple[list[Any], int]:
        found, count = search_catalogue(
            session=session,
            q=filters["q"],
            cluster=cluster or None,
            kind=kind or None,
            certification=certification or None,
            accepting=True if accepting else None,
            limit=PER_PAGE,
            offset=(number - 1) * PER_PAGE,
        )
        return [public_organisation(o, user=user) for o in found], count

    try:
        organisations, count = await run_in_session(engine, search)
    except Invalid as exc:
        field = exc.message.partition(":")[0]
        errors.add(f"filter-{field}", FILTER_MESSAGE, exc.message)
        organisations, count = [], 0
    pages = max(1, math.ceil(count / PER_PAGE))
    shown = {k: v for k, v in filters.items() if v}

    def page_link(target: int) -> str:
        return "/catalogue?" + urlencode({**shown, "page": target})

    return page(
        request,
        visitor,
        settings,
        "web/catalogue/search.html",
        {
            **_choices(),
            "filters": filters,
            "organisations": organisations,
            "count": count,
            "page_number": number,
            "pages": pages,
            "previous": page_link(number - 1) if number > 1 else None,
            "next": page_link(number + 1) if number < pages else None,
            "cluster_names": {c.id: c.name for c in CLUSTERS},
            "errors": errors,
        },
        status_code=422 if errors else 200,
    )


# ---------------------------------------------------------------- import


def _import_page(
    request: Request,
    visitor: Visitor,
    settings: Settings,
    *,
    result: CatalogueImportResult | None = None,
    rows: list[RowError] | None = None,
    errors: FormErrors | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    return page(
        request,
        visitor,
        settings,
        "web/catalogue/import.html",
        {
            "result": result,
            "rows": rows or [],
            "errors": errors or FormErrors(),
            "limit_mb": settings.catalogue_max_upload_bytes / 1_048_576,
            "own_cluster": _broker_cluster_name(visitor.user),
        },
        status_code=status_code,
    )


def _broker_cluster_name(user: User | None) -> str | None:
    if user is None or user.role != Role.BROKER or not user.cluster_id:
        return None
    return cluster_name(user.cluster_id)


@router.get("/catalogue/import", name="catalogue_import")
async def import_form(request: Request, visitor: SignedInDep, settings: SettingsDep) -> Response:
    _staff(visitor)
    return _import_page(request, visitor, settings)


@router.post("/catalogue/import")
async def import_file(
    request: Request, visitor: SignedInDep, engine: EngineDep, settings: SettingsDep
) -> Response:
    user = _staff(visitor)
    limit = settings.catalogue_max_upload_bytes
    errors = FormErrors()
    try:
        form = await checked_form(request, visitor, settings)
        upload = form.get("file")
        data = (
            await upload.read(limit + 1)
            if isinstance(upload, UploadFile) and upload.filename
            else None
        )
    finally:
        # The upload is spooled to a temporary file, refused or not: remove it now.
        await (await request.form()).close()
    if data is None:
        errors.add("file", NO_FILE)
        return _import_page(request, visitor, settings, errors=errors, status_code=422)
    if len(data) > limit:
        errors.add("file", TOO_LARGE)
        return _import_page(request, visitor, settings, errors=errors, status_code=413)
    try:
        result = await run_in_session(
            engine, lambda session: import_catalogue_rows(session=session, user=user, data=data)
        )
    except CatalogueInvalid as exc:
        errors.add("file", REFUSED)
        return _import_page(
            request, visitor, settings, rows=exc.errors, errors=errors, status_code=422
        )
    except Forbidden as exc:
        errors.add("file", OUT_OF_SCOPE, exc.message)
        return _import_page(request, visitor, settings, errors=errors, status_code=403)
    return _import_page(request, visitor, settings, result=result)


# ---------------------------------------------------------------- export and one organisation


@router.get("/catalogue/export.csv", name="catalogue_export")
async def export_csv(visitor: SignedInDep, engine: EngineDep) -> Response:
    _staff(visitor)
    text = await run_in_session(
        engine, lambda session: write_catalogue_csv(export_rows(session=session))
    )
    filename = f"ce4big-catalogue-{date.today().isoformat()}.csv"
    # The byte order mark tells spreadsheet programs the file is UTF-8; the import skips it.
    return Response(
        "\ufeff" + text,
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


@router.get("/catalogue/{organisation_id}", name="organisation")
async def organisation_page(
    request: Request,
    organisation_id: str,
    visitor: SignedInDep,
    engine: EngineDep,
    settings: SettingsDep,
) -> Response:
    user = _staff(visitor)
    # PostgreSQL text cannot hold NUL: no organisation has such an id.
    if "\x00" in organisation_id:
        raise NotFound(f"no organisation {organisation_id!r} in the catalogue")
    found = await run_in_session(engine, lambda session: session.get(Organisation, organisation_id))
    if found is None:
        raise NotFound(f"no organisation {organisation_id!r} in the catalogue")
    return page(
        request,
        visitor,
        settings,
        "web/catalogue/organisation.html",
        {
            "organisation": public_organisation(found, user=user),
            "cluster_name": cluster_name(found.cluster_id),
            "kinds": LABELS[OrganisationKind],
            "language_names": LABELS[Language],
        },
    )
