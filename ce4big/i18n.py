"""Words the pages and e-mails share, per language: labels of closed vocabularies and date
patterns."""

from typing import Final

# English is written for European readers: day before month, 24-hour clock.
BABEL_LOCALES: Final = {"en": "en_GB", "fr": "fr_FR", "de": "de_DE", "pl": "pl_PL"}

# How a date and a time join in a sentence ("le mardi 31 mars 2026 à 10:00").
DATETIME_PATTERNS: Final = {
    "en": "{date} at {time}",
    "fr": "{date} à {time}",
    "de": "{date} um {time}",
    "pl": "{date}, godz. {time}",
}

LABELS: Final[dict[str, dict[str, dict[str, str]]]] = {
    "cooperation": {
        "en": {
            "service_agreement": "service agreement",
            "subcontracting": "subcontracting",
            "research_cooperation": "research cooperation",
            "technical_cooperation": "technical cooperation",
            "commercial_agreement": "commercial agreement",
            "licensing": "licensing",
            "joint_eu_project": "joint EU project",
        },
        "fr": {
            "service_agreement": "prestation de services",
            "subcontracting": "sous-traitance",
            "research_cooperation": "coopération de recherche",
            "technical_cooperation": "coopération technique",
            "commercial_agreement": "accord commercial",
            "licensing": "licence",
            "joint_eu_project": "projet européen commun",
        },
        "de": {
            "service_agreement": "Dienstleistungsvertrag",
            "subcontracting": "Unterauftragsvergabe",
            "research_cooperation": "Forschungskooperation",
            "technical_cooperation": "technische Kooperation",
            "commercial_agreement": "Handelsvereinbarung",
            "licensing": "Lizenzierung",
            "joint_eu_project": "gemeinsames EU-Projekt",
        },
        "pl": {
            "service_agreement": "umowa o świadczenie usług",
            "subcontracting": "podwykonawstwo",
            "research_cooperation": "współpraca badawcza",
            "technical_cooperation": "współpraca techniczna",
            "commercial_agreement": "umowa handlowa",
            "licensing": "licencjonowanie",
            "joint_eu_project": "wspólny projekt UE",
        },
    },
    "meeting_mode": {
        "en": {"video": "video call", "in_person": "in person", "phone": "phone call"},
        "fr": {"video": "visioconférence", "in_person": "en présentiel", "phone": "téléphone"},
        "de": {
            "video": "Videokonferenz",
            "in_person": "persönliches Treffen",
            "phone": "Telefonat",
        },
        "pl": {
            "video": "wideokonferencja",
            "in_person": "spotkanie osobiste",
            "phone": "rozmowa telefoniczna",
        },
    },
}
