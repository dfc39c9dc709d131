"""Names of the closed vocabularies that ce4big.i18n has no label for, in English msgids."""

from ce4big.domain import MeetingFormat, OrganisationKind
from ce4big.i18n import N_

KIND_LABELS = {
    OrganisationKind.SME: N_("SME"),
    OrganisationKind.CRO: N_("contract research organisation (CRO)"),
    OrganisationKind.CDMO: N_("contract manufacturer (CDMO)"),
    OrganisationKind.ACADEMIC_LAB: N_("academic laboratory"),
    OrganisationKind.CORE_FACILITY: N_("core facility"),
    OrganisationKind.HOSPITAL: N_("hospital"),
    OrganisationKind.LARGE_COMPANY: N_("large company"),
    OrganisationKind.PLATFORM: N_("technology platform"),
}
MEETING_FORMAT_LABELS = {
    MeetingFormat.VIDEO: N_("video call"),
    MeetingFormat.IN_PERSON: N_("in person"),
    MeetingFormat.PHONE: N_("phone call"),
    MeetingFormat.ANY: N_("any format"),
}
LANGUAGE_NAMES = {"en": N_("English"), "fr": N_("French"), "de": N_("German"), "pl": N_("Polish")}
