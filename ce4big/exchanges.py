"""Starting an exchange's workflow (the timings it keeps for life, one workflow per id), the
matcher's view of its request, and what each reader may see of an exchange."""

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import delete
from sqlmodel import Session, col, select
from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from ce4big.catalogue.matching import MatchRequest
from ce4big.domain import Language, Role
from ce4big.errors import Unavailable
from ce4big.lifecycle import REQUESTER, ExchangeInput, Timings
from ce4big.models import (
    Exchange,
    ExchangeCandidate,
    ExchangeEvent,
    Organisation,
    TimelineEntry,
    User,
)
from ce4big.settings import Settings

DAY = 86400.0


def exchange_timings(settings: Settings) -> Timings:
    """The settings' durations in seconds, divided by the time scale, frozen at start."""

    def days(value: float) -> float:
        return settings.scaled_seconds(value * DAY)

    return Timings(
        vetting_reminder=days(settings.vetting_reminder_days),
        vetting_escalation=days(settings.vetting_escalation_days),
        changes_reminder=days(settings.changes_reminder_days),
        changes_expiry=days(settings.changes_expiry_days),
        shortlist_reminder=days(settings.shortlist_reminder_days),
        shortlist_escalation=days(settings.shortlist_escalation_days),
        host_review_consent=days(settings.host_review_consent_days),
        partner_reminder=days(settings.partner_reminder_days),
        partner_deadline=days(settings.partner_deadline_days),
        scheduling_reminder=days(settings.scheduling_reminder_days),
        scheduling_deadline=days(settings.scheduling_deadline_days),
        meeting_reminder_before=settings.scaled_seconds(settings.meeting_reminder_hours * 3600),
        survey_delay=days(settings.survey_delay_days),
        survey_reminder=days(settings.survey_reminder_days),
        survey_close=days(settings.survey_close_days),
        outcome_wave=days(settings.outcome_wave_days),
        outcome_wave_close=days(settings.outcome_wave_close_days),
        time_scale=settings.ce4big_time_scale,
    )


def workflow_id_for(exchange_id: int) -> str:
    return f"exchange-{exchange_id}"


async def start_exchange_workflow(
    *, client: Client, settings: Settings, exchange: Exchange
) -> WorkflowHandle[object, str]:
    """Start the exchange's workflow; a second start for the same exchange finds the first.
    Unavailable when Temporal does not take the start within TEMPORAL_TIMEOUT_SECONDS."""
    assert exchange.id is not None
    workflow_id = workflow_id_for(exchange.id)
    wait = settings.temporal_timeout_seconds
    try:
        return await asyncio.wait_for(
            client.start_workflow(
                "ExchangeWorkflow",
                ExchangeInput(
                    exchange_id=exchange.id,
                    requester_id=exchange.requester_id,
                    requester_organisation_id=exchange.organisation_id,
                    home_cluster=exchange.home_cluster,
                    timings=exchange_timings(settings),
                ),
                id=workflow_id,
                task_queue=settings.temporal_task_queue,
                result_type=str,
                # An exchange id names one workflow for ever, even after it closed.
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                rpc_timeout=timedelta(seconds=wait),
            ),
            wait,
        )
    except WorkflowAlreadyStartedError:
        return client.get_workflow_handle(workflow_id, result_type=str)
    except (TimeoutError, RPCError) as exc:
        reason = exc.message if isinstance(exc, RPCError) else "no answer in time"
        raise Unavailable(
            f"the exchange service is not answering ({reason}): nothing was saved, send the"
            " request again in a moment"
        ) from None


def discard_unstarted_exchange(*, session: Session, exchange_id: int) -> None:
    """Remove an exchange whose workflow could not be started, so that no request waits for a
    workflow that will never come. Were the start taken after all, the workflow's first step
    finds no exchange and fails it (UnknownExchange); once that step has recorded anything the
    row is kept (the delete fails), and that workflow serves it."""
    session.execute(
        delete(Exchange).where(col(Exchange.id) == exchange_id, col(Exchange.workflow_id).is_(None))
    )


def match_request_for(exchange: Exchange) -> MatchRequest:
    return MatchRequest(
        title=exchange.title,
        description=exchange.description,
        home_cluster=exchange.home_cluster,
        target_clusters=list(exchange.target_clusters),
        partner_kinds=list(exchange.partner_kinds),
        required_certifications=list(exchange.required_certifications),
        cooperation_type=exchange.cooperation_type,
        language=(exchange.languages or [Language.EN])[0],
        requester_organisation_id=exchange.organisation_id,
    )


# ---------------------------------------------------------------- what each reader may see


class Audience(StrEnum):
    ALL = "all"  # the home cluster's brokers, managers and admins
    REQUESTER = "requester"  # the requesting organisation's users
    HOST = "host"  # a broker of a cluster with a candidate


@dataclass(frozen=True, slots=True)
class CandidateFacts:
    organisation_id: str
    cluster: str
    contact_email: str | None
    accepted: bool


def candidate_facts(*, session: Session, exchange_id: int) -> list[CandidateFacts]:
    rows = session.exec(
        select(ExchangeCandidate, Organisation)
        .join(Organisation, col(Organisation.id) == ExchangeCandidate.organisation_id)
        .where(ExchangeCandidate.exchange_id == exchange_id)
    ).all()
    return [
        CandidateFacts(o.id, o.cluster_id, o.contact_email, c.intro_status == "accepted")
        for c, o in rows
    ]


# Events a requester never sees: whom else the brokers considered, and how.
STAFF_EVENTS = frozenset({"candidates_found", "shortlisted", "host_review_done"})
# Events only the home cluster and managers see (their detail names addresses and audiences).
HOME_EVENTS = frozenset({"email_failed"})


@dataclass(frozen=True)
class Disclosure:
    """What one reader may see of an exchange (double opt-in: nobody learns who a candidate
    is, or how it answered, before it accepted).

    The home cluster's brokers, managers and admins see everything. The requester sees its
    request, the stage, whom it waits on (a partner unnamed until one accepted, then that one
    only), the accepted partner and the meeting; no candidates, shortlist or host decisions. A
    host broker sees the stage, and the candidates of its own cluster with their decisions.
    An event's actor is named only to the home cluster and managers, or when it is the reader,
    or the contact of a partner the reader may see; otherwise it is empty."""

    audience: Audience
    cluster: str | None
    organisations: frozenset[str]
    actors: frozenset[str]

    @property
    def full(self) -> bool:
        return self.audience == Audience.ALL

    def sees(self, organisation_id: object) -> bool:
        return self.full or organisation_id in self.organisations

    def waiting_on(self, parties: Iterable[str]) -> list[str]:
        shown: list[str] = []
        for party in parties:
            kind, _, detail = party.partition(":")
            hidden = (kind == "partner" and detail not in self.organisations) or (
                kind.startswith("host_broker")
                and not (self.audience == Audience.HOST and detail == self.cluster)
            )
            if detail and not self.full and hidden:
                party = kind
            if party not in shown:
                shown.append(party)
        return shown

    def state(self, state: Mapping[str, Any] | None) -> dict[str, Any] | None:
        """The workflow's `state` answer as this reader may see it."""
        if state is None or self.full:
            return None if state is None else dict(state)
        partner = state.get("partner")
        sees_partner = partner is not None and self.sees(partner)
        survey: Mapping[str, Any] = state.get("survey") or {}
        host = self.audience == Audience.HOST
        if host:
            survey = survey if sees_partner else {}
        else:
            survey = {side: answer for side, answer in survey.items() if side == REQUESTER}
        current = state.get("current_candidate")
        return {
            "stage": state.get("stage"),
            "waiting_on": self.waiting_on(state.get("waiting_on") or []),
            "since": state.get("since"),
            "deadline": state.get("deadline"),
            "outcome": state.get("outcome"),
            "candidates": [
                c
                for c in state.get("candidates") or []
                if host and self.sees(c.get("organisation_id"))
            ],
            "shortlist": [o for o in state.get("shortlist") or [] if host and self.sees(o)],
            "current_candidate": current if host and self.sees(current) else None,
            "partner": partner if sees_partner else None,
            "proposal": state.get("proposal") if sees_partner else None,
            "meeting": state.get("meeting") if sees_partner else None,
            "survey": dict(survey),
            "matching_rounds": state.get("matching_rounds") if host else None,
        }

    def events(self, events: Sequence[ExchangeEvent]) -> list[TimelineEntry]:
        """The timeline as this reader may see it."""
        shown = []
        for event in events:
            detail = dict(event.detail or {})
            actor = event.actor
            if not self.full:
                if event.kind in HOME_EVENTS or (
                    self.audience == Audience.REQUESTER and event.kind in STAFF_EVENTS
                ):
                    continue
                if "organisation_id" in detail and not self.sees(detail["organisation_id"]):
                    continue
                if "organisation_ids" in detail:
                    detail["organisation_ids"] = [
                        o for o in detail["organisation_ids"] or [] if self.sees(o)
                    ]
                if isinstance(detail.get("decisions"), dict):
                    detail["decisions"] = {
                        o: d for o, d in detail["decisions"].items() if self.sees(o)
                    }
                if "waiting_on" in detail:
                    detail["waiting_on"] = self.waiting_on(detail["waiting_on"] or [])
                if actor.lower() not in self.actors:
                    actor = ""
            shown.append(TimelineEntry(at=event.at, kind=event.kind, actor=actor, detail=detail))
        return shown


def disclosure_for(
    *,
    user: User,
    exchange: Exchange,
    candidates: Sequence[CandidateFacts],
    state: Mapping[str, Any] | None = None,
) -> Disclosure:
    if user.role in (Role.MANAGER, Role.ADMIN) or (
        user.role == Role.BROKER and user.cluster_id == exchange.home_cluster
    ):
        return Disclosure(Audience.ALL, user.cluster_id, frozenset(), frozenset())
    if user.role == Role.BROKER:
        audience = Audience.HOST
        live = [
            c.get("organisation_id")
            for c in (state or {}).get("candidates") or []
            if c.get("cluster") == user.cluster_id
        ]
        organisations = {c.organisation_id for c in candidates if c.cluster == user.cluster_id}
        organisations |= {str(o) for o in live if o}
    else:
        audience = Audience.REQUESTER
        organisations = {c.organisation_id for c in candidates if c.accepted}
        if (state or {}).get("partner"):
            organisations.add(str((state or {})["partner"]))
    contacts = {
        c.contact_email.lower()
        for c in candidates
        if c.contact_email and c.organisation_id in organisations
    }
    return Disclosure(
        audience,
        user.cluster_id,
        frozenset(organisations),
        frozenset({"system", user.email.lower(), *contacts}),
    )
