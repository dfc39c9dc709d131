"""Users, managed by admins: add, list, deactivate and activate them, list and revoke their
API tokens."""

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import Session, col, func, select

from api.deps import AdminUser, SessionDep
from ce4big.domain import Language, Role
from ce4big.errors import Conflict, NotFound
from ce4big.models import User, UserPublic, utcnow
from ce4big.schemas import ID_MAX, SqlText, error_responses
from ce4big.security import list_api_tokens, revoke_api_token, revoke_user_api_tokens
from ce4big.users import add_user, set_active

router = APIRouter(prefix="/users", tags=["users"], responses=error_responses(401, 403, 422, 503))
# Every route below but the list names a user, who may not exist.
ONE_USER = error_responses(404)


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    email: SqlText = Field(max_length=254)
    role: Role
    cluster: SqlText | None = Field(default=None, max_length=32)
    organisation: SqlText | None = Field(default=None, max_length=64)
    name: SqlText = Field(default="", max_length=200)
    language: Language | None = None


class UsersPublic(BaseModel):
    data: list[UserPublic]
    count: int


class UserAccessPublic(UserPublic):
    is_active: bool


class ApiTokenPublic(BaseModel):
    """A token as stored: its label and dates, never the token (only its hash is kept)."""

    id: int
    name: str
    created_at: datetime
    expires_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiTokensPublic(BaseModel):
    data: list[ApiTokenPublic]
    count: int


class TokensRevoked(BaseModel):
    revoked: int


def get_user_or_404(
    user_id: Annotated[int, Path(ge=1, le=ID_MAX)], session: SessionDep, _admin: AdminUser
) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"user: no user with id {user_id}")
    return user


UserDep = Annotated[User, Depends(get_user_or_404)]


def _access(user: User) -> UserAccessPublic:
    return UserAccessPublic.model_validate(user, from_attributes=True)


def _tokens(session: Session, user: User) -> ApiTokensPublic:
    assert user.id is not None
    tokens = list_api_tokens(session=session, user_id=user.id)
    return ApiTokensPublic(
        data=[ApiTokenPublic.model_validate(t, from_attributes=True) for t in tokens],
        count=len(tokens),
    )


@router.get("")
def list_users(
    session: SessionDep,
    _admin: AdminUser,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=ID_MAX)] = 0,
) -> UsersPublic:
    count = session.exec(select(func.count()).select_from(User)).one()
    users = session.exec(select(User).order_by(col(User.id)).offset(offset).limit(limit)).all()
    return UsersPublic(
        data=[UserPublic.model_validate(u, from_attributes=True) for u in users], count=count
    )


@router.post("", status_code=status.HTTP_201_CREATED, responses=error_responses(400, 404, 413))
def save_user(body: UserCreate, session: SessionDep, _admin: AdminUser) -> UserPublic:
    """Add a user, or update the one with this e-mail (as `ce4big users add`)."""
    user = add_user(
        session=session,
        email=body.email,
        role=body.role,
        cluster_id=body.cluster,
        organisation_id=body.organisation,
        name=body.name,
        language=body.language,
    )
    return UserPublic.model_validate(user, from_attributes=True)


@router.post("/{user_id}/deactivate", responses=ONE_USER | error_responses(409))
def deactivate_user(user: UserDep, session: SessionDep, admin: AdminUser) -> UserAccessPublic:
    """End the user's web sessions and refuse their API tokens and e-mailed links until they
    are activated again (as `ce4big users deactivate`)."""
    if user.id == admin.id:
        raise Conflict("user: an admin cannot deactivate their own account")
    return _access(set_active(session=session, user=user, active=False, now=utcnow()))


@router.post("/{user_id}/activate", responses=ONE_USER)
def activate_user(user: UserDep, session: SessionDep) -> UserAccessPublic:
    """Let a deactivated user sign in again; their unexpired tokens and links work again."""
    return _access(set_active(session=session, user=user, active=True, now=utcnow()))


@router.get("/{user_id}/tokens", responses=ONE_USER)
def list_user_tokens(user: UserDep, session: SessionDep) -> ApiTokensPublic:
    """The user's API tokens, newest first."""
    return _tokens(session, user)


@router.delete(
    "/{user_id}/tokens/{token_id}", status_code=status.HTTP_204_NO_CONTENT, responses=ONE_USER
)
def revoke_user_token(
    user: UserDep, token_id: Annotated[int, Path(ge=1, le=ID_MAX)], session: SessionDep
) -> Response:
    """Revoke one of the user's API tokens at once (as `ce4big token revoke ID`)."""
    assert user.id is not None
    if not revoke_api_token(session=session, user_id=user.id, token_id=token_id, now=utcnow()):
        raise NotFound(f"token: user {user.id} has no token with id {token_id}")
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.delete("/{user_id}/tokens", responses=ONE_USER)
def revoke_user_tokens(user: UserDep, session: SessionDep) -> TokensRevoked:
    """Revoke every API token of the user that still works (as `ce4big token revoke --user`)."""
    assert user.id is not None
    return TokensRevoked(
        revoked=revoke_user_api_tokens(session=session, user_id=user.id, now=utcnow())
    )
