"""Demo data: the project's own fictional catalogue and one set of users per cluster."""

from dataclasses import dataclass
from pathlib import Path

from sqlmodel import Session, func, select

from ce4big.catalogue.csvio import parse_catalogue_csv
from ce4big.catalogue.store import upsert_organisations
from ce4big.domain import CLUSTERS, Role
from ce4big.models import Organisation, User
from ce4big.users import add_user

DEMO_CATALOGUE = Path(__file__).resolve().parent / "demo" / "catalogue.csv"
DEMO_DOMAIN = "ce4big-demo.example"
SMES_PER_CLUSTER = 3


@dataclass(frozen=True)
class SeedReport:
    organisations: int
    users: int

    def __str__(self) -> str:
        return f"demo data: {self.organisations} organisations, {self.users} users"


def demo_email(local: str) -> str:
    return f"{local}@{DEMO_DOMAIN}"


def is_seeded(*, session: Session) -> bool:
    return session.exec(select(func.count()).select_from(User)).one() > 0


def seed_demo(*, session: Session) -> SeedReport:
    """Upsert the demo catalogue and users; running it again changes nothing."""
    rows = parse_catalogue_csv(DEMO_CATALOGUE.read_bytes())
    upsert_organisations(session=session, rows=rows)
    session.flush()
    users = [
        add_user(session=session, email=demo_email("admin"), role=Role.ADMIN, name="Demo Admin")
    ]
    for cluster in CLUSTERS:
        for role in (Role.BROKER, Role.MANAGER):
            users.append(
                add_user(
                    session=session,
                    email=demo_email(f"{role.value}.{cluster.id}"),
                    role=role,
                    cluster_id=cluster.id,
                    name=f"{cluster.name} {role.value}",
                    language=cluster.language,
                )
            )
        smes = session.exec(
            select(Organisation)
            .where(Organisation.cluster_id == cluster.id, Organisation.kind == "sme")
            .order_by(Organisation.id)
            .limit(SMES_PER_CLUSTER)
        ).all()
        for number, organisation in enumerate(smes, start=1):
            users.append(
                add_user(
                    session=session,
                    email=demo_email(f"sme{number}.{cluster.id}"),
                    role=Role.SME,
                    organisation_id=organisation.id,
                    name=f"{organisation.contact_name or organisation.name}",
                    language=cluster.language,
                )
            )
    return SeedReport(organisations=len(rows), users=len(users))
