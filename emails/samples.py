"""A realistic context for every kind: for the dev mailbox's previews and for the tests."""

from typing import Any

_COMMON: dict[str, Any] = {
    "recipient_name": "Claire Moreau",
    "exchange_id": 42,
    "exchange_title": "GLP toxicology study for an AAV gene therapy candidate",
    "requester_organisation": "NantesGene Therapeutics",
    "home_cluster": "Atlanpole Biotherapies",
}
_SUMMARY = (
    "We are preparing the IND for an AAV9 gene therapy in a rare neuromuscular disease and\n"
    "need a GLP-certified partner for a 3-month repeat-dose toxicology study in rodents,\n"
    "ideally with experience of biodistribution assays by qPCR."
)
_MEETING: dict[str, Any] = {
    "partner_organisation": "Kraków Preclinical Services",
    "start": "2026-03-31T10:00:00+02:00",
    "end": "2026-03-31T11:00:00+02:00",
    "timezone": "Europe/Paris",
    "mode": "video",
    "location": "https://meet.example.org/ce4big-42",
}
_SLOTS = [
    {"start": "2026-03-27T10:00:00+01:00", "end": "2026-03-27T11:00:00+01:00"},
    {"start": "2026-03-30T14:00:00+02:00", "end": "2026-03-30T15:00:00+02:00"},
    {"start": "2026-03-31T09:30:00+02:00", "end": "2026-03-31T10:30:00+02:00"},
]

_SPECIFIC: dict[str, dict[str, Any]] = {
    "sign_in": {"valid_minutes": 15},
    "request_received": {},
    "vetting_needed": {
        "requester_name": "Claire Moreau",
        "summary": _SUMMARY,
        "cooperation_type": "service_agreement",
        "respond_by": "2026-03-20T17:00:00+01:00",
    },
    "vetting_reminder": {"waiting_since": "2026-03-13T09:12:00+01:00"},
    "vetting_escalation": {"waiting_since": "2026-03-13T09:12:00+01:00"},
    "changes_requested": {
        "note": "Please name the test item's stage (pre-IND?) and the budget range you expect.",
        "respond_by": "2026-04-10T17:00:00+02:00",
    },
    "changes_reminder": {
        "note": "Please name the test item's stage (pre-IND?) and the budget range you expect."
    },
    "request_rejected": {
        "reason": "This is a request for funding, which the exchange programme cannot provide."
    },
    "request_approved": {},
    "shortlist_needed": {"candidate_count": 7},
    "shortlist_reminder": {"waiting_since": "2026-03-16T10:00:00+01:00"},
    "shortlist_escalation": {"waiting_since": "2026-03-16T10:00:00+01:00"},
    "host_review_request": {
        "partner_organisation": "Kraków Preclinical Services",
        "host_cluster": "Klaster LifeScience Kraków",
        "summary": _SUMMARY,
        "cooperation_type": "service_agreement",
        "respond_by": "2026-03-24T17:00:00+01:00",
    },
    "host_review_reminder": {
        "partner_organisation": "Kraków Preclinical Services",
        "host_cluster": "Klaster LifeScience Kraków",
    },
    "introduction_request": {
        "partner_organisation": "Kraków Preclinical Services",
        "summary": _SUMMARY,
        "cooperation_type": "service_agreement",
        "respond_by": "2026-04-03T17:00:00+02:00",
    },
    "introduction_reminder": {
        "partner_organisation": "Kraków Preclinical Services",
        "summary": _SUMMARY,
        "respond_by": "2026-04-03T17:00:00+02:00",
    },
    "introduction_made": {
        "recipient_side": "requester",
        "partner_organisation": "Kraków Preclinical Services",
        "counterpart_organisation": "Kraków Preclinical Services",
        "counterpart_name": "Dr Tomasz Wiśniewski",
        "counterpart_email": "t.wisniewski@krakow-preclinical.example",
        "counterpart_website": "https://krakow-preclinical.example",
    },
    "partner_declined": {
        "declined_organisation": "BioTox Liège",
        "next_step": "next_candidate",
        "reason": "Our GLP facility is fully booked until the autumn.",
    },
    "slots_proposed": {
        "proposed_by": "NantesGene Therapeutics",
        "slots": _SLOTS,
        "timezone": "Europe/Paris",
        "mode": "video",
        "respond_by": "2026-03-25T17:00:00+01:00",
    },
    "slots_reminder": {
        "proposed_by": "NantesGene Therapeutics",
        "slots": _SLOTS,
        "timezone": "Europe/Paris",
    },
    "scheduling_stuck": {
        "partner_organisation": "Kraków Preclinical Services",
        "waiting_since": "2026-03-18T11:00:00+01:00",
        "rounds": 3,
    },
    "meeting_confirmed": dict(_MEETING),
    "meeting_reminder": dict(_MEETING),
    "meeting_rescheduled": {**_MEETING, "previous_start": "2026-03-27T10:00:00+01:00"},
    "meeting_cancelled": {**_MEETING, "reason": "The exchange was withdrawn by the requester."},
    "survey_invitation": {
        "partner_organisation": "Kraków Preclinical Services",
        "meeting_start": "2026-03-31T10:00:00+02:00",
        "respond_by": "2026-04-21T17:00:00+02:00",
    },
    "survey_reminder": {"partner_organisation": "Kraków Preclinical Services"},
    "exchange_closed": {"outcome": "withdrawn", "reason": "We found a provider in-house."},
    "outcome_wave": {"partner_organisation": "Kraków Preclinical Services", "months": 6},
}

# Kinds whose link leads somewhere else than a `/t/{token}` page get an exchange page link.
_EXCHANGE_PAGE_KINDS = frozenset(
    {
        "vetting_needed",
        "vetting_reminder",
        "vetting_escalation",
        "shortlist_needed",
        "shortlist_reminder",
        "shortlist_escalation",
        "scheduling_stuck",
    }
)
_ACTION_KINDS = frozenset(
    {
        "changes_requested",
        "changes_reminder",
        "host_review_request",
        "host_review_reminder",
        "introduction_request",
        "introduction_reminder",
        "introduction_made",
        "slots_proposed",
        "slots_reminder",
        "survey_invitation",
        "survey_reminder",
        "outcome_wave",
    }
)


def sample_context(kind: str, *, base_url: str = "http://127.0.0.1:8000") -> dict[str, Any]:
    """A JSON-able context for `kind`, as the workflow would send it."""
    if kind == "sign_in":
        return {
            "recipient_name": _COMMON["recipient_name"],
            "sign_in_url": f"{base_url}/login/sample-sign-in",
            **_SPECIFIC[kind],
        }
    context: dict[str, Any] = {**_COMMON, **_SPECIFIC[kind]}
    if kind in _EXCHANGE_PAGE_KINDS:
        context["action_url"] = f"{base_url}/exchanges/{_COMMON['exchange_id']}"
    elif kind in _ACTION_KINDS:
        context["action_url"] = f"{base_url}/t/sample-{kind.replace('_', '-')}"
    if kind == "request_received":
        context["exchange_url"] = f"{base_url}/exchanges/{_COMMON['exchange_id']}"
    return context


def sample_kinds() -> list[str]:
    return list(_SPECIFIC)
