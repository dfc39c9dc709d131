"""FastAPI dependencies as Annotated aliases: the one place lookups that can 401/403/404 live."""

from collections.abc import Awaitable, Callable, Iterator
from typing import Annotated, Literal

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine
from sqlmodel import Session
from temporalio.client import Client

from api.limits import FixedWindowCounter
from ce4big.db import run_in_session, session_scope
from ce4big.domain import Role
from ce4big.errors import Forbidden, TooManyRequests, Unauthorized
from ce4big.models import Exchange, User, utcnow
from ce4big.schemas import ID_MAX
from ce4big.security import get_user_by_api_token
from ce4big.settings import Settings
from ce4big.temporal import TemporalConnector
from ce4big.visibility import visible_exchange
from ce4big.websessions import csrf_matches, user_for_session


def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


EngineDep = Annotated[Engine, Depends(get_engine)]


def get_session(engine: EngineDep) -> Iterator[Session]:
    # The request owns the commit: a route that raises leaves nothing half-written.
    with session_scope(engine) as session:
        yield session


async def get_temporal(request: Request) -> Client:
    connector: TemporalConnector = request.app.state.temporal
    return await connector.client()


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
# For synchronous routes only. Ended when the route returns, before the response is sent, so
# that a failed commit is an error and not a success. An async route that awaits Temporal
# uses `run_in_session` instead, so that no connection waits on the Update with it.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
TemporalDep = Annotated[Client, Depends(get_temporal)]

_bearer = HTTPBearer(auto_error=False)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"


def session_cookie_name(settings: Settings) -> str:
    # __Host- binds the cookie to this host and path / over https (no Domain, Secure).
    secure = settings.base_url.startswith("https://")
    return "__Host-ce4big_session" if secure else "ce4big_session"


def session_cookie(request: Request, settings: Settings) -> str | None:
    return request.cookies.get(session_cookie_name(settings)) or None


async def sent_csrf_token(request: Request) -> str | None:
    """The CSRF token of a write: htmx and API clients send the header, plain forms a field."""
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        value = (await request.form()).get(CSRF_FIELD)
        return value if isinstance(value, str) else None
    return None


async def require_csrf(request: Request, settings: Settings, cookie: str) -> None:
    if request.method in SAFE_METHODS:
        return
    sent = await sent_csrf_token(request)
    if not csrf_matches(cookie=cookie, sent=sent, settings=settings):
        raise Forbidden(
            f"missing or wrong CSRF token: send the {CSRF_HEADER} header or the"
            f" {CSRF_FIELD} form field of the page"
        )


async def get_current_user(
    request: Request,
    engine: EngineDep,
    settings: Annotated[Settings, Depends(get_settings_dep)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> User:
    """A bearer token (integrations), else the session cookie of a signed-in browser; a write
    by cookie must carry the session's CSRF token."""
    if credentials is not None:
        if credentials.scheme.lower() != "bearer":
            raise Unauthorized("send 'Authorization: Bearer <token>'")
        plain = credentials.credentials
        user = await run_in_session(
            engine,
            lambda session: get_user_by_api_token(session=session, plain=plain, now=utcnow()),
        )
        if user is None:
            raise Unauthorized("invalid, expired or revoked token")
        return user
    cookie = session_cookie(request, settings)
    if cookie is None:
        raise Unauthorized("sign in, or send 'Authorization: Bearer <token>'")
    found = await run_in_session(
        engine,
        lambda session: user_for_session(
            session=session, cookie=cookie, settings=settings, now=utcnow()
        ),
    )
    if found is None:
        raise Unauthorized("your session has ended: sign in again")
    await require_csrf(request, settings, cookie)
    return found


CurrentUser = Annotated[User, Depends(get_current_user)]


def require_roles(*roles: Role) -> Callable[[User], User]:
    allowed = frozenset(roles)

    def check(user: CurrentUser) -> User:
        if user.role not in allowed:
            names = ", ".join(sorted(allowed))
            raise Forbidden(f"this needs one of the roles: {names}")
        return user

    return check


StaffUser = Annotated[User, Depends(require_roles(Role.BROKER, Role.MANAGER, Role.ADMIN))]
ManagerUser = Annotated[User, Depends(require_roles(Role.MANAGER, Role.ADMIN))]
AdminUser = Annotated[User, Depends(require_roles(Role.ADMIN))]


async def get_exchange_or_404(
    exchange_id: Annotated[int, Path(ge=1, le=ID_MAX)], engine: EngineDep, user: CurrentUser
) -> Exchange:
    return await run_in_session(
        engine,
        lambda session: visible_exchange(session=session, user=user, exchange_id=exchange_id),
    )


ExchangeDep = Annotated[Exchange, Depends(get_exchange_or_404)]


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def rate_limited(kind: Literal["decision", "link"]) -> Callable[..., Awaitable[None]]:
    """Counts a write of this kind against the client address's limit (429 beyond it), before
    the request is read or authenticated. Reads are not counted."""

    async def check(request: Request, settings: SettingsDep) -> None:
        if request.method in SAFE_METHODS:
            return
        counter: FixedWindowCounter = request.app.state.rate_limits
        decision = kind == "decision"
        limit = settings.decisions_per_client if decision else settings.link_actions_per_client
        wait = counter.hit(
            f"{kind}:{client_address(request)}",
            limit=limit,
            window_seconds=settings.rate_limit_window_seconds,
        )
        if wait is not None:
            what = "decisions" if decision else "uses of e-mail links"
            raise TooManyRequests(
                f"too many {what} from this address: wait {wait} s", retry_after_seconds=wait
            )

    return check


DecisionLimit = Depends(rate_limited("decision"))
LinkLimit = Depends(rate_limited("link"))
