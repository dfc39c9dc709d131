"""Who looks at a page of the web app: signed in or not, in which language and time zone, with
which CSRF token; and the page itself, rendered in the shared layout."""

import secrets
from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.datastructures import FormData

from api.deps import (
    CSRF_FIELD,
    CSRF_HEADER,
    EngineDep,
    SettingsDep,
    session_cookie,
)
from api.templating import render
from ce4big.db import run_in_session
from ce4big.domain import CLUSTERS_BY_ID, Role
from ce4big.errors import AppError, Forbidden
from ce4big.i18n import N_, negotiate_language
from ce4big.inbox import broker_inbox
from ce4big.models import User, utcnow
from ce4big.settings import Settings
from ce4big.websessions import csrf_matches, csrf_token, user_for_session

# A signed-out browser's CSRF tokens are bound to this random cookie instead of a session.
SIGNED_OUT_COOKIE = "ce4big_csrf"
# A signed-out visitor's choice of language; a signed-in user's is saved on the user.
LANGUAGE_COOKIE = "ce4big_language"
DEFAULT_TIMEZONE = "Europe/Brussels"


class SignInRequired(AppError):
    """Answered with a redirect to the sign-in page that comes back here afterwards."""

    status_code = 401
    code = "sign_in_required"

    def __init__(self, next_path: str) -> None:
        super().__init__("sign in to see this page")
        self.next_path = next_path


class CsrfFailed(Forbidden):
    code = "csrf_failed"


@dataclass(frozen=True, slots=True)
class NavItem:
    href: str
    label: str
    current: bool = False
    badge: int | None = None


@dataclass
class Visitor:
    user: User | None
    language: str
    timezone: str
    csrf: str
    # The cookie the CSRF token is bound to: the session's, or a signed-out browser's own.
    csrf_basis: str
    new_signed_out_cookie: bool = False
    inbox_count: int = 0
    nav: list[NavItem] = field(default_factory=list)

    @property
    def signed_in(self) -> bool:
        return self.user is not None

    def has_role(self, *roles: Role) -> bool:
        return self.user is not None and self.user.role in roles


def _timezone(user: User | None) -> str:
    if user is None:
        return DEFAULT_TIMEZONE
    cluster = CLUSTERS_BY_ID.get(user.cluster_id or "")
    return user.timezone or (cluster.timezone if cluster else DEFAULT_TIMEZONE)


def _cluster_language(user: User | None) -> str | None:
    cluster = CLUSTERS_BY_ID.get((user.cluster_id if user else None) or "")
    return cluster.language if cluster else None


def _nav(path: str, user: User | None, inbox_count: int) -> list[NavItem]:
    if user is None:
        return []
    items: list[tuple[str, str, int | None]] = []
    if user.role == Role.SME:
        items = [
            ("/exchanges", N_("My exchanges"), None),
            ("/exchanges/new", N_("New request"), None),
        ]
    elif user.role == Role.BROKER:
        items = [
            ("/inbox", N_("Inbox"), inbox_count),
            ("/exchanges", N_("Exchanges"), None),
            ("/catalogue", N_("Catalogue"), None),
            ("/reports", N_("Reports"), None),
        ]
    else:
        items = [
            ("/exchanges", N_("Exchanges"), None),
            ("/catalogue", N_("Catalogue"), None),
            ("/reports", N_("Reports"), None),
        ]
    items.append(("/account", N_("Account"), None))
    return [
        NavItem(href=href, label=label, current=path == href, badge=badge)
        for href, label, badge in items
    ]


async def get_visitor(request: Request, engine: EngineDep, settings: SettingsDep) -> Visitor:
    cookie = session_cookie(request, settings)
    user = None
    if cookie is not None:
        user = await run_in_session(
            engine,
            lambda session: user_for_session(
                session=session, cookie=cookie, settings=settings, now=utcnow()
            ),
        )
    basis = cookie if user is not None and cookie is not None else None
    new_cookie = False
    if basis is None:
        basis = request.cookies.get(SIGNED_OUT_COOKIE) or ""
        if len(basis) != 43:
            basis, new_cookie = secrets.token_urlsafe(32), True
    inbox_count = 0
    if user is not None and user.role == Role.BROKER:
        signed_in = user
        inbox_count = await run_in_session(
            engine,
            lambda session: len(
                broker_inbox(session=session, user=signed_in, settings=settings, now=utcnow())
            ),
        )
    language = negotiate_language(
        user.language if user else request.cookies.get(LANGUAGE_COOKIE),
        _cluster_language(user),
        accept_language=request.headers.get("accept-language"),
    )
    visitor = Visitor(
        user=user,
        language=language,
        timezone=_timezone(user),
        csrf=csrf_token(cookie=basis, settings=settings),
        csrf_basis=basis,
        new_signed_out_cookie=new_cookie,
        inbox_count=inbox_count,
        nav=_nav(request.url.path, user, inbox_count),
    )
    # Error pages raised later in the request still show the visitor's layout and language.
    request.state.visitor = visitor
    request.state.language = language
    return visitor


VisitorDep = Annotated[Visitor, Depends(get_visitor)]


async def get_signed_in(request: Request, visitor: VisitorDep) -> Visitor:
    if visitor.user is None:
        raise SignInRequired(request.url.path)
    return visitor


SignedInDep = Annotated[Visitor, Depends(get_signed_in)]


def require_role(visitor: Visitor, *roles: Role) -> User:
    if visitor.user is None or visitor.user.role not in roles:
        raise Forbidden("this page is not part of your role")
    return visitor.user


async def checked_form(request: Request, visitor: Visitor, settings: Settings) -> FormData:
    """The POSTed form, once its CSRF token (field or htmx header) matches the visitor's."""
    form = await request.form()
    sent = form.get(CSRF_FIELD)
    token = sent if isinstance(sent, str) else request.headers.get(CSRF_HEADER)
    if not csrf_matches(cookie=visitor.csrf_basis, sent=token, settings=settings):
        raise CsrfFailed("the form has expired: reload the page and send it again")
    return form


def set_signed_out_cookie(response: Any, visitor: Visitor, settings: Settings) -> None:
    if visitor.new_signed_out_cookie:
        response.set_cookie(
            SIGNED_OUT_COOKIE,
            visitor.csrf_basis,
            httponly=True,
            samesite="lax",
            secure=settings.base_url.startswith("https://"),
        )


def page(
    request: Request,
    visitor: Visitor,
    settings: Settings,
    name: str,
    context: dict[str, Any] | None = None,
    *,
    status_code: int = 200,
) -> HTMLResponse:
    response = render(
        request,
        name,
        {**(context or {}), "visitor": visitor},
        language=visitor.language,
        status_code=status_code,
    )
    set_signed_out_cookie(response, visitor, settings)
    return response


def redirect(path: str) -> RedirectResponse:
    """After a POST: the browser GETs the next page (303)."""
    return RedirectResponse(path, status_code=303)


def safe_next(value: object, default: str = "/") -> str:
    """Only a path of this site: never an absolute or scheme-relative URL."""
    if isinstance(value, str) and value.startswith("/") and not value.startswith("//"):
        return value
    return default


def sign_in_url(next_path: str) -> str:
    return "/login?next=" + quote(next_path, safe="/")
