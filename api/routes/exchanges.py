"""Exchanges: create, list, read, and every human decision of the lifecycle."""

from collections.abc import Callable
from dataclasses import asdict
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Header, Query, status
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, func, select
from temporalio.client import Client

from api.deps import (
    CurrentUser,
    DecisionLimit,
    EngineDep,
    ExchangeDep,
    SessionDep,
    SettingsDep,
    TemporalDep,
)
from ce4big.catalogue.matching import rank_candidates
from ce4big.db import run_in_session
from ce4big.decisions import (
    ALREADY_DECIDED,
    FINAL_VERDICTS,
    InForce,
    actor_for_user,
    amendment_in_force,
    amendment_recorded,
    host_review_in_force,
    host_review_recorded,
    last_vetting_record,
    note_host_decision,
    pick_in_force,
    pick_recorded,
    proposal_in_force,
    proposal_recorded,
    query_state,
    send_decision,
    shortlist_in_force,
    shortlist_recorded,
    slot_proposal,
    vetting_in_force,
    vetting_recorded,
)
from ce4big.domain import Role, Stage
from ce4big.errors import Forbidden, Invalid
from ce4big.exchanges import (
    candidate_facts,
    discard_unstarted_exchange,
    disclosure_for,
    match_request_for,
    start_exchange_workflow,
    workflow_id_for,
)
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
    User,
    utcnow,
)
from ce4big.schemas import (
    ID_MAX,
    ExchangeAmend,
    HostReviewBody,
    PickBody,
    ProposalBody,
    ReasonBody,
    ShortlistBody,
    SqlText,
    SurveyBody,
    VettingBody,
    error_responses,
)
from ce4big.settings import Settings
from ce4big.visibility import visible_exchanges

T = TypeVar("T")

router = APIRouter(
    prefix="/exchanges", tags=["exchanges"], responses=error_responses(401, 422, 503)
)
# Every body is read (400 when it is not UTF-8 JSON) after its size is checked (413).
WRITE = error_responses(400, 413)
ONE_EXCHANGE = error_responses(404)
# A decision may come from the wrong caller (403), not fit the lifecycle's stage (409), or be
# one too many from this client (429).
DECISION = WRITE | ONE_EXCHANGE | error_responses(403, 409, 429)

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


@router.post("", status_code=status.HTTP_201_CREATED, responses=WRITE | error_responses(403))
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
    exchange, created = await run_in_session(
        engine,
        lambda session: _insert_or_find(session=session, user=user, body=body, key=idempotency_key),
    )
    exchange_id = exchange.id
    assert exchange_id is not None
    # Starting is idempotent too (one workflow id per exchange), so a retry with the same key
    # after a failed start finishes the job.
    try:
        await start_exchange_workflow(client=client, settings=settings, exchange=exchange)
    except Exception:
        # No workflow will ever serve a request this call saved: it goes too, so that a retry
        # without a key does not leave it behind.
        if created:
            await run_in_session(
                engine,
                lambda session: discard_unstarted_exchange(
                    session=session, exchange_id=exchange_id
                ),
            )
        raise
    if exchange.workflow_id is None:
        exchange.workflow_id = workflow_id_for(exchange_id)
        await run_in_session(engine, lambda session: session.add(exchange))
    return public(exchange)


def _insert_or_find(
    *, session: Session, user: User, body: ExchangeCreate, key: str | None
) -> tuple[Exchange, bool]:
    """The exchange for this idempotency key, created if new (True); committed before the
    workflow starts so that the workflow's activities find it."""
    assert user.id is not None and user.cluster_id is not None
    exchange = _find_by_key(session, user, key) if key else None
    if exchange is not None:
        return exchange, False
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
        return exchange, False
    return exchange, True


@router.get("")
def list_exchanges(
    session: SessionDep,
    user: CurrentUser,
    status_: Annotated[Stage | None, Query(alias="status")] = None,
    cluster: Annotated[SqlText | None, Query(max_length=32)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=ID_MAX)] = 0,
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


@router.get("/{exchange_id}", responses=ONE_EXCHANGE)
async def read_exchange(
    exchange: ExchangeDep,
    engine: EngineDep,
    client: TemporalDep,
    settings: SettingsDep,
    user: CurrentUser,
) -> ExchangeDetail:
    """The exchange with its live state and timeline, as the caller may see them (see
    `ce4big.exchanges.Disclosure`: a partner is named to the requester only once it accepted,
    a host broker sees its own cluster's candidates only)."""
    exchange_id = exchange.id
    assert exchange_id is not None
    query = (
        select(ExchangeEvent)
        .where(ExchangeEvent.exchange_id == exchange_id)
        .order_by(col(ExchangeEvent.at), col(ExchangeEvent.id))
    )
    events, candidates = await run_in_session(
        engine,
        lambda session: (
            session.exec(query).all(),
            candidate_facts(session=session, exchange_id=exchange_id),
        ),
    )
    state = await query_state(
        client=client,
        workflow_id=workflow_id_for(exchange_id),
        wait_seconds=settings.temporal_timeout_seconds,
    )
    seen = disclosure_for(user=user, exchange=exchange, candidates=candidates, state=state)
    return ExchangeDetail(
        **public(exchange).model_dump(), state=seen.state(state), timeline=seen.events(events)
    )


def _host_cluster(user: User, exchange: Exchange) -> str | None:
    """The cluster of a broker who sees the exchange as a host only."""
    if user.role == Role.BROKER and user.cluster_id != exchange.home_cluster:
        return user.cluster_id
    return None


@router.get("/{exchange_id}/candidates", responses=ONE_EXCHANGE | error_responses(403))
def list_candidates(
    exchange: ExchangeDep, session: SessionDep, settings: SettingsDep, user: CurrentUser
) -> list[CandidatePublic]:
    if user.role == Role.SME:
        raise Forbidden("candidates are for brokers and managers")
    # A host broker sees the candidates of its own cluster, not whom else was considered.
    host = _host_cluster(user, exchange)
    query = (
        select(ExchangeCandidate, Organisation)
        .join(Organisation, col(Organisation.id) == ExchangeCandidate.organisation_id)
        .where(ExchangeCandidate.exchange_id == exchange.id)
        .order_by(col(ExchangeCandidate.rank), col(ExchangeCandidate.organisation_id))
    )
    if host is not None:
        query = query.where(Organisation.cluster_id == host)
    stored = session.exec(query).all()
    if stored or host is not None:
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


async def _decide(
    client: Client,
    settings: Settings,
    exchange: Exchange,
    update: str,
    argument: Any,
    in_force: InForce | None = None,
) -> DecisionPublic:
    """`in_force` only for a decision that the read model shows recorded (ce4big/decisions.py):
    a first decision goes straight to its Update."""
    assert exchange.id is not None
    result = await send_decision(
        client=client,
        workflow_id=workflow_id_for(exchange.id),
        update=update,
        argument=argument,
        wait_seconds=settings.temporal_timeout_seconds,
        in_force=in_force,
    )
    return DecisionPublic(exchange_id=exchange.id, stage=result.stage, detail=result.detail)


async def _read(engine: Engine, exchange: Exchange, query: Callable[[Session, int], T]) -> T:
    """`query` of the read model for this exchange, in a session of its own."""
    exchange_id = exchange.id
    assert exchange_id is not None
    return await run_in_session(engine, lambda session: query(session, exchange_id))


async def _recorded(
    engine: Engine,
    exchange: Exchange,
    recorded: Callable[[Session, int, T], bool],
    decision: T,
) -> bool:
    return await _read(engine, exchange, lambda session, id_: recorded(session, id_, decision))


@router.post("/{exchange_id}/vetting", dependencies=[DecisionLimit], responses=DECISION)
async def vet_exchange(
    body: VettingBody,
    exchange: ExchangeDep,
    engine: EngineDep,
    client: TemporalDep,
    settings: SettingsDep,
    user: CurrentUser,
) -> DecisionPublic:
    decision = VettingDecision(actor_for_user(user), body.decision, body.note)
    last = await _read(engine, exchange, last_vetting_record)
    if not vetting_recorded(decision, last):
        return await _decide(client, settings, exchange, "vet", decision)
    if decision.decision in FINAL_VERDICTS:
        assert exchange.id is not None
        return DecisionPublic(
            exchange_id=exchange.id, stage=exchange.status, detail=ALREADY_DECIDED
        )
    in_force = vetting_in_force(decision, last)
    return await _decide(client, settings, exchange, "vet", decision, in_force)


@router.post("/{exchange_id}/amend", dependencies=[DecisionLimit], responses=DECISION)
async def amend_exchange(
    body: ExchangeAmend,
    exchange: ExchangeDep,
    engine: EngineDep,
    client: TemporalDep,
    settings: SettingsDep,
    user: CurrentUser,
) -> DecisionPublic:
    _require_requester(user, exchange)
    amendment = Amendment(actor_for_user(user), body.note, body.title, body.description)
    last = await _read(engine, exchange, last_vetting_record)
    in_force = (
        amendment_in_force(amendment, last, title=exchange.title, description=exchange.description)
        if amendment_recorded(amendment, last)
        else None
    )
    result = await _decide(client, settings, exchange, "amend", amendment, in_force)
    # The workflow accepted the amendment (or this very one again, while the amended request
    # waits for its vetting): only now does the request text change.
    changes = {
        name: value
        for name, value in body.model_dump(include={"title", "description"}).items()
        if value is not None and getattr(exchange, name) != value
    }
    if changes:
        for name, value in changes.items():
            setattr(exchange, name, value)
        exchange.updated_at = utcnow()
        await run_in_session(engine, lambda session: session.add(exchange))
    return result


@router.post("/{exchange_id}/shortlist", dependencies=[DecisionLimit], responses=DECISION)
async def set_shortlist(
    body: ShortlistBody,
    exchange: ExchangeDep,
    engine: EngineDep,
    client: TemporalDep,
    settings: SettingsDep,
    user: CurrentUser,
) -> DecisionPublic:
    # Before the shortlist in force is compared: whoever may not shortlist gets 403 for any
    # list, so that the requester cannot test guesses of the shortlist.
    if user.role != Role.BROKER or user.cluster_id != exchange.home_cluster:
        raise Forbidden("only a broker of the requester's cluster sets the shortlist")
    decision = ShortlistDecision(actor_for_user(user), list(body.organisation_ids))
    recorded = await _recorded(engine, exchange, shortlist_recorded, decision)
    in_force = shortlist_in_force(decision) if recorded else None
    return await _decide(client, settings, exchange, "set_shortlist", decision, in_force)


@router.post("/{exchange_id}/host-review", dependencies=[DecisionLimit], responses=DECISION)
async def host_review(
    body: HostReviewBody,
    exchange: ExchangeDep,
    engine: EngineDep,
    client: TemporalDep,
    settings: SettingsDep,
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
    recorded = await _recorded(engine, exchange, host_review_recorded, decision)
    in_force = host_review_in_force(decision) if recorded else None
    result = await _decide(client, settings, exchange, "host_review", decision, in_force)
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


@router.post("/{exchange_id}/meeting/proposals", dependencies=[DecisionLimit], responses=DECISION)
async def propose_slots(
    body: ProposalBody,
    exchange: ExchangeDep,
    engine: EngineDep,
    client: TemporalDep,
    settings: SettingsDep,
    user: CurrentUser,
) -> DecisionPublic:
    _require_requester(user, exchange)
    proposal = slot_proposal(body, actor_for_user(user), settings.slot_horizon_days)
    recorded = await _recorded(engine, exchange, proposal_recorded, proposal)
    in_force = proposal_in_force(proposal) if recorded else None
    return await _decide(client, settings, exchange, "propose_slots", proposal, in_force)


@router.post("/{exchange_id}/meeting/pick", dependencies=[DecisionLimit], responses=DECISION)
async def pick_slot(
    body: PickBody,
    exchange: ExchangeDep,
    engine: EngineDep,
    client: TemporalDep,
    settings: SettingsDep,
    user: CurrentUser,
) -> DecisionPublic:
    _require_requester(user, exchange)
    pick = SlotPick(actor_for_user(user), body.start.isoformat())
    recorded = await _recorded(engine, exchange, pick_recorded, pick)
    in_force = pick_in_force(pick) if recorded else None
    return await _decide(client, settings, exchange, "pick_slot", pick, in_force)


@router.post("/{exchange_id}/meeting/cancel", dependencies=[DecisionLimit], responses=DECISION)
async def cancel_meeting(
    body: ReasonBody,
    exchange: ExchangeDep,
    client: TemporalDep,
    settings: SettingsDep,
    user: CurrentUser,
) -> DecisionPublic:
    _require_requester(user, exchange)
    cancellation = MeetingCancellation(actor_for_user(user), body.reason)
    return await _decide(client, settings, exchange, "cancel_meeting", cancellation)


@router.post("/{exchange_id}/meeting/not-held", dependencies=[DecisionLimit], responses=DECISION)
async def report_not_held(
    body: ReasonBody,
    exchange: ExchangeDep,
    client: TemporalDep,
    settings: SettingsDep,
    user: CurrentUser,
) -> DecisionPublic:
    _require_requester(user, exchange)
    report = NotHeldReport(actor_for_user(user), body.reason)
    return await _decide(client, settings, exchange, "report_not_held", report)


@router.post("/{exchange_id}/survey", dependencies=[DecisionLimit], responses=DECISION)
async def answer_survey(
    body: SurveyBody,
    exchange: ExchangeDep,
    client: TemporalDep,
    settings: SettingsDep,
    user: CurrentUser,
) -> DecisionPublic:
    _require_requester(user, exchange)
    answer = SurveyAnswer(
        actor_for_user(user), body.outcome, body.satisfaction, body.recommend, body.comment
    )
    return await _decide(client, settings, exchange, "answer_survey", answer)


@router.post("/{exchange_id}/withdraw", dependencies=[DecisionLimit], responses=DECISION)
async def withdraw_exchange(
    exchange: ExchangeDep,
    client: TemporalDep,
    settings: SettingsDep,
    user: CurrentUser,
    body: ReasonBody | None = None,
) -> DecisionPublic:
    _require_requester(user, exchange)
    reason = body.reason if body else ""
    closure = Closure(actor_for_user(user), reason)
    return await _decide(client, settings, exchange, "withdraw", closure)


@router.post("/{exchange_id}/cancel", dependencies=[DecisionLimit], responses=DECISION)
async def cancel_exchange(
    exchange: ExchangeDep,
    client: TemporalDep,
    settings: SettingsDep,
    user: CurrentUser,
    body: ReasonBody | None = None,
) -> DecisionPublic:
    if user.role not in (Role.MANAGER, Role.ADMIN):
        raise Forbidden("only a manager cancels an exchange")
    reason = body.reason if body else ""
    closure = Closure(actor_for_user(user), reason)
    return await _decide(client, settings, exchange, "cancel", closure)
