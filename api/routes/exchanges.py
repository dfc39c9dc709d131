"""Exchanges: create, list, read, and every human decision of the lifecycle."""

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, status
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, func, select
from temporalio.client import Client

from api.deps import (
    CurrentUser,
    EngineDep,
    ExchangeDep,
    SessionDep,
    SettingsDep,
    TemporalDep,
)
from ce4big.catalogue.matching import rank_candidates
from ce4big.db import run_in_session
from ce4big.decisions import (
    actor_for_user,
    note_host_decision,
    query_state,
    send_decision,
    slot_proposal,
)
from ce4big.domain import Role, Stage
from ce4big.errors import Forbidden, Invalid
from ce4big.exchanges import match_request_for, start_exchange_workflow, workflow_id_for
from ce4big.lifecycle import (
    Amendment,
    Closure,
    HostReviewDecision,
    MeetingCancellation,
    NotHeldReport,
    ShortlistDecision,
    SlotPick,
    SurveyAnswer,
    VettingDecision,
)
from ce4big.models import (
    CandidatePublic,
    DecisionPublic,
    Exchange,
    ExchangeCandidate,
    ExchangeCreate,
    ExchangeDetail,
    ExchangeEvent,
    ExchangePublic,
    ExchangesPublic,
    Organisation,
    TimelineEntry,
    User,
    utcnow,
)
from ce4big.schemas import (
    ExchangeAmend,
    HostReviewBody,
    PickBody,
    ProposalBody,
    ReasonBody,
    ShortlistBody,
    SurveyBody,
    VettingBody,
)
from ce4big.visibility import visible_exchanges

router = APIRouter(prefix="/exchanges", tags=["exchanges"])

IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)]


def public(exchange: Exchange) -> ExchangePublic:
    return ExchangePublic.model_validate(exchange, from_attributes=True)


def _require_requester(user: User, exchange: Exchange) -> None:
    if user.id != exchange.requester_id:
        raise Forbidden("only the requester of this exchange does this")


def _find_by_key(session: Session, user: User, key: str) -> Exchange | None:
    return session.exec(
        select(Exchange).where(Exchange.requester_id == user.id, Exchange.idempotency_key == key)
    ).first()


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_exchange(
    body: ExchangeCreate,
    engine: EngineDep,
    settings: SettingsDep,
    client: TemporalDep,
    user: CurrentUser,
    idempotency_key: IdempotencyKey = None,
) -> ExchangePublic:
    if user.role != Role.SME or user.organisation_id is None or user.cluster_id is None:
        raise Forbidden("only an SME user with an organisation submits an exchange request")
    if user.cluster_id in body.target_clusters and len(body.target_clusters) == 1:
        raise Invalid("target_clusters: a partner is sought in another cluster than your own")
    exchange = await run_in_session(
        engine,
        lambda session: _insert_or_find(session=session, user=user, body=body, key=idempotency_key),
    )
    assert exchange.id is not None
    # Starting is idempotent too (one workflow id per exchange), so a retry after a failed
    # start finishes the job.
    await start_exchange_workflow(client=client, settings=settings, exchange=exchange)
    if exchange.workflow_id is None:
        exchange.workflow_id = workflow_id_for(exchange.id)
        await run_in_session(engine, lambda session: session.add(exchange))
    return public(exchange)


def _insert_or_find(
    *, session: Session, user: User, body: ExchangeCreate, key: str | None
) -> Exchange:
    """The exchange for this idempotency key, created if new; committed before the workflow
    starts so that the workflow's activities find it."""
    assert user.id is not None and user.cluster_id is not None
    exchange = _find_by_key(session, user, key) if key else None
    if exchange is not None:
        return exchange
    exchange = Exchange(
        **body.model_dump(mode="json"),
        requester_id=user.id,
        organisation_id=user.organisation_id,
        home_cluster=user.cluster_id,
        status=Stage.VETTING,
        idempotency_key=key,
    )
    session.add(exchange)
    try:
        session.commit()
    except IntegrityError:
        # A concurrent retry with the same key won the insert: answer with its exchange.
        session.rollback()
        exchange = _find_by_key(session, user, key or "")
        if exchange is None:
            raise
    return exchange


@router.get("")
def list_exchanges(
    session: SessionDep,
    user: CurrentUser,
    status_: Annotated[Stage | None, Query(alias="status")] = None,
    cluster: Annotated[str | None, Query(max_length=32)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> ExchangesPublic:
    query = visible_exchanges(user)
    if status_ is not None:
        query = query.where(Exchange.status == status_)
    if cluster is not None:
        query = query.where(Exchange.home_cluster == cluster)
    count = session.exec(select(func.count()).select_from(query.subquery())).one()
    rows = session.exec(
        query.order_by(col(Exchange.created_at).desc(), col(Exchange.id).desc())
        .offset(offset)
        .limit(limit)
    ).all()
    return ExchangesPublic(data=[public(e) for e in rows], count=count)


@router.get("/{exchange_id}")
async def read_exchange(
    exchange: ExchangeDep, engine: EngineDep, client: TemporalDep
) -> ExchangeDetail:
    assert exchange.id is not None
    query = (
        select(ExchangeEvent)
        .where(ExchangeEvent.exchange_id == exchange.id)
        .order_by(col(ExchangeEvent.at), col(ExchangeEvent.id))
    )
    events = await run_in_session(engine, lambda session: session.exec(query).all())
    state = await query_state(client=client, workflow_id=workflow_id_for(exchange.id))
    return ExchangeDetail(
        **public(exchange).model_dump(),
        state=state,
        timeline=[TimelineEntry.model_validate(e, from_attributes=True) for e in events],
    )


@router.get("/{exchange_id}/candidates")
def list_candidates(
    exchange: ExchangeDep, session: SessionDep, settings: SettingsDep, user: CurrentUser
) -> list[CandidatePublic]:
    if user.role == Role.SME:
        raise Forbidden("candidates are for brokers and managers")
    stored = session.exec(
        select(ExchangeCandidate, Organisation)
        .join(Organisation, col(Organisation.id) == ExchangeCandidate.organisation_id)
        .where(ExchangeCandidate.exchange_id == exchange.id)
        .order_by(col(ExchangeCandidate.rank), col(ExchangeCandidate.organisation_id))
    ).all()
    if stored:
        return [
            CandidatePublic(
                **candidate.model_dump(
                    include={
                        "organisation_id",
                        "score",
                        "reasons",
                        "shortlist_position",
                        "host_decision",
                        "intro_status",
                    }
                ),
                name=organisation.name,
                cluster=organisation.cluster_id,
            )
            for candidate, organisation in stored
        ]
    # Before matching has run, the same ranking `ce4big match` prints for this request.
    ranked = rank_candidates(
        session=session, request=match_request_for(exchange), top=20, settings=settings
    )
    ids = [c.organisation_id for c in ranked]
    organisations = {
        o.id: o for o in session.exec(select(Organisation).where(col(Organisation.id).in_(ids)))
    }
    return [
        CandidatePublic(
            **asdict(c),
            name=organisations[c.organisation_id].name,
            cluster=organisations[c.organisation_id].cluster_id,
        )
        for c in ranked
    ]


async def _decide(client: Client, exchange: Exchange, update: str, argument: Any) -> DecisionPublic:
    assert exchange.id is not None
    result = await send_decision(
        client=client, workflow_id=workflow_id_for(exchange.id), update=update, argument=argument
    )
    return DecisionPublic(exchange_id=exchange.id, stage=result.stage, detail=result.detail)


@router.post("/{exchange_id}/vetting")
async def vet_exchange(
    body: VettingBody, exchange: ExchangeDep, client: TemporalDep, user: CurrentUser
) -> DecisionPublic:
    decision = VettingDecision(actor_for_user(user), body.decision, body.note)
    return await _decide(client, exchange, "vet", decision)


@router.post("/{exchange_id}/amend")
async def amend_exchange(
    body: ExchangeAmend,
    exchange: ExchangeDep,
    engine: EngineDep,
    client: TemporalDep,
    user: CurrentUser,
) -> DecisionPublic:
    _require_requester(user, exchange)
    result = await _decide(client, exchange, "amend", Amendment(actor_for_user(user), body.note))
    # The workflow accepted the amendment: only now does the request text change.
    changes = body.model_dump(include={"title", "description"}, exclude_none=True)
    for name, value in changes.items():
        setattr(exchange, name, value)
    exchange.updated_at = utcnow()
    await run_in_session(engine, lambda session: session.add(exchange))
    return result


@router.post("/{exchange_id}/shortlist")
async def set_shortlist(
    body: ShortlistBody, exchange: ExchangeDep, client: TemporalDep, user: CurrentUser
) -> DecisionPublic:
    decision = ShortlistDecision(actor_for_user(user), list(body.organisation_ids))
    return await _decide(client, exchange, "set_shortlist", decision)


@router.post("/{exchange_id}/host-review")
async def host_review(
    body: HostReviewBody,
    exchange: ExchangeDep,
    engine: EngineDep,
    client: TemporalDep,
    user: CurrentUser,
) -> DecisionPublic:
    organisation = await run_in_session(
        engine, lambda session: session.get(Organisation, body.organisation_id)
    )
    if organisation is None:
        raise Invalid(f"organisation_id: no catalogue organisation {body.organisation_id!r}")
    if user.role != Role.BROKER or user.cluster_id != organisation.cluster_id:
        raise Forbidden(f"only a broker of {organisation.cluster_id} reviews this candidate")
    decision = HostReviewDecision(
        actor_for_user(user), body.organisation_id, body.decision, body.note
    )
    result = await _decide(client, exchange, "host_review", decision)
    exchange_id = exchange.id
    assert exchange_id is not None
    await run_in_session(
        engine,
        lambda session: note_host_decision(
            session,
            exchange_id=exchange_id,
            organisation_id=body.organisation_id,
            verdict=body.decision,
        ),
    )
    return result


@router.post("/{exchange_id}/meeting/proposals")
async def propose_slots(
    body: ProposalBody,
    exchange: ExchangeDep,
    client: TemporalDep,
    settings: SettingsDep,
    user: CurrentUser,
) -> DecisionPublic:
    _require_requester(user, exchange)
    proposal = slot_proposal(body, actor_for_user(user), settings.slot_horizon_days)
    return await _decide(client, exchange, "propose_slots", proposal)


@router.post("/{exchange_id}/meeting/pick")
async def pick_slot(
    body: PickBody, exchange: ExchangeDep, client: TemporalDep, user: CurrentUser
) -> DecisionPublic:
    _require_requester(user, exchange)
    return await _decide(
        client, exchange, "pick_slot", SlotPick(actor_for_user(user), body.start.isoformat())
    )


@router.post("/{exchange_id}/meeting/cancel")
async def cancel_meeting(
    body: ReasonBody, exchange: ExchangeDep, client: TemporalDep, user: CurrentUser
) -> DecisionPublic:
    _require_requester(user, exchange)
    cancellation = MeetingCancellation(actor_for_user(user), body.reason)
    return await _decide(client, exchange, "cancel_meeting", cancellation)


@router.post("/{exchange_id}/meeting/not-held")
async def report_not_held(
    body: ReasonBody, exchange: ExchangeDep, client: TemporalDep, user: CurrentUser
) -> DecisionPublic:
    _require_requester(user, exchange)
    report = NotHeldReport(actor_for_user(user), body.reason)
    return await _decide(client, exchange, "report_not_held", report)


@router.post("/{exchange_id}/survey")
async def answer_survey(
    body: SurveyBody, exchange: ExchangeDep, client: TemporalDep, user: CurrentUser
) -> DecisionPublic:
    _require_requester(user, exchange)
    answer = SurveyAnswer(
        actor_for_user(user), body.outcome, body.satisfaction, body.recommend, body.comment
    )
    return await _decide(client, exchange, "answer_survey", answer)


@router.post("/{exchange_id}/withdraw")
async def withdraw_exchange(
    exchange: ExchangeDep, client: TemporalDep, user: CurrentUser, body: ReasonBody | None = None
) -> DecisionPublic:
    _require_requester(user, exchange)
    reason = body.reason if body else ""
    return await _decide(client, exchange, "withdraw", Closure(actor_for_user(user), reason))


@router.post("/{exchange_id}/cancel")
async def cancel_exchange(
    exchange: ExchangeDep, client: TemporalDep, user: CurrentUser, body: ReasonBody | None = None
) -> DecisionPublic:
    if user.role not in (Role.MANAGER, Role.ADMIN):
        raise Forbidden("only a manager cancels an exchange")
    reason = body.reason if body else ""
    return await _decide(client, exchange, "cancel", Closure(actor_for_user(user), reason))
