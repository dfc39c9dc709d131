"""Action links: what a token from an e-mail allows, and acting on it.

A token is unguessable, stored hashed, bound to one exchange, one recipient and one action,
expires, and is used once: it is marked used only after the workflow accepted the decision, so a
refused or failed attempt loses nothing. Whoever opens it must still be what it was sent to: an
active account with the same role, cluster and organisation, or the organisation's contact.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, update
from sqlmodel import Session, col, select
from temporalio.client import Client

from ce4big.db import run_in_session
from ce4big.decisions import note_host_decision, query_state, send_decision, slot_proposal
from ce4big.domain import CLUSTERS_BY_ID, HostVerdict, VettingVerdict
from ce4big.errors import Forbidden, Invalid, LinkExpired, LinkRevoked, LinkUsed, NotFound
from ce4big.exchanges import workflow_id_for
from ce4big.lifecycle import (
    Actor,
    Amendment,
    DecisionResult,
    HostReviewDecision,
    IntroductionAnswer,
    OutcomeAnswer,
    ShortlistDecision,
    SlotPick,
    SurveyAnswer,
    VettingDecision,
)
from ce4big.models import ActionToken, Exchange, Organisation, User, utcnow
from ce4big.schemas import ActionBody, ProposalBody, SlotBody
from ce4big.security import hash_token
from ce4big.settings import Settings

# What each kind of link lets its holder do.
ALLOWED: dict[str, tuple[str, ...]] = {
    "vet": tuple(VettingVerdict),
    "amend": ("amend",),
    "shortlist": ("shortlist",),
    "host_review": tuple(HostVerdict),
    "introduction": ("accept", "decline"),
    "slots": ("pick_slot", "propose_slots"),
    "survey": ("survey",),
    "outcome": ("outcome",),
    "view": (),
}


class RecipientChanged(Forbidden):
    code = "recipient_changed"


@dataclass(frozen=True)
class Link:
    token: ActionToken
    exchange: Exchange
    actor: Actor

    @property
    def language(self) -> str:
        return str(self.token.payload.get("language") or "en")

    @property
    def timezone(self) -> str:
        return str(self.token.payload.get("timezone") or "UTC")

    @property
    def subject(self) -> str | None:
        value = self.token.payload.get("subject") or self.token.payload.get("organisation_id")
        return str(value) if value else None


def open_link(*, session: Session, plain: str, now: datetime) -> Link:
    """The link's token, exchange and actor; a used, revoked or expired link says which."""
    token = session.exec(
        select(ActionToken).where(ActionToken.token_hash == hash_token(plain))
    ).first()
    if token is None:
        raise NotFound("this link is unknown: check that it was copied whole")
    if token.used_at is not None:
        raise LinkUsed("this link has already been used: each link works once")
    if token.revoked_at is not None:
        raise LinkRevoked("this link no longer works: the step it was for is over")
    if token.expires_at <= now:
        raise LinkExpired("this link has expired")
    exchange = session.get(Exchange, token.exchange_id)
    if exchange is None:
        raise NotFound("the exchange of this link no longer exists")
    check_recipient(session=session, token=token)
    payload = token.payload
    user_id = payload.get("user_id")
    actor = Actor(
        email=token.recipient,
        role=str(payload.get("role") or "partner"),
        user_id=user_id,
        cluster=payload.get("cluster"),
        organisation_id=payload.get("organisation_id"),
        side=payload.get("side"),
    )
    return Link(token=token, exchange=exchange, actor=actor)


def check_recipient(*, session: Session, token: ActionToken) -> None:
    """The authority a link was sent for is read again when it is used: a deactivated account,
    a broker moved to another cluster, a user whose role or organisation changed, or a partner
    organisation that has named another contact can no longer act through it."""
    payload = token.payload
    user_id = payload.get("user_id")
    if user_id is not None:
        user = session.get(User, user_id)
        if user is None or not user.is_active:
            raise RecipientChanged("the account this link was sent to is no longer active")
        sent_for = (payload.get("role"), payload.get("cluster"), payload.get("organisation_id"))
        if (user.role, user.cluster_id, user.organisation_id) != sent_for:
            raise RecipientChanged(
                "the account this link was sent to no longer has the role, cluster or "
                "organisation it was sent for"
            )
        return
    organisation_id = payload.get("organisation_id")
    if organisation_id is not None:
        organisation = session.get(Organisation, organisation_id)
        contact = organisation.contact_email if organisation else ""
        if contact.strip().lower() != token.recipient.strip().lower():
            raise RecipientChanged(
                "this link was sent to a contact that the organisation no longer has"
            )


async def open_link_async(*, engine: Engine, plain: str) -> Link:
    return await run_in_session(
        engine, lambda session: open_link(session=session, plain=plain, now=utcnow())
    )


def _organisation(session: Session, organisation_id: str | None) -> Organisation | None:
    return session.get(Organisation, organisation_id) if organisation_id else None


async def describe_link(
    *, engine: Engine, client: Client, link: Link, settings: Settings
) -> dict[str, Any]:
    """What the link is for, without using it (mail scanners prefetch links)."""
    exchange = link.exchange
    assert exchange.id is not None
    requester_org, subject = await run_in_session(
        engine,
        lambda session: (
            _organisation(session, exchange.organisation_id),
            _organisation(session, link.subject),
        ),
    )
    state = (
        await query_state(
            client=client,
            workflow_id=workflow_id_for(exchange.id),
            wait_seconds=settings.temporal_timeout_seconds,
        )
        or {}
    )
    proposal = state.get("proposal") or {}
    description: dict[str, Any] = {
        "kind": link.token.action,
        "exchange": {
            "id": exchange.id,
            "title": exchange.title,
            "summary": exchange.description,
            "requester_organisation": requester_org.name if requester_org else "",
            "home_cluster": CLUSTERS_BY_ID[exchange.home_cluster].name,
            "cooperation_type": exchange.cooperation_type,
            "stage": state.get("stage", exchange.status),
        },
        "allowed_actions": list(ALLOWED.get(link.token.action, ())),
        "proposed_slots": proposal.get("slots", []) if link.token.action == "slots" else [],
        "proposal_timezone": proposal.get("timezone"),
        "proposed_by": proposal.get("by"),
        "subject_organisation": (
            {"id": subject.id, "name": subject.name, "cluster": subject.cluster_id}
            if subject
            else None
        ),
        "candidates": [
            {
                "organisation_id": c["organisation_id"],
                "name": c["name"],
                "cluster": c["cluster"],
                "reasons": c["reasons"],
            }
            for c in state.get("candidates", [])
        ]
        if link.token.action == "shortlist"
        else [],
        "expires_at": link.token.expires_at.isoformat(),
        "language": link.language,
        "timezone": link.timezone,
    }
    return description


def _require(value: Any, field: str, action: str) -> Any:
    if value in (None, "", []):
        raise Invalid(f"{field}: required for {action}")
    return value


def decision_for(*, link: Link, body: ActionBody, settings: Settings) -> tuple[str, str, Any]:
    """(workflow id, update name, argument) for the action, or a 403/422 naming the field."""
    kind = link.token.action
    action = body.action
    if action not in ALLOWED.get(kind, ()):
        allowed = ", ".join(ALLOWED.get(kind, ())) or "nothing"
        raise Forbidden(f"action: this link allows {allowed}, not {action}")
    exchange_id = link.exchange.id
    assert exchange_id is not None
    workflow_id = workflow_id_for(exchange_id)
    actor = link.actor
    if action in tuple(VettingVerdict):
        verdict = VettingVerdict(action)
        return workflow_id, "vet", VettingDecision(actor, verdict, body.note or body.reason)
    if action == "amend":
        return workflow_id, "amend", Amendment(actor, body.note)
    if action == "shortlist":
        ids = _require(body.organisation_ids, "organisation_ids", action)
        return workflow_id, "set_shortlist", ShortlistDecision(actor, list(ids))
    if action in tuple(HostVerdict):
        subject = _require(link.subject, "organisation_id", action)
        note = body.note or body.reason
        decision = HostReviewDecision(actor, subject, HostVerdict(action), note)
        return workflow_id, "host_review", decision
    if action in ("accept", "decline"):
        subject = _require(link.subject, "organisation_id", action)
        answer = IntroductionAnswer(actor, subject, action == "accept", body.reason)
        return workflow_id, "answer_introduction", answer
    if action == "pick_slot":
        start = _require(body.start, "start", action)
        return workflow_id, "pick_slot", SlotPick(actor, start.isoformat())
    if action == "propose_slots":
        slots = _require(body.slots, "slots", action)
        zone = _require(body.timezone, "timezone", action)
        proposal = ProposalBody(
            slots=[SlotBody(start=s.start, end=s.end) for s in slots],
            timezone=zone,
            mode=body.mode,
            location=body.location,
        )
        return (
            workflow_id,
            "propose_slots",
            slot_proposal(proposal, actor, settings.slot_horizon_days),
        )
    if action == "survey":
        outcome = _require(body.outcome, "outcome", action)
        answer_ = SurveyAnswer(actor, outcome, body.satisfaction, body.recommend, body.comment)
        return workflow_id, "answer_survey", answer_
    outcome = _require(body.outcome, "outcome", action)
    return (
        f"{workflow_id}-outcome",
        "answer_outcome",
        OutcomeAnswer(actor, outcome, body.agreement_type, body.comment),
    )


async def act_on_link(
    *, engine: Engine, client: Client, settings: Settings, link: Link, body: ActionBody
) -> DecisionResult:
    workflow_id, update_name, argument = decision_for(link=link, body=body, settings=settings)
    result = await send_decision(
        client=client,
        workflow_id=workflow_id,
        update=update_name,
        argument=argument,
        wait_seconds=settings.temporal_timeout_seconds,
    )
    await run_in_session(engine, lambda session: _record_use(session, link, body))
    return result


def _record_use(session: Session, link: Link, body: ActionBody) -> None:
    """Mark the token used (a concurrent twin changes nothing) and apply an amendment's text or
    a host review's decision."""
    if body.action in tuple(HostVerdict) and link.subject is not None:
        assert link.exchange.id is not None
        note_host_decision(
            session,
            exchange_id=link.exchange.id,
            organisation_id=link.subject,
            verdict=HostVerdict(body.action),
        )
    if body.action == "amend":
        exchange = session.get(Exchange, link.exchange.id)
        assert exchange is not None
        for name in ("title", "description"):
            value = getattr(body, name)
            if value:
                setattr(exchange, name, value)
        exchange.updated_at = utcnow()
        session.add(exchange)
    session.execute(
        update(ActionToken)
        .where(col(ActionToken.id) == link.token.id, col(ActionToken.used_at).is_(None))
        .values(used_at=utcnow())
    )
