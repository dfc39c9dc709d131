"""FastAPI dependencies as Annotated aliases: the one place lookups that can 401/403/404 live."""

from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine
from sqlmodel import Session
from temporalio.client import Client

from ce4big.db import run_in_session, session_scope
from ce4big.domain import Role
from ce4big.errors import Forbidden, NotFound, Unauthorized
from ce4big.models import Exchange, User, utcnow
from ce4big.security import get_user_by_api_token
from ce4big.settings import Settings
from ce4big.temporal import TemporalConnector
from ce4big.visibility import visible_exchanges


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


async def get_current_user(
    engine: EngineDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> User:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("missing bearer token: send 'Authorization: Bearer <token>'")
    plain = credentials.credentials
    user = await run_in_session(
        engine, lambda session: get_user_by_api_token(session=session, plain=plain, now=utcnow())
    )
    if user is None:
        raise Unauthorized("invalid, expired or revoked token")
    return user


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


def _visible_exchange(*, session: Session, user: User, exchange_id: int) -> Exchange | None:
    return session.exec(visible_exchanges(user).where(Exchange.id == exchange_id)).first()


async def get_exchange_or_404(exchange_id: int, engine: EngineDep, user: CurrentUser) -> Exchange:
    exchange = await run_in_session(
        engine,
        lambda session: _visible_exchange(session=session, user=user, exchange_id=exchange_id),
    )
    # An exchange the caller may not see is as unknown as one that does not exist.
    if exchange is None:
        raise NotFound(f"no exchange {exchange_id}")
    return exchange


ExchangeDep = Annotated[Exchange, Depends(get_exchange_or_404)]
