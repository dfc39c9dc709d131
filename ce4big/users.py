"""User administration shared by the CLI and the admin API."""

from datetime import datetime

from sqlmodel import Session

from ce4big.domain import CLUSTER_IDS, LANGUAGES, Role
from ce4big.errors import Invalid, NotFound
from ce4big.models import Organisation, User
from ce4big.security import get_user_by_email
from ce4big.websessions import end_user_sessions


def add_user(
    *,
    session: Session,
    email: str,
    role: str,
    cluster_id: str | None = None,
    organisation_id: str | None = None,
    name: str = "",
    language: str | None = None,
) -> User:
    """Create a user, or update the one with this e-mail (so seeding twice adds nothing)."""
    email = email.strip()
    if "@" not in email or email.startswith("@") or email.endswith("@") or " " in email:
        raise Invalid(f"email: {email!r} is not an e-mail address")
    try:
        role_value = Role(role)
    except ValueError:
        raise Invalid(f"role: {role!r} is not one of {', '.join(r.value for r in Role)}") from None
    if language is not None and language not in LANGUAGES:
        raise Invalid(f"language: {language!r} is not one of {', '.join(LANGUAGES)}")
    organisation = None
    if organisation_id is not None:
        organisation = session.get(Organisation, organisation_id)
        if organisation is None:
            raise NotFound(f"organisation: no catalogue organisation with id {organisation_id!r}")
        if cluster_id is None:
            cluster_id = organisation.cluster_id
        elif cluster_id != organisation.cluster_id:
            raise Invalid(
                f"cluster: organisation {organisation_id!r} belongs to {organisation.cluster_id!r}"
            )
    if cluster_id is not None and cluster_id not in CLUSTER_IDS:
        raise Invalid(f"cluster: {cluster_id!r} is not one of {', '.join(sorted(CLUSTER_IDS))}")
    if role_value in (Role.BROKER, Role.SME) and cluster_id is None:
        raise Invalid(f"cluster: a {role_value.value} needs --cluster (or an --organisation)")
    if role_value is Role.SME and organisation is None:
        raise Invalid("organisation: an sme user needs --organisation (a catalogue id)")

    user = get_user_by_email(session=session, email=email) or User(email=email, role=role_value)
    user.role = role_value
    user.cluster_id = cluster_id
    user.organisation_id = organisation_id
    user.name = name or user.name
    user.language = language or user.language
    session.add(user)
    session.flush()
    return user


def set_user_active(*, session: Session, email: str, active: bool, now: datetime) -> User:
    user = get_user_by_email(session=session, email=email.strip())
    if user is None:
        raise NotFound(f"email: no user with e-mail {email!r}")
    return set_active(session=session, user=user, active=active, now=now)


def set_active(*, session: Session, user: User, active: bool, now: datetime) -> User:
    """Deactivating a user ends their web sessions at once; their API tokens and the links
    e-mailed to them stop working with them (every lookup checks `is_active`), and work again
    when they are activated."""
    assert user.id is not None
    user.is_active = active
    session.add(user)
    if not active:
        end_user_sessions(session=session, user_id=user.id, now=now)
    session.flush()
    return user
