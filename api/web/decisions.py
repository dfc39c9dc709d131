"""A broker's decision screens: vet a request, build its shortlist, review the candidates of
their cluster. Each form is parsed into the JSON API's body and handed to the same handler, so
the rules (here, in the bodies and in the workflow's validators) are written once."""

from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError
from sqlmodel import Session, col, select
from starlette.datastructures import FormData
from temporalio.client import Client

from api.deps import DecisionLimit, EngineDep, SettingsDep, TemporalDep
from api.routes.exchanges import host_review, list_candidates, set_shortlist, vet_exchange
from api.web.forms import FormErrors, form_text, from_refusal, from_validation
from api.web.visitor import SignedInDep, Visitor, checked_form, page, redirect, require_role
from ce4big.db import run_in_session
from ce4big.decisions import query_state
from ce4big.domain import (
    CooperationType,
    HostVerdict,
    Language,
    MeetingFormat,
    OrganisationKind,
    Role,
    Stage,
    cluster_name,
)
from ce4big.errors import Conflict, Forbidden, Invalid
from ce4big.exchanges import workflow_id_for
from ce4big.i18n import LABELS, N_, label
from ce4big.models import (
    NOTE_MAX,
    CandidatePublic,
    Exchange,
    ExchangeCandidate,
    Organisation,
    User,
)
from ce4big.schemas import HostReviewBody, ShortlistBody, VettingBody, known_id
from ce4big.settings import Settings
from ce4big.visibility import visible_exchange

router = APIRouter(include_in_schema=False)

MAX_SHORTLIST = 5
VET_MESSAGES = {
    "decision": N_("Choose a decision: approve, ask for changes or reject."),
    "note": N_(
        "Give a reason of at most 2000 characters: the requester reads it when you reject"
        " the request or ask for changes."
    ),
}
SHORTLIST_MESSAGES = {"organisation_ids": N_("Pick 1 to 5 candidates, each of them once.")}
ORDER_MESSAGE = N_("Give an order number from 1 to 5, or leave it empty.")
HOST_MESSAGES = {
    "decision": N_("Choose to endorse or to veto this introduction."),
    "note": N_("Write a note of at most 2000 characters."),
    "organisation_id": N_("This candidate is not on the shortlist for your cluster."),
}
DONE_VETTING = {"approve": "approved", "request_changes": "changes_requested", "reject": "rejected"}
DONE_HOST_REVIEW = {HostVerdict.ENDORSE: "endorsed", HostVerdict.VETO: "vetoed"}


@dataclass
class Facts:
    """The request as its reviewers read it."""

    exchange: Exchange
    organisation: str
    requester: str
    home_cluster: str
    target_clusters: list[str] = field(default_factory=list)


def _facts(session: Session, exchange: Exchange) -> Facts:
    organisation = session.get(Organisation, exchange.organisation_id or "")
    requester = session.get(User, exchange.requester_id)
    return Facts(
        exchange=exchange,
        organisation=organisation.name if organisation else "",
        requester=(requester.name or requester.email) if requester else "",
        home_cluster=cluster_name(exchange.home_cluster),
        target_clusters=[cluster_name(c) for c in exchange.target_clusters],
    )


def _require_stage(exchange: Exchange, stage: Stage) -> None:
    if exchange.status != stage:
        raise Conflict(f"the exchange is at stage {exchange.status}, not {stage}")


def _home_broker(visitor: Visitor, exchange: Exchange) -> User:
    user = require_role(visitor, Role.BROKER)
    if user.cluster_id != exchange.home_cluster:
        raise Forbidden("only a broker of the requester's cluster decides this")
    return user


def _decision_page(
    request: Request,
    visitor: Visitor,
    settings: Settings,
    template: str,
    facts: Facts,
    context: dict[str, Any],
    *,
    errors: FormErrors | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    exchange = facts.exchange
    return page(
        request,
        visitor,
        settings,
        template,
        {
            **context,
            "facts": facts,
            "cooperation": label(visitor.language, CooperationType, exchange.cooperation_type),
            "kinds": LABELS[OrganisationKind],
            "formats": LABELS[MeetingFormat],
            "language_names": LABELS[Language],
            "note_max": NOTE_MAX,
            "errors": errors or FormErrors(),
        },
        status_code=status_code,
    )


# ---------------------------------------------------------------- vetting


async def _vetting_facts(engine: EngineDep, visitor: Visitor, exchange_id: int) -> Facts:
    user = require_role(visitor, Role.BROKER)

    def load(session: Session) -> Facts:
        exchange = visible_exchange(
            session=session, user=user, exchange_id=known_id(exchange_id, "exchange")
        )
        _home_broker(visitor, exchange)
        return _facts(session, exchange)

    return await run_in_session(engine, load)


@router.get("/exchanges/{exchange_id}/vet", name="vet")
async def vet_form(
    request: Request,
    exchange_id: int,
    visitor: SignedInDep,
    engine: EngineDep,
    settings: SettingsDep,
) -> Response:
    facts = await _vetting_facts(engine, visitor, exchange_id)
    _require_stage(facts.exchange, Stage.VETTING)
    return _decision_page(
        request, visitor, settings, "web/broker/vet.html", facts, {"decision": "", "note": ""}
    )


@router.post("/exchanges/{exchange_id}/vet", dependencies=[DecisionLimit])
async def vet(
    request: Request,
    exchange_id: int,
    visitor: SignedInDep,
    engine: EngineDep,
    settings: SettingsDep,
    client: TemporalDep,
) -> Response:
    form = await checked_form(request, visitor, settings)
    facts = await _vetting_facts(engine, visitor, exchange_id)
    typed = {"decision": form_text(form, "decision"), "note": form_text(form, "note")}
    assert visitor.user is not None
    try:
        body = VettingBody.model_validate(typed)
        await vet_exchange(
            body=body,
            exchange=facts.exchange,
            engine=engine,
            client=client,
            settings=settings,
            user=visitor.user,
        )
    except ValidationError as exc:
        errors, status_code = from_validation(exc, VET_MESSAGES), 422
    except (Invalid, Conflict) as exc:
        errors, status_code = from_refusal(exc, VET_MESSAGES), exc.status_code
    else:
        return redirect(f"/inbox?done={DONE_VETTING[body.decision]}")
    return _decision_page(
        request,
        visitor,
        settings,
        "web/broker/vet.html",
        facts,
        typed,
        errors=errors,
        status_code=status_code,
    )


# ---------------------------------------------------------------- shortlist


async def _shortlist_facts(
    engine: EngineDep, visitor: Visitor, settings: Settings, exchange_id: int
) -> tuple[Facts, list[CandidatePublic]]:
    user = require_role(visitor, Role.BROKER)

    def load(session: Session) -> tuple[Facts, list[CandidatePublic]]:
        exchange = visible_exchange(
            session=session, user=user, exchange_id=known_id(exchange_id, "exchange")
        )
        _home_broker(visitor, exchange)
        return _facts(session, exchange), list_candidates(exchange, session, settings, user)

    return await run_in_session(engine, load)


def _shortlist_page(
    request: Request,
    visitor: Visitor,
    settings: Settings,
    facts: Facts,
    candidates: list[CandidatePublic],
    *,
    picked: list[str],
    orders: dict[str, str],
    errors: FormErrors | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    return _decision_page(
        request,
        visitor,
        settings,
        "web/broker/shortlist.html",
        facts,
        {
            "candidates": candidates,
            "cluster_names": {c.organisation_id: cluster_name(c.cluster) for c in candidates},
            "picked": picked,
            "orders": orders,
            "max_shortlist": MAX_SHORTLIST,
        },
        errors=errors,
        status_code=status_code,
    )


@router.get("/exchanges/{exchange_id}/shortlist", name="shortlist")
async def shortlist_form(
    request: Request,
    exchange_id: int,
    visitor: SignedInDep,
    engine: EngineDep,
    settings: SettingsDep,
) -> Response:
    facts, candidates = await _shortlist_facts(engine, visitor, settings, exchange_id)
    _require_stage(facts.exchange, Stage.MATCHING)
    return _shortlist_page(request, visitor, settings, facts, candidates, picked=[], orders={})


def _ordered_picks(form: FormData, errors: FormErrors) -> tuple[list[str], dict[str, str]]:
    """The picked candidates by their order number (unnumbered ones last, as listed)."""
    picked = [v for v in form.getlist("pick") if isinstance(v, str)]
    typed = {o: form_text(form, f"order-{o}").strip() for o in picked}
    numbers: dict[str, int] = {}
    for organisation_id, text in typed.items():
        if text.isdigit() and 1 <= int(text) <= MAX_SHORTLIST:
            numbers[organisation_id] = int(text)
        elif text:
            errors.add(f"order-{organisation_id}", ORDER_MESSAGE)
    listed = {o: position for position, o in enumerate(picked)}
    ordered = sorted(picked, key=lambda o: (o not in numbers, numbers.get(o, 0), listed[o]))
    return ordered, typed


@router.post("/exchanges/{exchange_id}/shortlist", dependencies=[DecisionLimit])
async def shortlist(
    request: Request,
    exchange_id: int,
    visitor: SignedInDep,
    engine: EngineDep,
    settings: SettingsDep,
    client: TemporalDep,
) -> Response:
    form = await checked_form(request, visitor, settings)
    facts, candidates = await _shortlist_facts(engine, visitor, settings, exchange_id)
    errors = FormErrors()
    ordered, typed = _ordered_picks(form, errors)
    controls = {"organisation_ids": "shortlist-picks"}
    status_code = 422
    assert visitor.user is not None
    if not errors:
        try:
            body = ShortlistBody.model_validate({"organisation_ids": ordered})
            await set_shortlist(
                body=body,
                exchange=facts.exchange,
                engine=engine,
                client=client,
                settings=settings,
                user=visitor.user,
            )
        except ValidationError as exc:
            errors = from_validation(exc, SHORTLIST_MESSAGES, controls)
        except (Invalid, Conflict) as exc:
            errors = from_refusal(exc, SHORTLIST_MESSAGES, controls)
            status_code = exc.status_code
        else:
            return redirect("/inbox?done=shortlisted")
    return _shortlist_page(
        request,
        visitor,
        settings,
        facts,
        candidates,
        picked=ordered,
        orders=typed,
        errors=errors,
        status_code=status_code,
    )


# ---------------------------------------------------------------- host review


@dataclass
class Review:
    candidate: ExchangeCandidate
    organisation: Organisation


async def _host_review_facts(
    engine: EngineDep, client: Client, visitor: Visitor, exchange_id: int
) -> tuple[Facts, list[Review]]:
    """The request and the shortlisted candidates of the broker's cluster, with the decisions
    the workflow has taken (SQL records them all once the review ends)."""
    user = require_role(visitor, Role.BROKER)

    def load(session: Session) -> tuple[Facts, list[Review]]:
        exchange = visible_exchange(
            session=session, user=user, exchange_id=known_id(exchange_id, "exchange")
        )
        rows = session.exec(
            select(ExchangeCandidate, Organisation)
            .join(Organisation, col(Organisation.id) == ExchangeCandidate.organisation_id)
            .where(
                ExchangeCandidate.exchange_id == exchange.id,
                col(ExchangeCandidate.shortlist_position).is_not(None),
                Organisation.cluster_id == user.cluster_id,
            )
            .order_by(col(ExchangeCandidate.shortlist_position))
        ).all()
        if not rows:
            raise Forbidden("only a broker of a shortlisted candidate's cluster reviews it")
        return _facts(session, exchange), [Review(c, o) for c, o in rows]

    facts, reviews = await run_in_session(engine, load)
    state = await query_state(client=client, workflow_id=workflow_id_for(exchange_id))
    live = {
        c.get("organisation_id"): c.get("host_decision")
        for c in (state or {}).get("candidates", [])
    }
    for r in reviews:
        r.candidate.host_decision = r.candidate.host_decision or live.get(r.organisation.id)
    return facts, reviews


def _host_review_page(
    request: Request,
    visitor: Visitor,
    settings: Settings,
    facts: Facts,
    reviews: list[Review],
    *,
    typed: dict[str, str] | None = None,
    errors: FormErrors | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    return _decision_page(
        request,
        visitor,
        settings,
        "web/broker/host_review.html",
        facts,
        {
            "pending": [r for r in reviews if r.candidate.host_decision is None],
            "decided": [r for r in reviews if r.candidate.host_decision is not None],
            "typed": typed or {},
            "cluster_name": cluster_name(visitor.user.cluster_id or "") if visitor.user else "",
        },
        errors=errors,
        status_code=status_code,
    )


@router.get("/exchanges/{exchange_id}/host-review", name="host_review")
async def host_review_form(
    request: Request,
    exchange_id: int,
    visitor: SignedInDep,
    engine: EngineDep,
    settings: SettingsDep,
    client: TemporalDep,
) -> Response:
    facts, reviews = await _host_review_facts(engine, client, visitor, exchange_id)
    if any(r.candidate.host_decision is None for r in reviews):
        _require_stage(facts.exchange, Stage.HOST_REVIEW)
    return _host_review_page(request, visitor, settings, facts, reviews)


@router.post("/exchanges/{exchange_id}/host-review", dependencies=[DecisionLimit])
async def review(
    request: Request,
    exchange_id: int,
    visitor: SignedInDep,
    engine: EngineDep,
    settings: SettingsDep,
    client: TemporalDep,
) -> Response:
    form = await checked_form(request, visitor, settings)
    facts, reviews = await _host_review_facts(engine, client, visitor, exchange_id)
    typed = {name: form_text(form, name) for name in ("organisation_id", "decision", "note")}
    organisation_id = typed["organisation_id"]
    controls = {name: f"{name}-{organisation_id}" for name in ("decision", "note")}
    # A candidate that is not on the shortlist has no control of its own to point at.
    controls["organisation_id"] = ""
    assert visitor.user is not None
    try:
        body = HostReviewBody.model_validate(typed)
        await host_review(
            body=body,
            exchange=facts.exchange,
            engine=engine,
            client=client,
            settings=settings,
            user=visitor.user,
        )
    except ValidationError as exc:
        errors, status_code = from_validation(exc, HOST_MESSAGES, controls), 422
    except (Invalid, Conflict) as exc:
        errors, status_code = from_refusal(exc, HOST_MESSAGES, controls), exc.status_code
    else:
        return redirect(f"/inbox?done={DONE_HOST_REVIEW[body.decision]}")
    return _host_review_page(
        request,
        visitor,
        settings,
        facts,
        reviews,
        typed=typed,
        errors=errors,
        status_code=status_code,
    )
