"""Reference data and the closed vocabularies: each is written here once and used by the
tables, the request schemas, the workflow dataclasses, the e-mail contexts and the pages."""

from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True, slots=True)
class ClusterInfo:
    id: str
    name: str
    city: str
    country: str
    timezone: str
    language: str


CLUSTERS: tuple[ClusterInfo, ...] = (
    ClusterInfo("atlanpole", "Atlanpole Biotherapies", "Nantes", "FR", "Europe/Paris", "fr"),
    ClusterInfo("biowin", "BioWin", "Wallonia", "BE", "Europe/Brussels", "fr"),
    ClusterInfo("biom", "BioM", "Martinsried/Munich", "DE", "Europe/Berlin", "de"),
    ClusterInfo("klsk", "Klaster LifeScience Kraków", "Kraków", "PL", "Europe/Warsaw", "pl"),
)
CLUSTER_IDS = frozenset(c.id for c in CLUSTERS)
CLUSTERS_BY_ID = {c.id: c for c in CLUSTERS}


def cluster_name(cluster_id: str) -> str:
    """`BioM` for `biom`; an unknown id as it is."""
    cluster = CLUSTERS_BY_ID.get(cluster_id)
    return cluster.name if cluster else cluster_id


class Language(StrEnum):
    """The languages of pages, e-mails and catalogue text."""

    EN = "en"
    FR = "fr"
    DE = "de"
    PL = "pl"


LANGUAGES: tuple[str, ...] = tuple(Language)


class Role(StrEnum):
    SME = "sme"
    BROKER = "broker"
    MANAGER = "manager"
    ADMIN = "admin"


class OrganisationKind(StrEnum):
    SME = "sme"
    CRO = "cro"
    CDMO = "cdmo"
    ACADEMIC_LAB = "academic_lab"
    CORE_FACILITY = "core_facility"
    HOSPITAL = "hospital"
    LARGE_COMPANY = "large_company"
    PLATFORM = "platform"


CERTIFICATIONS = (
    "GLP",
    "GMP",
    "GCP",
    "GDP",
    "ISO 9001",
    "ISO 13485",
    "ISO 15189",
    "ISO/IEC 17025",
    "ISO 27001",
    "AAALAC",
)


class CooperationType(StrEnum):
    SERVICE_AGREEMENT = "service_agreement"
    SUBCONTRACTING = "subcontracting"
    RESEARCH_COOPERATION = "research_cooperation"
    TECHNICAL_COOPERATION = "technical_cooperation"
    COMMERCIAL_AGREEMENT = "commercial_agreement"
    LICENSING = "licensing"
    JOINT_EU_PROJECT = "joint_eu_project"


class MeetingFormat(StrEnum):
    VIDEO = "video"
    IN_PERSON = "in_person"
    PHONE = "phone"
    ANY = "any"


class MeetingMode(StrEnum):
    """How an agreed meeting takes place (the request's `MeetingFormat` may also say any)."""

    VIDEO = "video"
    IN_PERSON = "in_person"
    PHONE = "phone"


class VettingVerdict(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"
    REQUEST_CHANGES = "request_changes"


class HostVerdict(StrEnum):
    ENDORSE = "endorse"
    VETO = "veto"


class SurveyOutcome(StrEnum):
    """What the requester says of the meeting in the follow-up survey."""

    DID_NOT_TAKE_PLACE = "did_not_take_place"
    INSUFFICIENT_INTEREST = "insufficient_interest"
    INFORMATIVE_NO_COOPERATION = "informative_no_cooperation"
    COOPERATION_POSSIBLE = "cooperation_possible"


class WaveOutcome(StrEnum):
    """Where a cooperation stands months later, in order of progress."""

    NO_FURTHER_CONTACT = "no_further_contact"
    VALUABLE_CONTACT = "valuable_contact"
    NEGOTIATION_STARTED = "negotiation_started"
    AGREEMENT_REACHED = "agreement_reached"


class Stage(StrEnum):
    VETTING = "vetting"
    CHANGES_REQUESTED = "changes_requested"
    MATCHING = "matching"
    HOST_REVIEW = "host_review"
    INTRODUCTION = "introduction"
    SCHEDULING = "scheduling"
    MEETING_SCHEDULED = "meeting_scheduled"
    FOLLOW_UP = "follow_up"
    CLOSED = "closed"


class FunnelStep(StrEnum):
    """The steps of the programme funnel, each counted once an exchange has reached it."""

    SUBMITTED = "submitted"
    APPROVED = "approved"
    SHORTLISTED = "shortlisted"
    PARTNER_ACCEPTED = "partner_accepted"
    MEETING_SCHEDULED = "meeting_scheduled"
    MEETING_HELD = "meeting_held"
    SURVEY_ANSWERED = "survey_answered"
    COMPLETED = "completed"


class Party(StrEnum):
    """Whom a stage waits on, without the organisation or cluster it names."""

    REQUESTER = "requester"
    PARTNER = "partner"
    HOME_BROKER = "home_broker"
    HOST_BROKER = "host_broker"


class Outcome(StrEnum):
    COMPLETED = "completed"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"
    CANCELLED = "cancelled"
    NO_PARTNER = "no_partner"
    EXPIRED = "expired"
