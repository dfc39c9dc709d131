"""A small catalogue and cast around one exchange: an SME of BioWin looking for GLP genetic
toxicology, brokers, a manager and CROs in other clusters that the matcher finds."""

from dataclasses import dataclass

from sqlmodel import Session

from ce4big.domain import CooperationType, Language
from ce4big.models import Exchange, User
from ce4big.users import add_user
from tests.factories import add_organisation

HOME = "biowin"
REQUESTER_EMAIL = "claire.moreau@nantes-sme.example"
REQUESTER_NAME = "Claire Moreau"
HOME_BROKERS = ("broker@biowin.example", "second.broker@biowin.example")
HOST_BROKER = "broker@biom.example"
MANAGER = "manager@ce4big.example"
PARTNER_ID = "bm-tox"
PARTNER_EMAIL = "t.weber@bm-tox.example"
PARTNER_NAME = "Tobias Weber"
SECOND_PARTNER_ID = "kr-tox"
UNRELATED_ID = "at-seq"
HOME_CLUSTER_TOX_ID = "bw-tox"


@dataclass(frozen=True)
class ExchangeWorld:
    exchange_id: int
    requester_id: int
    home_broker_ids: tuple[int, ...]
    host_broker_id: int
    manager_id: int


def add_catalogue(session: Session) -> None:
    add_organisation(
        session,
        "bw-sme",
        HOME,
        "sme",
        name="Wallonia Lead Compounds",
        country="BE",
        description="Small-molecule lead optimisation for oncology.",
    )
    add_organisation(
        session,
        PARTNER_ID,
        "biom",
        "cro",
        name="Munich Genetic Toxicology",
        country="DE",
        description="GLP genetic toxicology CRO: Ames test, in vitro micronucleus and comet assay.",
        certifications=["GLP"],
        contact_name=PARTNER_NAME,
        contact_email=PARTNER_EMAIL,
        website="https://bm-tox.example",
    )
    add_organisation(
        session,
        SECOND_PARTNER_ID,
        "klsk",
        "cro",
        name="Kraków Preclinical Services",
        country="PL",
        description="GLP toxicology: Ames test and micronucleus assays for small molecules.",
        certifications=["GLP"],
        contact_name="Tomasz Wiśniewski",
        contact_email="t.wisniewski@kr-tox.example",
    )
    add_organisation(
        session,
        UNRELATED_ID,
        "atlanpole",
        "core_facility",
        name="Nantes Sequencing Core",
        description="Single-cell RNA sequencing of tumour biopsies with bioinformatic analysis.",
    )
    # Matches as well as the others, but sits in the requester's own cluster.
    add_organisation(
        session,
        HOME_CLUSTER_TOX_ID,
        HOME,
        "cro",
        name="Liège Toxicology",
        country="BE",
        description="GLP genetic toxicology: Ames test and in vitro micronucleus assay.",
        certifications=["GLP"],
    )


def add_people(session: Session) -> tuple[User, list[User], User, User]:
    requester = add_user(
        session=session,
        email=REQUESTER_EMAIL,
        role="sme",
        organisation_id="bw-sme",
        name=REQUESTER_NAME,
        language="en",
    )
    brokers = [
        add_user(session=session, email=email, role="broker", cluster_id=HOME, name="Home broker")
        for email in HOME_BROKERS
    ]
    host = add_user(
        session=session, email=HOST_BROKER, role="broker", cluster_id="biom", name="Host broker"
    )
    manager = add_user(session=session, email=MANAGER, role="manager", name="Programme manager")
    return requester, brokers, host, manager


def add_exchange(session: Session, requester: User, exchange_id: int | None = None) -> Exchange:
    assert requester.id is not None
    exchange = Exchange(
        id=exchange_id,
        title="GLP genotoxicity battery",
        description="We need an Ames test and an in vitro micronucleus assay under GLP "
        "for our lead compound before the first regulatory filing.",
        requester_id=requester.id,
        organisation_id=requester.organisation_id,
        home_cluster=HOME,
        cooperation_type=CooperationType.SERVICE_AGREEMENT,
        languages=[Language.EN],
    )
    session.add(exchange)
    session.flush()
    return exchange


def add_world(session: Session, exchange_id: int | None = None) -> ExchangeWorld:
    """Everything committed, so that activities with their own sessions see it."""
    add_catalogue(session)
    requester, brokers, host, manager = add_people(session)
    exchange = add_exchange(session, requester, exchange_id)
    session.commit()
    assert exchange.id is not None and requester.id is not None
    assert host.id is not None and manager.id is not None
    return ExchangeWorld(
        exchange_id=exchange.id,
        requester_id=requester.id,
        home_broker_ids=tuple(b.id for b in brokers if b.id is not None),
        host_broker_id=host.id,
        manager_id=manager.id,
    )
