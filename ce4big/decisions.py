"""Decisions go to the exchange's workflow as Updates; refusals come back as HTTP errors."""

from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col
from temporalio.client import Client, WorkflowQueryFailedError, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from ce4big.domain import HostVerdict
from ce4big.errors import AppError, Conflict, Forbidden, Invalid, Unavailable
from ce4big.lifecycle import (
    INVALID_DECISION,
    WRONG_ACTOR,
    WRONG_STAGE,
    Actor,
    DecisionResult,
    SlotData,
    SlotProposal,
)
from ce4big.models import ExchangeCandidate, User, utcnow
from ce4big.schemas import ProposalBody, normalise_slots

REFUSALS: dict[str, type[AppError]] = {
    WRONG_STAGE: Conflict,
    WRONG_ACTOR: Forbidden,
    INVALID_DECISION: Invalid,
}


def actor_for_user(user: User) -> Actor:
    return Actor(
        email=user.email,
        role=str(user.role),
        user_id=user.id,
        cluster=user.cluster_id,
        organisation_id=user.organisation_id,
    )


async def send_decision(
    *, client: Client, workflow_id: str, update: str, argument: Any
) -> DecisionResult:
    """Returns once the workflow accepted the decision; raises the refusal as an AppError."""
    handle = client.get_workflow_handle(workflow_id)
    try:
        result: DecisionResult = await handle.execute_update(
            update, argument, result_type=DecisionResult
        )
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        if isinstance(cause, ApplicationError) and cause.type in REFUSALS:
            raise REFUSALS[cause.type](cause.message) from None
        raise
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            # The workflow has completed (or never started): nothing is open to decide.
            raise Conflict("the exchange is closed: it takes no more decisions") from None
        # Temporal unreachable, or the workflow unable to take decisions right now (a failing
        # workflow task): the caller may retry later, nothing was decided.
        raise Unavailable(f"the exchange cannot take decisions right now: {err.message}") from None
    return result


async def query_state(*, client: Client, workflow_id: str) -> dict[str, Any] | None:
    """The workflow's live state, or None when it cannot be asked (closed and cleaned up,
    or Temporal unreachable): lists and timelines come from SQL either way."""
    try:
        state: dict[str, Any] = await client.get_workflow_handle(workflow_id).query(
            "state", result_type=dict
        )
    except (RPCError, WorkflowQueryFailedError):
        return None
    return state


def slot_proposal(body: ProposalBody, actor: Actor, horizon_days: int) -> SlotProposal:
    try:
        slots = normalise_slots(proposal=body, now=utcnow(), horizon_days=horizon_days)
    except ValueError as exc:
        raise Invalid(str(exc)) from None
    return SlotProposal(
        actor=actor,
        slots=[SlotData(start=s, end=e) for s, e in slots],
        timezone=body.timezone,
        mode=body.mode,
        location=body.location,
    )


def note_host_decision(
    session: Session, *, exchange_id: int, organisation_id: str, verdict: HostVerdict
) -> None:
    """Once the workflow accepted a host review, the candidate's row says so at once (the
    workflow writes the same when the whole review ends), so the inbox drops the task."""
    session.execute(
        update(ExchangeCandidate)
        .where(
            col(ExchangeCandidate.exchange_id) == exchange_id,
            col(ExchangeCandidate.organisation_id) == organisation_id,
            col(ExchangeCandidate.host_decision).is_(None),
        )
        .values(host_decision="endorsed" if verdict == HostVerdict.ENDORSE else "vetoed")
    )
