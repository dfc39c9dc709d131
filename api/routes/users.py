"""Users, managed by admins."""

from typing import Annotated

from fastapi import APIRouter, Query, status
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import col, func, select

from api.deps import AdminUser, SessionDep
from ce4big.domain import Language, Role
from ce4big.models import User, UserPublic
from ce4big.users import add_user

router = APIRouter(prefix="/users", tags=["users"])


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    email: str = Field(max_length=254)
    role: Role
    cluster: str | None = Field(default=None, max_length=32)
    organisation: str | None = Field(default=None, max_length=64)
    name: str = Field(default="", max_length=200)
    language: Language | None = None


class UsersPublic(BaseModel):
    data: list[UserPublic]
    count: int


@router.get("")
def list_users(
    session: SessionDep,
    _admin: AdminUser,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> UsersPublic:
    count = session.exec(select(func.count()).select_from(User)).one()
    users = session.exec(select(User).order_by(col(User.id)).offset(offset).limit(limit)).all()
    return UsersPublic(
        data=[UserPublic.model_validate(u, from_attributes=True) for u in users], count=count
    )


@router.post("", status_code=status.HTTP_201_CREATED)
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
