"""Small builders for rows that tests need."""

from typing import Any

from sqlmodel import Session

from ce4big.models import Organisation, User
from ce4big.security import create_api_token
from ce4big.users import add_user


def add_organisation(
    session: Session, org_id: str, cluster: str, kind: str = "sme", **values: Any
) -> Organisation:
    organisation = Organisation(
        id=org_id,
        name=str(values.pop("name", f"Organisation {org_id}")),
        cluster_id=cluster,
        kind=kind,
        country=str(values.pop("country", "FR")),
        contact_email=str(values.pop("contact_email", f"contact@{org_id}.example")),
        **values,
    )
    session.add(organisation)
    session.flush()
    return organisation


def user_with_token(
    session: Session,
    email: str,
    role: str,
    cluster: str | None = None,
    organisation: str | None = None,
) -> tuple[User, str]:
    user = add_user(
        session=session, email=email, role=role, cluster_id=cluster, organisation_id=organisation
    )
    token = create_api_token(session=session, user=user, days=1)
    session.commit()
    return user, token
